#!/usr/bin/env bash
# What the GUI tests need on a machine without a screen: Xvfb (a virtual X server), xauth, a small window manager
# (openbox: closing a window then goes through the window manager as on a desktop), wmctrl (asks the window
# manager to close a window, as a user's click on the close button does) and
# xdotool (moves the pointer and turns the wheel).
# Installs them with apt-get when missing and running as root on Debian/Ubuntu; otherwise says what to install.
# The GUI tests start Xvfb and openbox themselves when DISPLAY is unset (tests/x_display.py).
set -euo pipefail
PACKAGES="xvfb xauth openbox wmctrl xdotool"
if command -v Xvfb >/dev/null 2>&1 && command -v openbox >/dev/null 2>&1 && command -v wmctrl >/dev/null 2>&1 && command -v xdotool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "install_display.sh: installing $PACKAGES (for the GUI tests)"
  # shellcheck disable=SC2086
  apt-get install -y --no-install-recommends $PACKAGES >/dev/null || { apt-get update >/dev/null && apt-get install -y --no-install-recommends $PACKAGES >/dev/null; }
else
  echo "install_display.sh: the GUI tests need Xvfb, openbox and wmctrl without a screen (Debian/Ubuntu: sudo apt-get install $PACKAGES)" >&2
fi
