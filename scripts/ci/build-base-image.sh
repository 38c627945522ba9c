#!/bin/sh
# Builds the offline base image of the docker sandbox unless it exists already, built from the current recipe
# (cached between CI runs when the engine's storage is). Needs root, debootstrap and a running engine (scripts/ci/start-dockerd.sh).
# usage: scripts/ci/build-base-image.sh [IMAGE]     (PYTHON selects the interpreter, default: python3)
set -eu

image=${1:-codemonkeys/base:py3.11}
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")/../.." && pwd)

cd "$here"
if "$python" -c "import sys; from codemonkeys.sandbox import engine, images
sys.exit(0 if images.base_is_current(engine.connect(), sys.argv[1]) else 1)" "$image" 2>/dev/null; then
    echo "$image exists and is built from the current recipe"
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "installing debootstrap"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
fi
exec "$python" -m codemonkeys.cli_sandbox build --name "$image"
