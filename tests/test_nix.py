"""flake.nix and its shell hook.

The hook (scripts/nix/shell_hook.sh) is run here without Nix, in a throwaway checkout whose .venv already holds
what install.sh would install (so nothing is downloaded): platform choice, venv reuse and the CPU report.

The flake is parsed and evaluated by the real `nix` binary, offline, with nixpkgs replaced by the stand-in flake
in tests/nix_standin (only the attributes flake.nix uses, as derivations that refuse to build). That proves the
outputs exist and are wired (shells, their hooks, apps), not that nixpkgs builds them (docs/nix.md says so).
The shells' evaluated shellHooks and the apps' script bodies are then run with bash on this machine.
Tests that need `nix` skip where it is missing, except under CI=true (scripts/ci_install_nix.sh installs it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Where scripts/ci_install_nix.sh unpacks Debian's Nix: shared by every checkout on the machine.
NIX_PREFIX = Path(
    os.environ.get("WAN_TRAINER_NIX_PREFIX")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wan-trainer" / "nix"
)
HOOK = REPO_ROOT / "scripts" / "nix" / "shell_hook.sh"
STAND_IN = REPO_ROOT / "tests" / "nix_standin"
SYSTEM = "x86_64-linux"
ARM = "aarch64-linux"
PLATFORMS = ("default", "cuda", "rocm")
APPS = {
    "train": "scripts/train.py",
    "ui": "scripts/train_ui.py",
    "demo": "scripts/run_demo.sh",
    "tests": "scripts/run_tests.sh",
}
DRIVER_LIB = "/run/opengl-driver/lib"


def installed_stamp(root: Path, platform: str) -> str:
    """What scripts/install.sh writes into .venv/.installed-requirements after installing `platform`'s file (its
    own formula); a venv holding this stamp is one install.sh reuses without touching pip."""
    text = (root / "requirements-global.txt").read_bytes() + (root / f"requirements-{platform}.txt").read_bytes()
    return f"{platform} {hashlib.sha256(text).hexdigest()}\n"


@pytest.fixture
def checkout(tmp_path):
    """A copy of the files the hook and install.sh use, with a real (pip-less) venv stamped as installed."""

    def make(platform: str = "default") -> Path:
        root = tmp_path / "checkout"
        if not root.exists():
            shutil.copytree(REPO_ROOT / "scripts", root / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
            for req in REPO_ROOT.glob("requirements-*.txt"):
                shutil.copy(req, root / req.name)
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
        (root / ".venv" / ".installed-requirements").write_text(installed_stamp(root, platform))
        return root

    return make


def run_bash(script: str, cwd: Path, env: dict[str, str] | None = None, strict: bool = False):
    """Runs `script` in bash, then prints the variables the hook sets, one per line, after a marker."""
    probe = 'echo "=== $?"; for v in WAN_TRAINER_PLATFORM WAN_TRAINER_ROOT VIRTUAL_ENV LD_LIBRARY_PATH PATH'
    probe += " HSA_OVERRIDE_GFX_VERSION WAN_TRAINER_LIBRARY_PATH TRITON_LIBCUDA_PATH"
    probe += '; do echo "$v=${!v:-}"; done'
    # What the hook and the shells set, from a clean start.
    own = ("WAN_TRAINER_", "HSA_OVERRIDE", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "TRITON_", "PYTHONPATH")
    base = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    base["WAN_TRAINER_SKIP_GPU_CHECK"] = "1"  # the venv has no torch; the report must not need it
    args = ["bash", "-euo", "pipefail", "-c"] if strict else ["bash", "-c"]
    proc = subprocess.run(
        [*args, f"{script}\n{probe}"], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=60
    )
    variables = {}
    if "=== " in proc.stdout:
        for line in proc.stdout.split("=== ", 1)[1].splitlines()[1:]:
            key, _, value = line.partition("=")
            variables[key] = value
    return proc, variables


ENTER = f"source {HOOK} && wan_trainer_enter"


# --- the hook, without Nix ----------------------------------------------------------------------------------------


def test_hook_reuses_venv_and_reports_cpu(checkout):
    root = checkout("default")
    stamp = (root / ".venv" / ".installed-requirements").read_text()
    (root / "some" / "sub").mkdir(parents=True)
    proc, env = run_bash(ENTER, cwd=root / "some" / "sub", strict=True)  # the checkout is found above $PWD
    assert proc.returncode == 0, proc.stderr
    assert "installing" not in proc.stderr  # stamp matched: venv reused, pip not run
    assert f"platform default, environment {root}/.venv" in proc.stderr
    assert "CPU platform: torch runs on the CPU" in proc.stderr
    assert "NVIDIA" not in proc.stderr and "AMD" not in proc.stderr
    assert env["WAN_TRAINER_PLATFORM"] == "default"
    assert env["WAN_TRAINER_ROOT"] == str(root)
    assert env["VIRTUAL_ENV"] == f"{root}/.venv"
    assert env["PATH"].split(":")[0] == f"{root}/.venv/bin"
    assert (root / ".venv" / ".installed-requirements").read_text() == stamp


def test_hook_warns_about_a_venv_from_another_python(checkout):
    root = checkout("default")
    config = root / ".venv" / "pyvenv.cfg"
    home = next(line.split("=", 1)[1].strip() for line in config.read_text().splitlines() if line.startswith("home"))
    # The Python that made the venv: no warning.
    proc, env = run_bash(ENTER, cwd=root, env={"PYTHON": f"{home}/python3"}, strict=True)
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    # Entering again from inside (the venv's python3 first on PATH) is still that Python.
    proc, _ = run_bash(f"export PATH={env['PATH']}\n{ENTER}", cwd=root, strict=True)
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    config.write_text("home = /usr/local/other-python/bin\ninclude-system-site-packages = false\n")
    proc, _ = run_bash(ENTER, cwd=root, env={"PYTHON": f"{home}/python3"}, strict=True)
    assert proc.returncode == 0, proc.stderr
    assert f"warning: {root}/.venv was made by the Python in /usr/local/other-python/bin" in proc.stderr


def test_hook_reinstalls_when_platform_changes(checkout):
    """A venv installed for the CPU is not reused by a CUDA shell: install.sh reinstalls (here pip is absent, so
    the failure shows the attempt) and the hook stops with a message instead of a half-set environment."""
    root = checkout("default")
    proc, env = run_bash(ENTER, cwd=root, env={"WAN_TRAINER_PLATFORM": "cuda"})
    assert "installing requirements-cuda.txt into .venv (platform: cuda)" in proc.stderr
    assert "scripts/install.sh failed" in proc.stderr
    assert proc.stdout.startswith("=== 1")
    assert env["VIRTUAL_ENV"] == ""


def test_hook_outside_a_checkout_says_where_to_run(tmp_path):
    proc, env = run_bash(ENTER, cwd=tmp_path)
    assert proc.stdout.startswith("=== 1")
    assert "no checkout of the trainer above" in proc.stderr and "WAN_TRAINER_ROOT" in proc.stderr
    proc, _ = run_bash(ENTER, cwd=tmp_path, env={"WAN_TRAINER_ROOT": str(tmp_path)})
    assert proc.stdout.startswith("=== 1") and "has no scripts/install.sh" in proc.stderr


def write_kfd_topology(folder: Path, versions: list[int]) -> Path:
    """Nodes in the kernel's kfd topology format (a CPU node reports gfx_target_version 0)."""
    for index, version in enumerate(versions):
        node = folder / str(index)
        node.mkdir(parents=True)
        (node / "properties").write_text(f"cpu_cores_count 0\ngfx_target_version {version}\nsimd_count 0\n")
    return folder


def test_hook_rocm_reports_gfx_target_and_suggests_override(checkout, tmp_path):
    root = checkout("rocm")
    topology = write_kfd_topology(tmp_path / "nodes", [0, 100302, 90010])  # CPU, an RDNA2 card, an MI210
    env_in = {"WAN_TRAINER_PLATFORM": "rocm", "WAN_TRAINER_KFD_TOPOLOGY": str(topology)}
    # With the torch check on: this venv has no torch, which the report says without failing the hook.
    proc, env = run_bash(ENTER, cwd=root, env={**env_in, "WAN_TRAINER_SKIP_GPU_CHECK": "0"}, strict=True)
    assert proc.returncode == 0, proc.stderr
    assert env["WAN_TRAINER_PLATFORM"] == "rocm"
    assert "AMD GPU found: gfx1032 gfx90a" in proc.stderr
    assert "torch check failed: ModuleNotFoundError: No module named 'torch'" in proc.stderr
    assert "HSA_OVERRIDE_GFX_VERSION=10.3.0" in proc.stderr  # suggested for the RDNA2 card only
    assert "kernels for gfx90a" not in proc.stderr


def test_hook_rocm_passes_gfx_override_through(checkout, tmp_path):
    root = checkout("rocm")
    topology = write_kfd_topology(tmp_path / "nodes", [110001])
    env_in = {
        "WAN_TRAINER_PLATFORM": "rocm",
        "WAN_TRAINER_KFD_TOPOLOGY": str(topology),
        "HSA_OVERRIDE_GFX_VERSION": "11.0.0",
    }
    proc, env = run_bash(ENTER, cwd=root, env=env_in, strict=True)
    assert "AMD GPU found: gfx1101" in proc.stderr
    assert "HSA_OVERRIDE_GFX_VERSION=11.0.0 (from your environment)" in proc.stderr
    assert "re-enter with" not in proc.stderr
    assert env["HSA_OVERRIDE_GFX_VERSION"] == "11.0.0"


def test_hook_rocm_without_gpu_says_why(checkout, tmp_path):
    root = checkout("rocm")
    empty = tmp_path / "no_nodes"
    empty.mkdir()
    env_in = {"WAN_TRAINER_PLATFORM": "rocm", "WAN_TRAINER_KFD_TOPOLOGY": str(empty)}
    proc, _ = run_bash(ENTER, cwd=root, env=env_in, strict=True)
    assert proc.returncode == 0, proc.stderr
    assert "no AMD GPU: /dev/kfd" in proc.stderr


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has an NVIDIA driver")
def test_hook_cuda_without_driver_says_why(checkout):
    root = checkout("cuda")
    proc, env = run_bash(ENTER, cwd=root, env={"WAN_TRAINER_PLATFORM": "cuda", "LD_LIBRARY_PATH": ""}, strict=True)
    assert proc.returncode == 0, proc.stderr
    assert env["WAN_TRAINER_PLATFORM"] == "cuda"
    assert "no NVIDIA GPU: nvidia-smi is not on PATH" in proc.stderr
    assert "libcuda.so.1 is in no folder of the trainer's library path" in proc.stderr


needs_shellcheck = pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck is not installed (Debian/Ubuntu: apt-get install shellcheck)"
)


@needs_shellcheck
def test_hook_passes_shellcheck():
    scripts = [HOOK, REPO_ROOT / "scripts" / "install.sh", REPO_ROOT / "scripts" / "ci_install_nix.sh"]
    proc = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# --- the flake, evaluated by the real nix with the nixpkgs stand-in -----------------------------------------------

MINIMUM_NIX = (2, 18)  # nixpkgs since 25.11 refuses older Nix; the stand-in does too


def nix_version(nix: str) -> tuple[int, ...]:
    out = subprocess.run([nix, "--version"], capture_output=True, text=True, timeout=60).stdout.split()
    return tuple(int(part) for part in out[-1].split(".")[:2]) if out else (0,)


def find_nix() -> tuple[str | None, str]:
    """A Nix >= 2.18: WAN_TRAINER_NIX, scripts/ci_install_nix.sh's (NIX_PREFIX/bin/nix), or the one on PATH."""
    tried = []
    for nix in (os.environ.get("WAN_TRAINER_NIX"), str(NIX_PREFIX / "bin" / "nix"), shutil.which("nix")):
        if not nix or not Path(nix).is_file():
            continue
        version = nix_version(nix)
        if version >= MINIMUM_NIX:
            return nix, ""
        tried.append(f"{nix} is Nix {'.'.join(map(str, version))}")
    found = "; ".join(tried) or "no nix found"
    return None, f"{found}; need Nix >= 2.18 (bash scripts/ci_install_nix.sh puts Debian 13's into {NIX_PREFIX})"


NIX, NO_NIX_REASON = find_nix()
needs_nix = pytest.mark.skipif(NIX is None and os.environ.get("CI") != "true", reason=NO_NIX_REASON)


class Flake:
    """The flake copied into a throwaway git repo (flakes are read from git trees), evaluated against the stand-in
    in a private store, so the test needs neither network, nor a daemon, nor a writable /nix."""

    def __init__(self, folder: Path):
        if NIX is None:
            pytest.fail(f"CI=true but {NO_NIX_REASON}")
        self.repo = folder / "repo"
        self.store = folder / "store"
        self.repo.mkdir()
        shutil.copy(REPO_ROOT / "flake.nix", self.repo / "flake.nix")
        if (REPO_ROOT / "flake.lock").exists():
            shutil.copy(REPO_ROOT / "flake.lock", self.repo / "flake.lock")
        shutil.copytree(REPO_ROOT / "scripts", self.repo / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
        self.env = {**os.environ, "XDG_CACHE_HOME": str(folder / "cache"), "NIX_CONFIG": "warn-dirty = false"}
        git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "init.defaultBranch=main"]
        subprocess.run([*git, "init", "-q"], cwd=self.repo, check=True)
        subprocess.run([*git, "add", "."], cwd=self.repo, check=True)
        subprocess.run([*git, "commit", "-qm", "flake under test"], cwd=self.repo, check=True)

    def run(self, *args: str, lock: bool = False) -> subprocess.CompletedProcess:
        command = [NIX, "--extra-experimental-features", "nix-command flakes", "--store", str(self.store), *args]
        # The evaluation cache trips over string context in a private store (Nix 2.8); evaluation takes 0.1 s anyway.
        command += ["--option", "eval-cache", "false"]
        command += ["--offline", *([] if lock else ["--no-write-lock-file"])]
        command += ["--override-input", "nixpkgs", f"path:{STAND_IN}"]
        return subprocess.run(command, cwd=self.repo, env=self.env, capture_output=True, text=True, timeout=120)

    def eval(self, attribute: str, apply: str | None = None):
        """The attribute as JSON, store paths as plain strings (string context dropped: nothing is realised)."""
        to_json = f"v: builtins.unsafeDiscardStringContext (builtins.toJSON (({apply or 'x: x'}) v))"
        proc = self.run("eval", "--raw", f".#{attribute}", "--apply", to_json)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def in_private_store(self, text: str) -> str:
        """Store paths as they exist on this machine: the private store keeps /nix/store/... under its folder."""
        return text.replace("/nix/store/", f"{self.store}/nix/store/")


@pytest.fixture(scope="module")
def flake(tmp_path_factory):
    return Flake(tmp_path_factory.mktemp("flake"))


@needs_nix
def test_flake_show_lists_shells_and_apps(flake):
    proc = flake.run("flake", "show", "--json")
    assert proc.returncode == 0, proc.stderr
    outputs = json.loads(proc.stdout)
    assert set(outputs["devShells"][SYSTEM]) == set(PLATFORMS)
    assert set(outputs["devShells"][ARM]) == {"default"}  # the GPU wheels are x86_64 only
    assert set(outputs["apps"][SYSTEM]) == set(outputs["apps"][ARM]) == set(APPS)
    assert all(app["type"] == "app" for app in outputs["apps"][SYSTEM].values())
    assert SYSTEM in outputs["formatter"]
    assert {"shell-scripts", *PLATFORMS} <= set(outputs["checks"][SYSTEM])


@needs_nix
def test_flake_check_evaluates(flake, tmp_path):
    proc = flake.run("flake", "check", "--no-build", "--all-systems")
    assert proc.returncode == 0, proc.stderr
    assert "wan-trainer-default" in flake.eval(f"checks.{ARM}.default.name")
    # The check really evaluates the wiring: without the hook the flake no longer evaluates.
    broken = Flake(tmp_path)
    subprocess.run(["git", "rm", "-q", "scripts/nix/shell_hook.sh"], cwd=broken.repo, check=True)
    proc = broken.run("flake", "check", "--no-build")
    assert proc.returncode != 0 and "scripts/nix" in proc.stderr


@needs_nix
def test_shells_carry_the_tools(flake):
    for platform in PLATFORMS:
        names = flake.eval(f"devShells.{SYSTEM}.{platform}.nativeBuildInputs", "map (p: p.name)")
        assert any(name.startswith("python3-3.12") for name in names), names
        for tool in ("ffmpeg-headless", "tk", "git"):
            assert any(name.startswith(f"{tool}-") for name in names), (tool, names)
        # Triton (torch.compile) builds C helpers at run time: the CUDA shell has a compiler (cc) on PATH.
        assert any(name.startswith("gcc-wrapper-") for name in names) == (platform == "cuda"), names


@needs_nix
@pytest.mark.parametrize("platform", PLATFORMS)
def test_shell_hook_sets_platform_and_runs_install(flake, checkout, platform):
    """The evaluated shellHook, run with bash in a checkout: it enters through install.sh with its platform."""
    hook = flake.eval(f"devShells.{SYSTEM}.{platform}.shellHook")
    assert f"export WAN_TRAINER_PLATFORM={platform}" in hook and "wan_trainer_enter" in hook
    sourced = [line.split()[1] for line in hook.splitlines() if line.strip().startswith("source ")]
    assert len(sourced) == 1 and Path(flake.in_private_store(sourced[0])).read_text() == HOOK.read_text()
    assert "-gcc-14.3.0-lib/lib:" in hook and "-zlib-" in hook and "-libGL-" in hook and "-glib-" in hook
    assert "tkinter-3.12.13/lib/python3.12/site-packages" in hook

    root = checkout(platform)
    proc, env = run_bash(flake.in_private_store(hook), cwd=root, env={"WAN_TRAINER_PLATFORM": "default"})
    assert proc.returncode == 0, proc.stderr
    assert f"platform {platform}, environment {root}/.venv (requirements-{platform}.txt)" in proc.stderr
    assert env["WAN_TRAINER_PLATFORM"] == platform  # the shell's platform wins over the caller's
    assert env["VIRTUAL_ENV"] == f"{root}/.venv"
    library_path = env["WAN_TRAINER_LIBRARY_PATH"].split(":")
    assert (DRIVER_LIB in library_path) == (platform == "cuda")
    if platform == "cuda":
        assert library_path[0] == DRIVER_LIB
        assert "nvidia-smi" in proc.stderr or "NVIDIA GPU found" in proc.stderr  # the GPU, or why none
        assert env["TRITON_LIBCUDA_PATH"] == DRIVER_LIB  # no ldconfig on NixOS: Triton is told where libcuda is
    # Host programs started from the shell get no library path from it; the trainer's Python (a wrapper the hook
    # writes) gets the wheels' libraries and Nix's tkinter, and is still the venv's Python.
    assert env["LD_LIBRARY_PATH"] == ""
    probe = "import os, sys; print(sys.prefix); print(os.environ['LD_LIBRARY_PATH']); print(os.environ['PYTHONPATH'])"
    seen = subprocess.run([root / ".venv" / "bin" / "python3", "-c", probe], capture_output=True, text=True, env={})
    prefix, ld_path, python_path = seen.stdout.splitlines()
    assert prefix == str(root / ".venv") and ld_path.split(":") == library_path, seen.stderr
    assert python_path.endswith("tkinter-3.12.13/lib/python3.12/site-packages")

    # A venv installed for another platform: the shell runs install.sh for its own (pip is absent here, so the
    # attempt shows, then the hook stops with a message).
    checkout("cuda" if platform == "default" else "default")
    proc, env = run_bash(flake.in_private_store(hook), cwd=root)
    assert f"install.sh: installing requirements-{platform}.txt into .venv (platform: {platform})" in proc.stderr
    assert "scripts/install.sh failed" in proc.stderr and env["VIRTUAL_ENV"] == ""


@needs_nix
def test_rocm_shell_passes_gfx_override_through(flake, checkout, tmp_path):
    rocm = f"devShells.{SYSTEM}.rocm"
    # An attribute of that name would be exported by `nix develop` over the user's value.
    assert flake.eval(rocm, "d: d ? HSA_OVERRIDE_GFX_VERSION") is False
    hook = flake.in_private_store(flake.eval(f"{rocm}.shellHook"))
    topology = write_kfd_topology(tmp_path / "nodes", [100300])
    env_in = {"HSA_OVERRIDE_GFX_VERSION": "10.3.0", "WAN_TRAINER_KFD_TOPOLOGY": str(topology)}
    proc, env = run_bash(hook, cwd=checkout("rocm"), env=env_in)
    assert proc.returncode == 0, proc.stderr
    assert "AMD GPU found: gfx1030" in proc.stderr
    assert "HSA_OVERRIDE_GFX_VERSION=10.3.0 (from your environment)" in proc.stderr
    assert env["HSA_OVERRIDE_GFX_VERSION"] == "10.3.0"


@needs_nix
def test_apps_run_their_script_in_the_trainer_environment(flake):
    apps = flake.eval(f"apps.{SYSTEM}")
    for name, script in APPS.items():
        package = flake.eval(f"packages.{SYSTEM}.{name}", "p: { out = p.outPath; text = p.text; }")
        assert apps[name]["program"] == f"{package['out']}/bin/wan-trainer-{name}"
        text = package["text"]
        assert f'"$WAN_TRAINER_ROOT/{script}" "$@"' in text
        assert "wan_trainer_enter" in text and f"export WAN_TRAINER_LIBRARY_PATH={DRIVER_LIB}:" in text
        assert f"export TRITON_LIBCUDA_PATH={DRIVER_LIB}" in text and "LD_LIBRARY_PATH" not in text
        assert "WAN_TRAINER_PLATFORM=" not in text  # the platform is install.sh's choice or the caller's
        inputs = flake.eval(f"packages.{SYSTEM}.{name}.runtimeInputs", "map (p: p.name)")
        assert any(name.startswith("gcc-wrapper-") for name in inputs), inputs  # Triton's C compiler


@needs_nix
@needs_shellcheck
def test_app_scripts_pass_shellcheck(flake, tmp_path):
    """writeShellApplication refuses to build a script shellcheck complains about: check the bodies likewise."""
    for name in APPS:
        script = tmp_path / f"{name}.sh"
        body = flake.eval(f"packages.{SYSTEM}.{name}.text")
        script.write_text("#!/usr/bin/env bash\nset -o errexit\nset -o nounset\nset -o pipefail\n" + body)
        proc = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


@needs_nix
def test_train_app_runs_train_py(flake):
    """The train app's body under `set -euo pipefail` (as writeShellApplication runs it), in this checkout:
    the hook enters the existing venv and train.py answers --help. Only when that venv is installed from these
    requirements, so install.sh has nothing to do (the test never installs packages)."""
    stamp = REPO_ROOT / ".venv" / ".installed-requirements"
    platform = stamp.read_text().split()[0] if stamp.exists() else ""
    if platform not in PLATFORMS or stamp.read_text() != installed_stamp(REPO_ROOT, platform):
        pytest.skip(".venv is not installed from the current requirements files (run scripts/install.sh)")
    text = flake.in_private_store(flake.eval(f"packages.{SYSTEM}.train.text"))
    # This checkout's .venv is the developer's own: the hook must not turn its python into a wrapper here.
    keep = {"WAN_TRAINER_KEEP_VENV_PYTHON": "1"}
    python = REPO_ROOT / ".venv" / "bin" / "python"
    before = (python.is_symlink(), os.readlink(python) if python.is_symlink() else python.read_bytes())
    proc, env = run_bash(f"set -- --help\n{text}", cwd=REPO_ROOT / "docs", env=keep, strict=True)
    assert (python.is_symlink(), os.readlink(python) if python.is_symlink() else python.read_bytes()) == before
    assert proc.returncode == 0, proc.stderr
    assert "usage: train.py" in proc.stdout and "--config-path" in proc.stdout
    assert f"platform {platform}, environment {REPO_ROOT}/.venv" in proc.stderr


@needs_nix
def test_standin_refuses_nix_older_than_nixpkgs_does(flake):
    """The stand-in enforces nixpkgs' minimum (2.18, lib/minver.nix since 25.11) on the Nix evaluating it, so a
    flake test run by an older Nix fails as a real evaluation would; this Nix passes it (every test above)."""
    getflake = f'(builtins.getFlake "path:{STAND_IN}").lib'
    assert flake.run("eval", "--impure", "--raw", "--expr", f"{getflake}.minimumNixVersion").stdout == "2.18"
    old = flake.run("eval", "--impure", "--expr", f'{getflake}.checkNixVersion "2.8.0"')  # Debian 12's nix-bin
    assert old.returncode != 0 and "requires Nix >= 2.18" in old.stderr and "2.8.0" in old.stderr
    assert flake.run("eval", "--impure", "--expr", f'{getflake}.checkNixVersion "2.18.0"').stdout.strip() == "true"
    assert nix_version(NIX) >= MINIMUM_NIX


OLD_NIX = NIX_PREFIX / "old" / "bin" / "nix"  # Debian 12's 2.8, from scripts/ci_install_nix.sh


@needs_nix
@pytest.mark.skipif(
    not OLD_NIX.is_file(), reason=f"no Debian 12 nix in {OLD_NIX.parent.parent} (bash scripts/ci_install_nix.sh)"
)
def test_an_old_nix_cannot_evaluate_the_flake(flake, monkeypatch):
    """What a user of Debian 12's Nix 2.8 gets: the evaluation stops at the stand-in's version check, as it stops
    at nixpkgs' own with a real nixpkgs."""
    assert nix_version(str(OLD_NIX)) < MINIMUM_NIX
    monkeypatch.setattr(sys.modules[__name__], "NIX", str(OLD_NIX))
    proc = flake.run("eval", "--raw", f".#devShells.{SYSTEM}.default.name")
    assert proc.returncode != 0 and "requires Nix >= 2.18" in proc.stderr and "Nix 2.8" in proc.stderr, proc.stderr


@needs_nix
def test_shell_warns_while_flake_lock_is_missing(flake, checkout, tmp_path):
    """Unlocked is unsupported: the hook says so and how to lock, until flake.lock exists (then it is silent)."""
    root = checkout("default")
    unlocked = flake.in_private_store(flake.eval(f"devShells.{SYSTEM}.default.shellHook"))
    assert "export WAN_TRAINER_FLAKE_LOCKED=0" in unlocked
    proc, _ = run_bash(unlocked, cwd=root)
    assert proc.returncode == 0 and "no flake.lock" in proc.stderr and "nix flake lock" in proc.stderr
    locked_flake = Flake(tmp_path)
    lock = locked_flake.run("flake", "lock", lock=True)  # offline: the stand-in, a path input, is all there is to lock
    assert lock.returncode == 0 and (locked_flake.repo / "flake.lock").is_file(), lock.stderr
    subprocess.run(["git", "add", "flake.lock"], cwd=locked_flake.repo, check=True)
    locked = locked_flake.in_private_store(locked_flake.eval(f"devShells.{SYSTEM}.default.shellHook"))
    assert "export WAN_TRAINER_FLAKE_LOCKED=1" in locked
    proc, _ = run_bash(locked, cwd=root)
    assert proc.returncode == 0 and "flake.lock" not in proc.stderr, proc.stderr


def test_hook_links_the_wsl2_driver_with_libdxcore(checkout, tmp_path):
    """WSL2's libcuda (in /usr/lib/wsl/lib) needs libdxcore beside it: both are linked for the trainer's Python,
    Triton is pointed there, and the shell's own LD_LIBRARY_PATH stays unset."""
    wsl = tmp_path / "wsl_lib"
    wsl.mkdir()
    for name in ("libcuda.so.1", "libcuda.so", "libdxcore.so", "libnvidia-ml.so.1", "libd3d12.so"):
        (wsl / name).write_bytes(b"")
    root = checkout("cuda")
    env_in = {"WAN_TRAINER_PLATFORM": "cuda", "WAN_TRAINER_WSL_LIB": str(wsl), "WAN_TRAINER_LIBRARY_PATH": "/opt/x"}
    proc, env = run_bash(ENTER, cwd=root, env=env_in, strict=True)
    assert proc.returncode == 0, proc.stderr
    linked = root / ".venv" / "host-driver-lib"
    assert sorted(p.name for p in linked.iterdir()) == [
        "libcuda.so",
        "libcuda.so.1",
        "libdxcore.so",
        "libnvidia-ml.so.1",
    ]
    assert all((linked / p).resolve().parent == wsl for p in ("libcuda.so.1", "libdxcore.so"))
    assert env["WAN_TRAINER_LIBRARY_PATH"] == f"{linked}:/opt/x" and env["TRITON_LIBCUDA_PATH"] == str(linked)
    assert env["LD_LIBRARY_PATH"] == ""
    assert f"driver library: {linked}/libcuda.so.1" in proc.stderr
    seen = subprocess.run(
        [root / ".venv" / "bin" / "python", "-c", "import os; print(os.environ['LD_LIBRARY_PATH'])"],
        capture_output=True, text=True, env={"LD_LIBRARY_PATH": "/caller"},
    )  # fmt: skip
    assert seen.stdout.strip() == f"{linked}:/opt/x:/caller", seen.stderr
