#!/usr/bin/env bash
# Builds the appliance image: target/image/clusterd.raw (plus clusterd.raw.zst and
# clusterd.raw.bmap for distribution and flashing). Steps: host packages (mkosi 24 from bookworm-backports; needs root
# on the first run), the release binary, the image's package sources derived from
# this machine's own apt sources (nothing committed names a mirror), mkosi.
#
#   ./image/build.sh            build (incremental: the package base is cached)
#   ./image/build.sh --clean    rebuild the cached base too
#
# CLUSTERD_BINARY=path uses an already built binary instead of `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."

t0=$(date +%s)
./image/host-packages.sh >/dev/null

gen=image/.generated
rm -rf "$gen"
mkdir -p "$gen/pkgmngr/etc/apt/sources.list.d"

# The release binary, without debug info (the release profile keeps it for tests).
if [ -n "${CLUSTERD_BINARY:-}" ]; then
  bin=$CLUSTERD_BINARY
else
  cargo build --release --bin clusterd
  bin=${CARGO_TARGET_DIR:-target}/release/clusterd
fi
strip --strip-debug -o "$gen/clusterd" "$bin"

# The image's package sources: this machine's Debian entries (deb822 or one-line),
# without anything else it may carry (other vendors' repositories). mkosi uses
# pkgmngr/etc/apt/sources.list.d/mkosi.sources instead of its defaults (which
# include a debian-debug repository that this mirror does not serve).
sources=$gen/pkgmngr/etc/apt/sources.list.d/mkosi.sources
for f in /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] || continue
  # (not the host's own backports entry: the image is plain bookworm)
  [ "$(basename "$f")" = clusterd-image-backports.sources ] && continue
  # deb822 paragraphs whose URIs are Debian's (or -security).
  awk 'BEGIN { RS = ""; ORS = "\n\n" }
       tolower($0) ~ /uris:[^\n]*\/debian(-security)?\/?([ \n]|$)/ { print }' "$f" >> "$sources"
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -e "$f" ] || continue
  # One-line entries, written as deb822.
  awk '$1 == "deb" {
         i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
         uri = $i; suite = $(i + 1); comps = ""
         for (j = i + 2; j <= NF; j++) comps = comps (comps ? " " : "") $j
         if (uri ~ /\/debian(-security)?\/?$/)
           printf "Types: deb\nURIs: %s\nSuites: %s\nComponents: %s\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n", uri, suite, comps
       }' "$f" >> "$sources"
done
if ! grep -qi '^URIs:' "$sources" 2>/dev/null; then
  echo "image/build.sh: no Debian entry in /etc/apt/sources*" >&2
  exit 1
fi

force=()
if [ "${1:-}" = "--clean" ]; then force=(-ff); fi
mkosi --incremental=yes "${force[@]}" -f build

out=target/image/clusterd.raw
zstd -q -T0 -10 -f "$out" -o "$out.zst"
# For `bmaptool copy`: writes only the blocks that hold data.
bmaptool -q create -o "$out.bmap" "$out"
t1=$(date +%s)
raw=$(stat -c %s "$out")
zst=$(stat -c %s "$out.zst")
echo "image: $out $((raw / 1000000)) MB raw, $out.zst $((zst / 1000000)) MB zstd, built in $((t1 - t0)) s"
