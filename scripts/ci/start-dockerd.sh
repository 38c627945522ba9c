#!/bin/sh
# Makes sure a docker engine answers: installs docker.io if dockerd is missing, starts dockerd in the
# background if `docker info` fails, waits until it answers. Idempotent; run as root.
# usage: scripts/ci/start-dockerd.sh [TIMEOUT_SECONDS]   (log: /var/log/dockerd.log)
set -eu

timeout=${1:-60}

if docker info >/dev/null 2>&1; then
    echo "docker engine already answers"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "error: no docker engine answers, and starting one needs root" >&2
    exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "installing docker.io"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
    echo "starting dockerd (log: /var/log/dockerd.log)"
    nohup dockerd >/var/log/dockerd.log 2>&1 &
fi
waited=0
until docker info >/dev/null 2>&1; do
    if [ "$waited" -ge "$timeout" ]; then
        echo "error: dockerd did not answer within ${timeout}s; last log lines:" >&2
        tail -n 20 /var/log/dockerd.log >&2 || true
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done
echo "docker engine answers after ${waited}s"
