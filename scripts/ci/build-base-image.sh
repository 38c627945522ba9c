#!/bin/sh
# Builds the offline base image of the docker sandbox unless it exists already (cached between CI runs when
# the engine's storage is). Needs root, debootstrap and a running engine (scripts/ci/start-dockerd.sh).
# usage: scripts/ci/build-base-image.sh [IMAGE]     (PYTHON selects the interpreter, default: python3)
set -eu

image=${1:-codemonkeys/base:py3.11}
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")/../.." && pwd)

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image exists"
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "installing debootstrap"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
fi
cd "$here"
exec "$python" -m codemonkeys.cli_sandbox build --name "$image"
