#!/usr/bin/env bash
# Installs tokenwatch's build dependencies from Debian 12 packages; with
# --test also what the test suite needs (python3, promtool, clang for the
# sanitizer build). Idempotent; runs apt-get as root or through sudo.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libmicrohttpd-dev libpcre2-dev
      libmaxminddb-dev libcjson-dev libsodium-dev libcurl4-gnutls-dev python3 curl)
if [[ "${1:-}" == "--test" ]]; then
    pkgs+=(prometheus prometheus-alertmanager systemd man-db chromium openssl)
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
    SUDO=(sudo)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if (( ${#missing[@]} )); then
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
