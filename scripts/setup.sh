#!/usr/bin/env bash
# Installs everything oxyctl needs on a fresh Debian machine with Node >= 20, then builds it:
# the Debian packages its tests and network paths use, the npm packages (better-sqlite3 and
# the native addon compile with node-gyp), the TypeScript build and the oclif manifest.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(iproute2 iperf3 nftables iptables curl tcpdump man-db python3 make g++ binutils dpkg-dev rpm lintian reprepro createrepo-c dnf gnupg tinyproxy iputils-ping openssh-server openssh-client wrk squid wireguard-go chromium postgresql libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev)
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci refuses this lock file: it lacks the other platforms' optional quiche binaries. install honours the lock all the same.
npm install --no-audit --no-fund
npm run build
