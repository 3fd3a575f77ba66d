#!/usr/bin/env bash
# Installs the build host's packages for the image: mkosi 24 and its helpers from
# bookworm-backports (bookworm's mkosi 14 cannot build a bootable image without vfat
# mounts), and QEMU/OVMF/socat to boot it. The backports entry is derived from this
# machine's own Debian sources, so no mirror host name is committed. Needs root.
set -euo pipefail

# Installed without recommends: mkosi's would add ~270 packages (zypper, dnf, pacman,
# rpm, btrfs/erofs/squashfs tools, GStreamer...). The few of them this build uses
# (python3-pefile, e2fsprogs, dosfstools, zstd, xz-utils, debian-archive-keyring,
# uidmap, ovmf) are listed here.
packages=(
  mkosi                    # 24 from backports; depends on bubblewrap, systemd(-container) >= 254
  systemd                  # systemd-repart and ukify, and the --root tools mkosi runs
  systemd-container        # systemd-dissect
  systemd-boot             # bootctl
  systemd-boot-efi         # the systemd-boot and UKI stub EFI binaries
  python3-pefile           # ukify builds the unified kernel image with it
  mtools dosfstools        # the ESP: mkfs.vfat, then mcopy (no mounts); the image test's mcopy
  e2fsprogs                # the root: mkfs.ext4 -d
  fdisk                    # sfdisk: the image test reads the partition table
  zstd cpio kmod xz-utils  # the initrd (cpio), kernel modules (kmod; finalize's xz), .raw.zst
  debian-archive-keyring   # Signed-By of the image's package sources
  bubblewrap uidmap        # mkosi's sandbox
)
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
# One transaction from backports, so qemu-utils and qemu-system-x86 come from the same
# release (backports' qemu-utils next to bookworm's qemu-system-common breaks it).
apt-get install -y --no-install-recommends -t bookworm-backports "${packages[@]}" "${boot_packages[@]}"
