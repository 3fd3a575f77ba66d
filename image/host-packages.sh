#!/usr/bin/env bash
# Installs the build host's packages for the image: mkosi 24 and its helpers from
# bookworm-backports (bookworm's mkosi 14 cannot build a bootable image without vfat
# mounts), and QEMU/OVMF/socat to boot it. The backports entry is derived from this
# machine's own Debian sources, so no mirror host name is committed. Needs root.
set -euo pipefail

packages=(mkosi systemd systemd-container systemd-boot systemd-boot-efi python3-pefile
  mtools dosfstools e2fsprogs zstd cpio kmod xz-utils debian-archive-keyring bubblewrap
  uidmap)
boot_packages=(qemu-system-x86 qemu-utils ovmf socat bmap-tools)

# The first Debian (not -security) URI of the machine's deb822 or one-line sources.
debian_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) print $i }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; break } }' "$f"
  done
}
mirror=$(debian_mirror | grep -E '/debian/?$' | grep -v security | head -n1 || true)
if [ -z "$mirror" ]; then
  echo "image/host-packages.sh: no Debian mirror found in /etc/apt/sources*" >&2
  exit 1
fi

installed() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
  done
}
mkosi_ok() { command -v mkosi >/dev/null && mkosi --version 2>/dev/null | grep -qE 'mkosi (2[4-9]|[3-9][0-9])'; }

if mkosi_ok && installed "${packages[@]}" "${boot_packages[@]}"; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "image/host-packages.sh: host packages missing (mkosi >= 24 from bookworm-backports, ${packages[*]} ${boot_packages[*]}); run as root" >&2
  exit 1
fi
backports=/etc/apt/sources.list.d/clusterd-image-backports.sources
want=$(printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror")
if [ ! -e "$backports" ] || [ "$(cat "$backports")" != "$want" ]; then
  printf '%s\n' "$want" > "$backports"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
# One transaction from backports: mkosi's recommends pull backports' qemu-utils, which
# breaks bookworm's qemu-system-common.
apt-get install -y -t bookworm-backports "${packages[@]}" "${boot_packages[@]}"
