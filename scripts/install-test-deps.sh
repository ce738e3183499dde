#!/usr/bin/env bash
# System packages the test suite uses: git and make for the README test, mosquitto (MQTT broker), openssl (TLS test), Chromium (browser tests),
# GStreamer's RTSP server (run under Debian's python3, which has `gi`) for the camera tests, docker-compose (validates deploy/x86's compose
# file; needs no Docker engine) and systemd's systemd-analyze (verifies the units in deploy/).
set -euo pipefail
packages=(git make openssl mosquitto python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools
          gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly chromium
          docker-compose systemd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
