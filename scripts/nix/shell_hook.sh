# shellcheck shell=bash
# What entering a Nix shell of this project (and every `nix run .#APP`) does, kept out of flake.nix so that it
# can be read, shellchecked and tested without Nix (tests/test_nix.py runs it on a plain Debian machine).
#
#   source scripts/nix/shell_hook.sh && wan_trainer_enter
#
# 1. finds the checkout ($WAN_TRAINER_ROOT, else the nearest folder above $PWD holding scripts/install.sh);
# 2. creates or reuses its .venv through scripts/install.sh, so the pip requirements files stay the one source
#    of package versions; WAN_TRAINER_PLATFORM=cuda|rocm|default picks the file (the shells set it, the apps pass
#    yours through, unset means install.sh's own detection);
# 3. exports WAN_TRAINER_PLATFORM (the platform installed) and WAN_TRAINER_ROOT, puts .venv/bin first on PATH;
#    inside the flake's shells and apps, makes .venv/bin/python a wrapper that gives the trainer's processes (only
#    them) the Nix libraries of WAN_TRAINER_LIBRARY_PATH, and registers its interpreter as a Nix GC root;
# 4. reports the accelerator: the NVIDIA GPU found (or why none), the AMD gfx target found (and
#    HSA_OVERRIDE_GFX_VERSION, which is taken from your environment, never set here), or the CPU.
# Messages go to stderr so that `nix run` keeps stdout for the program. Sourced into interactive shells, so it
# never calls `exit` or `set -e`; failures return non-zero. It also runs under `set -euo pipefail` (the apps).
# WAN_TRAINER_SKIP_GPU_CHECK=1 skips the torch import (a few seconds) in the GPU report.

_wan_say() { echo "wan-trainer: $*" >&2; }

_wan_find_root() {
  if [ -n "${WAN_TRAINER_ROOT:-}" ]; then
    [ -f "$WAN_TRAINER_ROOT/scripts/install.sh" ] && { (cd "$WAN_TRAINER_ROOT" && pwd); return 0; }
    _wan_say "WAN_TRAINER_ROOT=$WAN_TRAINER_ROOT has no scripts/install.sh; point it at a checkout of the trainer"
    return 1
  fi
  local dir="$PWD"
  while [ "$dir" != "/" ] && [ -n "$dir" ]; do
    [ -f "$dir/scripts/install.sh" ] && [ -f "$dir/requirements-global.txt" ] && { echo "$dir"; return 0; }
    dir="$(dirname "$dir")"
  done
  _wan_say "no checkout of the trainer above $PWD: cd into your clone (the folder with flake.nix) or set WAN_TRAINER_ROOT"
  return 1
}

# Prepends a folder to WAN_TRAINER_LIBRARY_PATH once: the library path of the trainer's Python only (see
# _wan_wrap_venv_python), never LD_LIBRARY_PATH, which every program started from the shell would inherit.
_wan_add_library_dir() {
  case ":${WAN_TRAINER_LIBRARY_PATH:-}:" in *":$1:"*) return 0 ;; esac
  export WAN_TRAINER_LIBRARY_PATH="$1${WAN_TRAINER_LIBRARY_PATH:+:$WAN_TRAINER_LIBRARY_PATH}"
}

# Nix programs use Nix's dynamic loader, which does not read the host's /etc/ld.so.cache: on NixOS the driver sits in
# /run/opengl-driver/lib (the CUDA shell puts it on the trainer's library path); on WSL2 in /usr/lib/wsl/lib, where
# libcuda needs libdxcore beside it; elsewhere this links only the host's NVIDIA driver libraries into
# .venv/host-driver-lib, so the pip CUDA wheels find libcuda without the host's glibc.
_wan_link_host_nvidia_driver() {
  local root="$1" wsl="${WAN_TRAINER_WSL_LIB:-/usr/lib/wsl/lib}" ldconfig_bin="" candidate libcuda="" host_dir link_dir
  [ -e /run/opengl-driver/lib/libcuda.so.1 ] && return 0
  if [ -e "$wsl/libcuda.so.1" ]; then
    libcuda="$wsl/libcuda.so.1"
  else
    for candidate in /sbin/ldconfig /usr/sbin/ldconfig; do [ -x "$candidate" ] && ldconfig_bin="$candidate" && break; done
    [ -n "$ldconfig_bin" ] || return 0
    libcuda="$("$ldconfig_bin" -p 2>/dev/null | awk '/libcuda\.so\.1 .*x86-64/ {print $NF; exit}' || true)"
  fi
  [ -n "$libcuda" ] || return 0
  host_dir="$(dirname "$(readlink -f "$libcuda")")"
  link_dir="$root/.venv/host-driver-lib"
  mkdir -p "$link_dir" &&
    ln -sf "$host_dir"/libcuda.so* "$host_dir"/libdxcore.so* "$host_dir"/libnvidia-*.so* "$link_dir"/ 2>/dev/null
  _wan_add_library_dir "$link_dir"
  _wan_say "host NVIDIA driver libraries from $host_dir linked into $link_dir"
}

_wan_find_libcuda() {
  local dir
  local IFS=:
  for dir in ${WAN_TRAINER_LIBRARY_PATH:-} ${LD_LIBRARY_PATH:-}; do
    [ -n "$dir" ] && [ -e "$dir/libcuda.so.1" ] && { echo "$dir/libcuda.so.1"; return 0; }
  done
  return 1
}

_wan_report_cuda() {
  local root="$1" gpus libcuda
  if command -v nvidia-smi >/dev/null 2>&1; then
    if gpus="$(nvidia-smi -L 2>&1)"; then
      _wan_say "NVIDIA GPU found: ${gpus//$'\n'/; }"
    else
      _wan_say "no NVIDIA GPU: nvidia-smi failed (${gpus//$'\n'/ }); is the driver loaded (lsmod | grep nvidia)?"
    fi
  else
    _wan_say "no NVIDIA GPU: nvidia-smi is not on PATH (NixOS: services.xserver.videoDrivers = [ \"nvidia\" ] and" \
      "hardware.graphics.enable = true; other distros: install the NVIDIA driver)"
  fi
  if libcuda="$(_wan_find_libcuda)"; then
    # Triton (torch.compile) finds libcuda with `ldconfig -p`, which NixOS lacks; this is its documented override.
    export TRITON_LIBCUDA_PATH="${libcuda%/*}"
    _wan_say "driver library: $libcuda"
  else
    _wan_say "libcuda.so.1 is in no folder of the trainer's library path (/run/opengl-driver/lib on NixOS):" \
      "torch will not see the GPU"
  fi
  [ -n "${TRITON_LIBCUDA_PATH:-}" ] && _wan_say "TRITON_LIBCUDA_PATH=$TRITON_LIBCUDA_PATH"
  command -v cc >/dev/null 2>&1 || _wan_say "no C compiler (cc) on PATH: Triton (torch.compile) cannot build kernels"
  _wan_torch_report "$root" "import torch
ok = torch.cuda.is_available()
print('torch %s (CUDA %s): %s' % (torch.__version__, torch.version.cuda,
      torch.cuda.get_device_name(0) if ok else 'no CUDA device visible'))"
}

# gfx targets of the AMD GPUs the kernel driver knows (CPU nodes report 0): gfx_target_version 110000 -> gfx1100,
# 90010 -> gfx90a (major, minor, stepping in hex). WAN_TRAINER_KFD_TOPOLOGY overrides the sysfs folder.
_wan_gfx_targets() {
  local topology="${WAN_TRAINER_KFD_TOPOLOGY:-/sys/class/kfd/kfd/topology/nodes}" props version
  for props in "$topology"/*/properties; do
    [ -f "$props" ] || continue
    version="$(awk '$1 == "gfx_target_version" {print $2}' "$props")"
    case "$version" in "" | 0) continue ;; esac
    printf 'gfx%d%d%x\n' $((version / 10000)) $((version / 100 % 100)) $((version % 100))
  done | sort -u
}

# The target whose kernels consumer cards of a family commonly borrow (RDNA2 -> gfx1030, RDNA3 -> gfx1100).
_wan_suggested_override() {
  case "$1" in
    gfx1031 | gfx1032 | gfx1033 | gfx1034 | gfx1035 | gfx1036) echo "10.3.0" ;;
    gfx1101 | gfx1102 | gfx1103) echo "11.0.0" ;;
  esac
}

_wan_report_rocm() {
  local root="$1" targets target suggestion archs=""
  targets="$(_wan_gfx_targets)"
  if [ -n "$targets" ]; then
    _wan_say "AMD GPU found: ${targets//$'\n'/ }"
  elif [ ! -e /dev/kfd ]; then
    _wan_say "no AMD GPU: /dev/kfd is missing (amdgpu kernel driver not loaded, or the device not passed through)"
  else
    _wan_say "no AMD GPU: /dev/kfd exists but the kfd topology lists no GPU node"
  fi
  if [ -n "${HSA_OVERRIDE_GFX_VERSION:-}" ]; then
    export HSA_OVERRIDE_GFX_VERSION
    _wan_say "HSA_OVERRIDE_GFX_VERSION=$HSA_OVERRIDE_GFX_VERSION (from your environment): ROCm treats the GPU as that target"
  fi
  if [ -n "$targets" ]; then
    archs="$(_wan_torch_report "$root" "import torch
ok = torch.cuda.is_available()
print('torch %s (HIP %s): %s' % (torch.__version__, torch.version.hip,
      torch.cuda.get_device_name(0) if ok else 'no ROCm device visible'))
print(' '.join(torch.cuda.get_arch_list()))")"
  fi
  [ -n "$archs" ] && _wan_say "torch was built for: $archs"
  [ -n "${HSA_OVERRIDE_GFX_VERSION:-}" ] && return 0
  for target in $targets; do
    case " $archs " in *" $target "*) continue ;; esac
    suggestion="$(_wan_suggested_override "$target")"
    if [ -n "$suggestion" ]; then
      _wan_say "torch may have no kernels for $target: re-enter with HSA_OVERRIDE_GFX_VERSION=$suggestion (docs/nix.md)"
    elif [ -n "$archs" ]; then
      _wan_say "torch has no kernels for $target; see docs/nix.md (HSA_OVERRIDE_GFX_VERSION)"
    fi
  done
}

# Runs a torch check in the venv: its first output line is reported, the rest is printed on stdout for the caller.
_wan_torch_report() {
  local root="$1" code="$2" line
  [ "${WAN_TRAINER_SKIP_GPU_CHECK:-0}" = 1 ] && return 0
  if line="$("$root/.venv/bin/python" -c "$code" 2>&1)"; then
    _wan_say "${line%%$'\n'*}"
    case "$line" in *$'\n'*) echo "${line#*$'\n'}" ;; esac
  else
    _wan_say "torch check failed: ${line##*$'\n'}"
  fi
}

# install.sh reuses any .venv; one made outside this environment (say by the distribution's Python before Nix) runs
# the host's Python against Nix's libraries, which can fail in odd ways. Say so rather than rebuild it unasked.
_wan_check_venv_python() {
  local cfg="$1/.venv/pyvenv.cfg" home python_bin
  [ -f "$cfg" ] || return 0
  home="$(awk -F' *= *' '$1 == "home" {print $2}' "$cfg")"
  python_bin="$(command -v "${PYTHON:-python3}" || true)"
  [ -n "$home" ] && [ -n "$python_bin" ] || return 0
  case "$python_bin" in "$1/.venv/bin/"*) return 0 ;; esac  # this venv's own (a shell entered again)
  # Resolved, so that .venv/bin/python3 (first on PATH in a shell already entered) counts as the Python it links to.
  [ "$(readlink -f "$python_bin")" = "$(readlink -f "$home/$(basename "$python_bin")")" ] && return 0
  _wan_say "warning: $1/.venv was made by the Python in $home, not this environment's ($python_bin);" \
    "if imports fail, remove .venv and enter again"
}

# The venv's python, python3 and python3.X become one small script that puts WAN_TRAINER_LIBRARY_PATH (the pip
# wheels' libraries from Nix, the GPU driver) on LD_LIBRARY_PATH and WAN_TRAINER_PYTHONPATH (Nix's tkinter) on
# PYTHONPATH for that process and its children only, then runs the real interpreter under the venv's name (so
# Python still finds the venv). Host programs started from the shell (on an older-glibc host they would load
# Nix's newer libstdc++ and fail with `GLIBC_2.38 not found`) see none of it. Written on every entry, so a
# changed shell is picked up; only inside the flake's shells and apps (which set those variables), and not with
# WAN_TRAINER_KEEP_VENV_PYTHON=1 (a .venv also used outside Nix; then set LD_LIBRARY_PATH yourself).
_wan_wrap_venv_python() {
  local root="$1" bin="$1/.venv/bin" home real name tmp
  [ -n "${WAN_TRAINER_LIBRARY_PATH:-}${WAN_TRAINER_PYTHONPATH:-}" ] || return 0
  [ "${WAN_TRAINER_KEEP_VENV_PYTHON:-0}" = 1 ] && return 0
  home="$(awk -F' *= *' '$1 == "home" {print $2}' "$root/.venv/pyvenv.cfg" 2>/dev/null)"
  for real in "$home/python3" "$home/python"; do [ -x "$real" ] && break; done
  [ -x "$real" ] || { _wan_say "no interpreter in $home (.venv/pyvenv.cfg); remove .venv and enter again"; return 1; }
  tmp="$(mktemp "$bin/.python-wrapper.XXXXXX")" || return 1
  {
    echo "#!$BASH"
    echo "# Written by scripts/nix/shell_hook.sh: the trainer's Python with its libraries (docs/nix.md)."
    [ -n "${WAN_TRAINER_LIBRARY_PATH:-}" ] &&
      echo "export LD_LIBRARY_PATH=\"$WAN_TRAINER_LIBRARY_PATH\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
    [ -n "${WAN_TRAINER_PYTHONPATH:-}" ] &&
      echo "export PYTHONPATH=\"$WAN_TRAINER_PYTHONPATH\${PYTHONPATH:+:\$PYTHONPATH}\""
    echo "exec -a \"\$0\" \"$real\" \"\$@\""
  } >"$tmp"
  if ! { chmod +x "$tmp" && mv -f "$tmp" "$bin/python"; }; then
    rm -f "$tmp"
    return 1
  fi
  for name in "$bin"/python3*; do
    case "$name" in *-config) continue ;; esac
    [ -e "$name" ] || [ -L "$name" ] || continue
    ln -sfn python "$name"
  done
  _wan_gc_root_venv_python "$root" "$real"
}

# A garbage collection (nix-collect-garbage) deletes store paths nothing refers to, and a .venv is nothing to Nix:
# its interpreter and libraries would go and .venv break. Register them as GC roots under .venv/.nix-gcroots.
_wan_gc_root_venv_python() {
  local root="$1" real="$2" path index=0 store_path
  local -a paths=()
  store_path="$(readlink -f "$real")"
  paths+=("$store_path")
  local IFS=:
  for path in ${WAN_TRAINER_LIBRARY_PATH:-} ${WAN_TRAINER_PYTHONPATH:-}; do paths+=("$path"); done
  unset IFS
  mkdir -p "$root/.venv/.nix-gcroots" || return 0
  for path in "${paths[@]}"; do
    case "$path" in /nix/store/*) ;; *) continue ;; esac
    path="$(echo "$path" | cut -d/ -f1-4)"
    index=$((index + 1))
    if ! command -v nix-store >/dev/null 2>&1; then
      _wan_say "nix-store is not on PATH: $path is not protected from garbage collection (.venv may break after one)"
      return 0
    fi
    nix-store --add-root "$root/.venv/.nix-gcroots/$index" --indirect --realise "$path" >/dev/null 2>&1 ||
      _wan_say "could not register $path as a GC root (nix-store --add-root); .venv may break after a garbage collection"
  done
}

# flake.lock pins nixpkgs, so every user of a commit gets the same shells; without it each evaluation takes
# whatever the branch is that day (docs/nix.md: unsupported). WAN_TRAINER_FLAKE_LOCKED is set by the flake.
_wan_check_flake_lock() {
  [ "${WAN_TRAINER_FLAKE_LOCKED:-}" = 0 ] || return 0
  _wan_say "warning: this flake has no flake.lock, so nixpkgs is whatever nixos-26.05 is today: unsupported." \
    "Create it once with \`nix flake lock\` and commit it (docs/nix.md, \"flake.lock\")"
}

wan_trainer_enter() {
  local root stamp platform
  _wan_check_flake_lock
  root="$(_wan_find_root)" || return 1
  _wan_check_venv_python "$root"
  # install.sh runs on the Python of this environment (the flake's), whatever python3 the host has.
  PYTHON="${PYTHON:-python3}" bash "$root/scripts/install.sh" >&2 || {
    _wan_say "scripts/install.sh failed (see above); fix it and re-enter the shell"
    return 1
  }
  stamp="$root/.venv/.installed-requirements"
  # install.sh records which platform it installed as the stamp's first word; reading it back means the choice is
  # exactly install.sh's (its detection or your WAN_TRAINER_PLATFORM), not a second copy of the rules.
  platform="$(cut -d' ' -f1 "$stamp" 2>/dev/null || true)"
  case "$platform" in cuda | rocm | default) ;; *)
    _wan_say "$stamp does not name the installed platform; run scripts/install.sh again"
    return 1
    ;;
  esac
  export WAN_TRAINER_ROOT="$root" WAN_TRAINER_PLATFORM="$platform" VIRTUAL_ENV="$root/.venv"
  [ "$platform" = cuda ] && _wan_link_host_nvidia_driver "$root"
  _wan_wrap_venv_python "$root" || return 1
  case ":$PATH:" in *":$root/.venv/bin:"*) ;; *) export PATH="$root/.venv/bin:$PATH" ;; esac
  _wan_say "platform $platform, environment $root/.venv (requirements-$platform.txt)"
  case "$platform" in
    cuda) _wan_report_cuda "$root" ;;
    rocm) _wan_report_rocm "$root" ;;
    default) _wan_say "CPU platform: torch runs on the CPU (use the cuda or rocm shell for a GPU)" ;;
  esac
  return 0
}
