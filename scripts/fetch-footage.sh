#!/usr/bin/env bash
# Real camera footage for the tests and `bench gating`, fetched at test-dependency install time from a
# Debian package rather than committed (footage/README.md says where each clip comes from and under
# which licence). Idempotent: a clip already there with the expected checksum is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=footage/real
mkdir -p "$dest"
# name  checksum  path inside opencv-doc
clips=(
  "vtest.avi 45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf ./usr/share/doc/opencv-doc/examples/data/vtest.avi"
)
ok() { [ -f "$dest/$1" ] && echo "$2  $dest/$1" | sha256sum --quiet -c - 2>/dev/null; }
need=0
for clip in "${clips[@]}"; do
  read -r name sum _ <<<"$clip"
  ok "$name" "$sum" || need=1
done
[ "$need" -eq 0 ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
if ! (cd "$work" && apt-get download -qq opencv-doc >/dev/null 2>&1); then
  $sudo apt-get update -qq
  (cd "$work" && apt-get download -qq opencv-doc)
fi
for clip in "${clips[@]}"; do
  read -r name sum inside <<<"$clip"
  dpkg-deb --fsys-tarfile "$work"/opencv-doc_*.deb | tar -x -O "$inside" >"$dest/$name.part"
  mv "$dest/$name.part" "$dest/$name"
  if ! ok "$name" "$sum"; then
    echo "footage: $dest/$name from opencv-doc does not have the expected checksum (another package version?)" >&2
    exit 1
  fi
done
echo "footage: $(ls "$dest" | tr '\n' ' ')in $dest"
