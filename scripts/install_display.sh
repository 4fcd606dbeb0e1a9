#!/usr/bin/env bash
# What the GUI tests need on a machine without a screen: Xvfb (a virtual X server) and xauth.
# Installs them with apt-get when missing and running as root on Debian/Ubuntu; otherwise says what to install.
# The GUI tests start Xvfb themselves when DISPLAY is unset (tests/x_display.py).
set -euo pipefail
command -v Xvfb >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "install_display.sh: installing xvfb and xauth (for the GUI tests)"
  apt-get install -y --no-install-recommends xvfb xauth >/dev/null || { apt-get update >/dev/null && apt-get install -y --no-install-recommends xvfb xauth >/dev/null; }
else
  echo "install_display.sh: Xvfb not found; the GUI tests need it without a screen (Debian/Ubuntu: sudo apt-get install xvfb xauth)" >&2
fi
