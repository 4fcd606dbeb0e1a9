#!/usr/bin/env bash
# Puts a Nix of at least 2.18 where tests/test_nix.py finds it: ~/.cache/wan-trainer/nix/bin/nix (WAN_TRAINER_NIX_PREFIX).
# nixpkgs since 25.11 refuses older Nix, and Debian 12's nix-bin is 2.8, so a current one is taken from Debian 13
# (trixie, nix-bin 2.26.3): apt-get downloads the .debs of nix-bin and its libraries into a private folder, with a
# private package list (the system's apt sources, lists and installed packages are not touched; root is not
# needed), dpkg-deb unpacks them, and $prefix/bin/nix runs that nix with trixie's own dynamic loader and libraries,
# so the host's older glibc does not matter. Debian 12's nix 2.8 goes into $prefix/old/ the same way: the test that
# shows the nixpkgs stand-in refusing an old Nix runs it. Does nothing where both are already there.
# Never stops the test run: without it tests/test_nix.py skips (or fails under CI=true) and says why.
set -uo pipefail
# Outside the checkout by default, so every clone on this machine (CI's fresh clone included) shares one download.
prefix="${WAN_TRAINER_NIX_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/wan-trainer/nix}"
minimum="2.18"
release="trixie"      # Debian 13: nix-bin 2.26.3
old_release="bookworm" # Debian 12: nix-bin 2.8.0, older than nixpkgs accepts
mirror="${WAN_TRAINER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

say() { echo "ci_install_nix.sh: $*" >&2; }

# 0 when "nix (Nix) X.Y.Z" printed by $1 is at least $minimum.
new_enough() {
  local version
  version="$("$1" --version 2>/dev/null | awk '{print $NF}')" || return 1
  [ -n "$version" ] && [ "$(printf '%s\n%s\n' "$minimum" "$version" | sort -V | head -n1)" = "$minimum" ]
}

if new_enough "$prefix/bin/nix" && [ -x "$prefix/old/bin/nix" ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  say "no Nix >= $minimum and no apt-get/dpkg-deb to fetch Debian's; tests/test_nix.py will skip (install Nix >= $minimum)"
  exit 0
fi

# unpack_nix RELEASE FOLDER: Debian RELEASE's nix-bin and the libraries it loads, run by FOLDER/bin/nix.
unpack_nix() {
  local release="$1" folder="$2" work="$2/apt" unpacked="$2/root" deb loader libraries
  local -a apt packages
  rm -rf "$folder" && mkdir -p "$work/lists/partial" "$work/archives/partial" "$folder/bin" || return 1
  echo "deb $mirror $release main" >"$work/sources.list"
  : >"$work/status"
  apt=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$work/lists" -o "Dir::State::status=$work/status" -o "Dir::Cache=$work"
    -o "Dir::Cache::archives=$work/archives" -o APT::Architecture=amd64 -o Debug::NoLocking=1)
  say "fetching nix-bin and its libraries from Debian $release into $folder"
  apt-get "${apt[@]}" -qq update || return 1
  # nix-bin and the shared libraries it loads (not perl, curl or the other tools the package also depends on).
  mapfile -t packages < <(apt-cache "${apt[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances nix-bin | grep -E '^(nix-bin|lib)' | grep -v perl | sort -u)
  (cd "$work/archives" && apt-get "${apt[@]}" -qq download "${packages[@]}") 2>&1 | grep -v "unsandboxed" >&2
  for deb in "$work/archives"/*.deb; do dpkg-deb -x "$deb" "$unpacked" || return 1; done
  for loader in "$unpacked/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$unpacked/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"; do
    [ -x "$loader" ] && break
  done
  [ -x "$loader" ] && [ -x "$unpacked/usr/bin/nix" ] || return 1
  # Every folder holding a shared library (Debian 12 keeps nix's own in usr/lib/x86_64-linux-gnu/nix).
  libraries="$(find "$unpacked" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)"
  cat >"$folder/bin/nix" <<WRAPPER
#!/usr/bin/env bash
# Debian $release's nix, run with its own loader and libraries (scripts/ci_install_nix.sh).
exec "$loader" --argv0 nix --library-path "$libraries" "$unpacked/usr/bin/nix" "\$@"
WRAPPER
  chmod +x "$folder/bin/nix"
  rm -rf "$work"
  "$folder/bin/nix" --version >/dev/null
}

if [ "$(uname -m)" != x86_64 ]; then
  say "Debian's nix-bin is unpacked for x86_64 only; install Nix >= $minimum yourself (tests/test_nix.py skips)"
  exit 0
fi
if ! new_enough "$prefix/bin/nix"; then
  if command -v nix >/dev/null 2>&1 && new_enough "$(command -v nix)"; then
    say "using $(command -v nix) ($(nix --version))"
  elif unpack_nix "$release" "$prefix.new" && new_enough "$prefix.new/bin/nix"; then
    rm -rf "$prefix" && mkdir -p "$(dirname "$prefix")" && mv "$prefix.new" "$prefix" &&
      sed -i "s|$prefix.new|$prefix|g" "$prefix/bin/nix"
    say "$("$prefix/bin/nix" --version) ready in $prefix/bin/nix"
  else
    say "could not set up Nix >= $minimum from Debian $release; tests/test_nix.py will skip (or fail under CI=true)"
    rm -rf "$prefix.new"
  fi
fi
if [ ! -x "$prefix/old/bin/nix" ]; then
  mkdir -p "$prefix"
  if unpack_nix "$old_release" "$prefix/old"; then
    say "$("$prefix/old/bin/nix" --version) (too old on purpose) ready in $prefix/old/bin/nix"
  else
    say "could not set up Debian $old_release's nix; the old-Nix refusal test will skip"
    rm -rf "$prefix/old"
  fi
fi
exit 0
