#!/bin/sh
# Builds the base image of the docker sandbox unless it exists already, built from the current recipe (cached
# between CI runs when the engine's storage is). The route is chosen as `codemonkeys sandbox build` chooses it:
# python:3.11-slim when present or a registry answers, else debootstrap offline (needs root; installed when
# missing). Needs a running engine (scripts/ci/start-dockerd.sh).
# usage: scripts/ci/build-base-image.sh [IMAGE]     (PYTHON selects the interpreter, default: python3)
set -eu

image=${1:-codemonkeys/base:py3.11}
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")/../.." && pwd)

cd "$here"
exec "$python" -m codemonkeys.cli_sandbox build --name "$image"
