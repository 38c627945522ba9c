#!/bin/sh
# Builds the root filesystem of the offline base image (codemonkeys/base): Debian minbase + Python + git,
# a C compiler with the Python headers (C extensions build in place, `setup.py build_ext --inplace`, even
# when the setup has no network), a non-root user `cm` (uid 1000) and a virtualenv /opt/venv owned by it
# (first on PATH, so `python` and `pip install -e .` work for that user). No image registry is involved:
# packages come from the Debian mirror. Any change to this file makes a new base image (images.py labels
# the image with a hash of its recipe and rebuilds one whose label differs).
#
# usage: make-rootfs.sh ROOT SUITE MIRROR [CACHE_DIR]     (as root; about one minute)
# codemonkeys.sandbox.images runs it and then imports ROOT with `docker import` (see images.py for the config).
set -eu

root=$1
suite=$2
mirror=$3
cache=${4:-}

packages=python3,python3-venv,python3-dev,gcc,libc6-dev,git,ca-certificates,procps,iproute2
user=cm
uid=1000

set -- --variant=minbase --include="$packages"
if [ -n "$cache" ]; then
    mkdir -p "$cache"
    set -- "$@" --cache-dir="$cache"
fi
debootstrap "$@" "$suite" "$root" "$mirror"

# The user, written straight into the rootfs databases (no chroot tools needed).
echo "$user:x:$uid:$uid::/home/$user:/bin/bash" >>"$root/etc/passwd"
echo "$user:x:$uid:" >>"$root/etc/group"
echo "$user:*:19000:0:99999:7:::" >>"$root/etc/shadow"
mkdir -p "$root/home/$user" "$root/repo"

chroot "$root" python3 -m venv /opt/venv
ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
chown -R "$uid:$uid" "$root/home/$user" "$root/repo" "$root/opt/venv"

# Package caches and lists: useless offline, a fifth of the size.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/*
