#!/usr/bin/env bash
# Builds (once per machine) the Debian 13 chroot in which the real-GIMP test runs gimp-console-3.0:
# Debian 12 has no GIMP 3 and trixie's GIMP needs a newer libc, so GIMP lives in its own root.
# Usage: tests/gimp/make_chroot.sh [DIR]   (default $BLIND_UPSCALE_GIMP_CHROOT or the cache path below)
# Needs root. Re-running is a no-op while DIR/.blind-upscale-ready lists the same packages.
set -euo pipefail
chroot_dir=${1:-${BLIND_UPSCALE_GIMP_CHROOT:-/var/cache/blind-upscale/trixie-gimp}}
mirror=${BLIND_UPSCALE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# GIMP with its Python plug-in support; Xvfb for the dialog screenshot. No numpy: the plug-in is stdlib only.
packages="gimp python3-gi gir1.2-gimp-3.0 gir1.2-gegl-0.4 xvfb xauth"
stamp="$chroot_dir/.blind-upscale-ready"
# A GIMP profile that has run once: a copy starts GIMP without querying its ~60 own plug-ins again.
profile=/opt/blind-upscale/gimp-profile

if [[ $(id -u) != 0 ]]; then
    echo "[gimp-chroot] needs root (debootstrap, chroot)" >&2
    exit 1
fi
started=$(date +%s)

mount_into() {  # proc and dev inside root $1 until the script ends
    mount -t proc proc "$1/proc"
    mount --bind /dev "$1/dev"
    trap "umount -l '$1/proc' '$1/dev' 2> /dev/null || true" EXIT
}
release_mounts() {
    umount -l "$1/proc" "$1/dev" 2> /dev/null || true
    trap - EXIT
}

if [[ -f $stamp && $(cat "$stamp") == "$packages" ]]; then
    echo "[gimp-chroot] cached: $chroot_dir"
else
    if ! command -v debootstrap > /dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap > /dev/null
    fi
    partial="$chroot_dir.partial"
    # A half-built root from an interrupted run may still have proc/dev mounted: release them first.
    for mounted in proc dev; do
        if mountpoint -q "$partial/$mounted" 2> /dev/null; then umount -l "$partial/$mounted"; fi
    done
    rm -rf --one-file-system "$partial"
    mkdir -p "$(dirname "$chroot_dir")"
    echo "[gimp-chroot] debootstrap trixie into $partial"
    debootstrap --variant=minbase trixie "$partial" "$mirror" > "$partial.log" 2>&1 || {
        tail -n 20 "$partial.log" >&2
        exit 1
    }
    mount_into "$partial"
    echo "[gimp-chroot] apt-get install $packages"
    chroot "$partial" env DEBIAN_FRONTEND=noninteractive sh -c \
        "apt-get update -qq && apt-get install -y -qq --no-install-recommends $packages && apt-get clean" \
        >> "$partial.log" 2>&1 || {
        tail -n 20 "$partial.log" >&2
        exit 1
    }
    release_mounts "$partial"
    rm -rf --one-file-system "$chroot_dir"
    mv "$partial" "$chroot_dir"
    mv "$partial.log" "$chroot_dir.log"
    echo "$packages" > "$stamp"
    echo "[gimp-chroot] built $chroot_dir in $(( $(date +%s) - started )) s ($(du -sh --one-file-system "$chroot_dir" | cut -f1))"
fi

if [[ ! -d $chroot_dir$profile/GIMP ]]; then
    rm -rf "$chroot_dir$profile"
    mkdir -p "$chroot_dir$profile.home"
    mount_into "$chroot_dir"
    chroot "$chroot_dir" env -i PATH=/usr/bin:/bin LANG=C.UTF-8 HOME="$profile.home" XDG_CONFIG_HOME="$profile" \
        gimp-console-3.0 -i --quit > "$chroot_dir.profile.log" 2>&1 || {
        tail -n 20 "$chroot_dir.profile.log" >&2
        exit 1
    }
    release_mounts "$chroot_dir"
    echo "[gimp-chroot] warmed the GIMP profile $profile in $(( $(date +%s) - started )) s"
fi
