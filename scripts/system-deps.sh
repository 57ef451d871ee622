#!/usr/bin/env bash
# Installs the system libraries emer_live needs on Debian/Ubuntu (PortAudio for the microphone,
# PulseAudio client for QtMultimedia, the xcb bits Qt needs for real windows, Xvfb and pulseaudio
# for tests). On other systems it only says what is missing: macOS and Windows wheels carry them.
set -u
pkgs="libportaudio2 libpulse0 pulseaudio xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libegl1 libgl1 libglib2.0-0 libfontconfig1 libdbus-1-3"
if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "system-deps: not a Debian-like system; skipping (PortAudio/Qt come with the wheels on macOS/Windows)."
  exit 0
fi
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && { echo "system-deps: all present"; exit 0; }
if [ "$(id -u)" = "0" ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
  echo "system-deps: missing:$missing — install them with your package manager (needs root)."; exit 0; fi
echo "system-deps: installing$missing"
$SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null \
  || { echo "system-deps: apt-get failed; install by hand:$missing"; exit 1; }
