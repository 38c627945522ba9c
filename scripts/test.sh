#!/usr/bin/env bash
# The whole check: install, lint, start a docker engine with the offline base image, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# The report pages are checked in a real headless Chromium (Debian's package).
command -v chromium >/dev/null || { [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } || echo "chromium is missing: the page tests will fail" >&2
# The fake GitHub's responses come from GitHub's OpenAPI description, which the tests fetch with npm.
command -v npm >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -q npm >/dev/null; } || echo "npm is missing: the GitHub tests will fail" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
if [ "$(id -u)" = 0 ] || docker info >/dev/null 2>&1; then
  bash scripts/ci/start-dockerd.sh
  PATH="$PWD/.venv/bin:$PATH" bash scripts/ci/build-base-image.sh
else
  echo "not root and no docker engine: docker tests will skip (they fail under CI=true)" >&2
fi
exec .venv/bin/python -m pytest -q "$@"
