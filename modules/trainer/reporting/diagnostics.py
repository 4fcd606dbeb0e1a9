"""The diagnostics report: what this machine and this config look like to the trainer, for bug reports.

`collect_report(config)` gathers the OS, Python, torch and its CUDA or ROCm (HIP) build, every GPU (memory, compute
capability or gfx target), bitsandbytes' backend, ffmpeg and the video readers, each configured model part as the
plugin detects it and the memory planner's verdict. `scripts/diagnose.py` prints it; every training run writes it
to <workspace>/diagnostics.json at the start. Nothing here may fail the caller: each probe that breaks says why in
its own entry. `REPORT_SCHEMA` is the JSON schema of the report (tests validate against it).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import shutil
import subprocess
import sys

SCHEMA_VERSION = 1
NO_GPU = "no GPU found: torch sees no CUDA or ROCm device, so training would run on the CPU"

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_BOOL = {"type": "boolean"}
REPORT_SCHEMA: dict = {
    "type": "object",
    "required": ["schema_version", "os", "python", "torch", "gpus", "gpu_summary", "bitsandbytes", "ffmpeg",
                 "video_readers", "packages", "model_parts", "memory_plan"],
    "properties": {
        "schema_version": {"type": "integer"},
        "os": {"type": "object", "required": ["system", "release", "machine"],
               "properties": {"system": _STR, "release": _STR, "machine": _STR}},
        "python": {"type": "object", "required": ["version", "executable"],
                   "properties": {"version": _STR, "executable": _STR}},
        "torch": {"type": "object", "required": ["version", "cuda", "hip", "accelerator_available"],
                  "properties": {"version": _STR, "cuda": _NSTR, "hip": _NSTR, "accelerator_available": _BOOL}},
        "gpus": {"type": "array", "items": {
            "type": "object", "required": ["index", "name", "memory_gib", "compute_capability", "gfx_target"],
            "properties": {"index": {"type": "integer"}, "name": _STR, "memory_gib": {"type": "number"},
                           "compute_capability": _NSTR, "gfx_target": _NSTR}}},
        "gpu_summary": _STR,
        "bitsandbytes": {"type": "object", "required": ["installed", "version", "backend", "usable", "message"],
                         "properties": {"installed": _BOOL, "version": _NSTR, "backend": _NSTR,
                                        "usable": {"type": ["boolean", "null"]},
                                        "message": _STR}},
        "ffmpeg": {"type": "object", "required": ["path", "version"], "properties": {"path": _NSTR, "version": _NSTR}},
        "video_readers": {"type": "array", "items": {
            "type": "object", "required": ["name", "installed", "version"],
            "properties": {"name": _STR, "installed": _BOOL, "version": _NSTR}}},
        "packages": {"type": "object"},
        "model_parts": {"type": ["array", "null"], "items": {
            "type": "object", "required": ["part", "setting", "source"],
            "properties": {"part": _STR, "setting": _STR, "source": _NSTR, "variant": _NSTR, "dtype": _NSTR,
                           "naming": _NSTR, "expert": _NSTR, "error": _STR}}},
        "memory_plan": {"type": ["object", "null"], "required": ["verdict"],
                        "properties": {"verdict": _STR, "peak_gib": {"type": "number"}, "peak_phase": _STR,
                                       "gpu_memory_gib": {"type": ["number", "null"]}, "phases": {"type": "array"},
                                       "error": _STR}},
        "host_memory_plan": {"type": "object", "required": ["verdict"],
                             "properties": {"verdict": _STR, "peak_gib": {"type": "number"}, "peak_phase": _STR,
                                            "ram_gib": {"type": ["number", "null"]}, "phases": {"type": "array"},
                                            "verdicts": {"type": "object"}, "error": _STR}},
        "config_error": _STR,
        # Added by a training run once its data is prepared (modules/data/flow/report.py, DataReport.record).
        "data": {"type": "object", "required": ["concepts", "other"],
                 "properties": {"concepts": {"type": "array"}, "other": {"type": "object"}}},
    },
}  # fmt: skip


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def gpus() -> list[dict]:
    import torch

    found = []
    if not torch.cuda.is_available():
        return found
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        hip = torch.version.hip is not None
        found.append(
            {
                "index": index,
                "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 2),
                "compute_capability": None if hip else f"{props.major}.{props.minor}",
                "gfx_target": getattr(props, "gcnArchName", None) if hip else None,
            }
        )
    return found


def bitsandbytes_status(probe: bool = True) -> dict:
    """Whether bitsandbytes is installed and which native backend it loaded (CUDA, ROCm, CPU, ...). Without
    `probe` it is not imported (seconds) unless already loaded: `usable` is then None."""
    version = _version("bitsandbytes")
    if version is None:
        return {"installed": False, "version": None, "backend": None, "usable": False,
                "message": "not installed: int8/nf4 storage and 8-bit AdamW are unavailable"}  # fmt: skip
    if not probe and "bitsandbytes" not in sys.modules:
        return {"installed": True, "version": version, "backend": None, "usable": None,
                "message": "not probed (this run does not use it; scripts/diagnose.py probes it)"}  # fmt: skip
    try:
        import bitsandbytes.cextension as native

        backend = getattr(native, "BNB_BACKEND", None)
        library = type(getattr(native, "lib", None)).__name__
        usable = "Mock" not in library
        message = f"{backend} backend ({library})" if usable else f"no native library loaded ({library})"
        return {"installed": True, "version": version, "backend": backend, "usable": usable, "message": message}
    except Exception as error:  # noqa: BLE001 - a broken install is what this report is for
        return {"installed": True, "version": version, "backend": None, "usable": False,
                "message": f"import failed: {type(error).__name__}: {error}"}  # fmt: skip


def ffmpeg_status() -> dict:
    path = shutil.which("ffmpeg")
    if path is None:
        return {"path": None, "version": None}
    try:
        first = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=10).stdout.splitlines()
        return {"path": path, "version": first[0] if first else None}
    except (OSError, subprocess.SubprocessError) as error:
        return {"path": path, "version": f"cannot run: {error}"}


def video_readers() -> list[dict]:
    readers = [("decord", "decord"), ("av", "av"), ("imageio-ffmpeg", "imageio_ffmpeg")]
    return [
        {"name": name, "installed": importlib.util.find_spec(module) is not None, "version": _version(name)}
        for name, module in readers
    ]


def memory_plan_entry(config, vram_gib: float | None) -> dict:
    try:
        from modules.planning import plan_memory

        plan = plan_memory(config, vram_gib)
        return {**plan.to_dict(), "verdict": plan.verdict(vram_gib), "gpu_memory_gib": vram_gib}
    except Exception as error:  # noqa: BLE001
        return {"verdict": f"no plan: {error}", "gpu_memory_gib": vram_gib, "error": str(error)}


def _capacity_gib(found: list[dict]) -> float | None:
    """The size the memory decisions use: WAN_TRAINER_PRETEND_GPU_GIB's where set, else the first GPU's."""
    from modules.util.device import pretend_gpu_gib

    try:
        pretend = pretend_gpu_gib()
    except Exception:  # noqa: BLE001 - the report is for bugs like this one; the run itself will say why
        pretend = None
    return pretend if pretend is not None else (found[0]["memory_gib"] if found else None)


def collect_report(config=None, config_error: str | None = None, probe_bitsandbytes: bool = True) -> dict:
    import torch

    found = gpus()
    report = {
        "schema_version": SCHEMA_VERSION,
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "platform": platform.platform(),
        },  # fmt: skip
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "torch": {
            "version": torch.__version__,
            "cuda": torch.version.cuda,
            "hip": torch.version.hip,
            "accelerator_available": torch.cuda.is_available(),
        },  # fmt: skip
        "gpus": found,
        "gpu_summary": ", ".join(f"{g['name']} ({g['memory_gib']:.0f} GiB)" for g in found) or NO_GPU,
        "bitsandbytes": bitsandbytes_status(probe_bitsandbytes),
        "ffmpeg": ffmpeg_status(),
        "video_readers": video_readers(),
        "packages": {
            name: _version(name) for name in ("diffusers", "transformers", "peft", "accelerate", "safetensors", "numpy")
        },  # fmt: skip
        "model_parts": None,
        "memory_plan": None,
    }
    if config_error:
        report["config_error"] = config_error
    if config is not None:
        try:
            from modules.registry import describe_parts_for

            report["model_parts"] = describe_parts_for(config)
        except Exception as error:  # noqa: BLE001
            report["model_parts"] = [{"part": "all", "setting": "model", "source": None, "error": str(error)}]
        report["memory_plan"] = memory_plan_entry(config, _capacity_gib(found))
        report["host_memory_plan"] = host_memory_plan_entry(config)
    return report


def host_memory_plan_entry(config, processes: int = 1) -> dict:
    """The host (RAM) plan beside the GPU one (modules/memory/host.py)."""
    try:
        from modules.memory.host import build_host_plan, host_plan_entry, machine_ram_gib
        from modules.registry import memory_facts_for

        return host_plan_entry(build_host_plan(config, memory_facts_for(config), processes), machine_ram_gib())
    except Exception as error:  # noqa: BLE001
        return {"verdict": f"no plan: {error}", "error": str(error)}


def format_report(report: dict) -> str:
    """The report as text, one fact per line."""
    t, lines = report["torch"], []
    lines.append(f"OS:            {report['os']['platform']}")
    lines.append(f"Python:        {report['python']['version']} ({report['python']['executable']})")
    build = f"CUDA {t['cuda']}" if t["cuda"] else f"ROCm/HIP {t['hip']}" if t["hip"] else "CPU only"
    lines.append(f"torch:         {t['version']} ({build})")
    if report["gpus"]:
        for gpu in report["gpus"]:
            arch = f"compute {gpu['compute_capability']}" if gpu["compute_capability"] else gpu["gfx_target"]
            lines.append(f"GPU {gpu['index']}:         {gpu['name']}, {gpu['memory_gib']:.1f} GiB, {arch}")
    else:
        lines.append(f"GPU:           {NO_GPU}")
    bnb = report["bitsandbytes"]
    lines.append(f"bitsandbytes:  {bnb['version'] or '-'}: {bnb['message']}")
    ff = report["ffmpeg"]
    lines.append(f"ffmpeg:        {ff['version'] or 'not found on PATH'}" + (f" ({ff['path']})" if ff["path"] else ""))
    readers = ", ".join(f"{r['name']} {r['version']}" for r in report["video_readers"] if r["installed"])
    lines.append(f"video readers: {readers or 'none'}")
    lines.append("packages:      " + ", ".join(f"{k} {v}" for k, v in report["packages"].items()))
    if report.get("config_error"):
        lines.append(f"config:        {report['config_error']}")
    for part in report["model_parts"] or []:
        if part.get("error"):
            lines.append(f"{part['part']:<14} {part['error']}")
            continue
        facts = [part.get("kind"), part.get("variant"), part.get("dtype"),
                 f"{part.get('naming')} names" if part.get("naming") else None,
                 f"{part['expert']} expert" if part.get("expert") else None]  # fmt: skip
        lines.append(f"{part['part'] + ':':<14} {', '.join(f for f in facts if f)} ({part['source']})")
    if report["memory_plan"] is not None:
        lines.append(f"memory plan:   {report['memory_plan']['verdict']}")
    if report.get("host_memory_plan") is not None:
        lines.append(f"host memory:   {report['host_memory_plan']['verdict']}")
    return "\n".join(lines)


def validate_report(report: dict, schema: dict = REPORT_SCHEMA) -> list[str]:
    """Problems of `report` against the schema: jsonschema's when installed, else a small check of the same
    schema's types, required keys, properties and items."""
    try:
        import jsonschema
    except ImportError:
        return _check(report, schema, "report")
    return [f"{'/'.join(map(str, e.path)) or 'report'}: {e.message}" for e in
            jsonschema.Draft7Validator(schema).iter_errors(report)]  # fmt: skip


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(value, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def _check(value, schema: dict, where: str) -> list[str]:
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            return [f"{where}: expected {' or '.join(kinds)}, found {type(value).__name__}"]
    problems = []
    if isinstance(value, dict):
        problems += [f"{where}: missing {key}" for key in schema.get("required", []) if key not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problems += _check(value[key], sub, f"{where}/{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += _check(item, schema["items"], f"{where}/{index}")
    return problems
