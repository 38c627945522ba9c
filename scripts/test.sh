#!/usr/bin/env bash
# The whole check: install, lint, start a docker engine with the offline base image, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
apt_install() {  # as root; the package lists are fetched only when the install needs them
  [ "$(id -u)" = 0 ] || return 1
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$@" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null; }
}
# The report pages are checked in a real headless Chromium (Debian's package).
command -v chromium >/dev/null || apt_install chromium || echo "chromium is missing: the page tests will fail" >&2
# The fake GitHub's responses come from GitHub's OpenAPI description, which the tests fetch with npm.
command -v npm >/dev/null || apt_install npm || echo "npm is missing: the GitHub tests will fail" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
if [ "$(id -u)" = 0 ] || docker info >/dev/null 2>&1; then
  bash scripts/ci/start-dockerd.sh
  PATH="$PWD/.venv/bin:$PATH" bash scripts/ci/build-base-image.sh
else
  echo "not root and no docker engine: docker tests will skip (they fail under CI=true)" >&2
fi
exec .venv/bin/python -m pytest -q "$@"
