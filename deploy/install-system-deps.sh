#!/usr/bin/env bash
# Installs the Debian packages the project uses: `run` (optional data) or `test` (browser + data).
set -euo pipefail
what=${1:-test}
packages=(dataset-fashion-mnist)
[ "$what" = test ] && packages+=(chromium)

missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else echo "need root to install: ${missing[*]}" >&2; exit 1; fi
else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
