"""What each stage of the GPU acceptance run does (modules/benchmark/acceptance.py holds the list and the budget).

In-process checks on a tiny transformer with a LoRA (device equality, quantised layers, block swapping) and the
benchmark scripts run as child processes (a crash or an out-of-memory error in one stage cannot take the others
with it). Every runner returns a dict: status (ok / failed / error), a one-line summary and its details.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
# docs/benchmarks.md "First GPU run": float32 on both sides (TF32 off) within 1e-4 relative; bf16 autocast rounds
# every matmul input to 8 bits of mantissa: the CPU's bf16 autocast is 2.1e-2 from float32 on this model, so 1e-1
# allows the device's different kernels while still catching a wrong result (which is off by order 1).
FLOAT32_TOLERANCE = 1e-4
BF16_TOLERANCE = 1e-1
TINY_SHAPE = dict(num_layers=4, heads=2, head_dim=32)


# ---- environment --------------------------------------------------------------------------------------------------
def environment(device: torch.device) -> dict:
    from modules.benchmark.results import attention_backends
    from modules.trainer.reporting.diagnostics import collect_report

    report = collect_report(None, probe_bitsandbytes=True)
    env = {
        "gpu_summary": report["gpu_summary"],
        "gpus": report["gpus"],
        "torch": report["torch"]["version"],
        "cuda": report["torch"]["cuda"],
        "hip": report["torch"]["hip"],
        "driver": _driver_version(),
        "attention": attention_backends(device),
        "bitsandbytes": report["bitsandbytes"]["message"],
        "packages": report["packages"],
    }
    return {"summary": f"{env['gpu_summary']}; torch {env['torch']}; bitsandbytes {env['bitsandbytes']}", **env}


def _driver_version() -> str | None:
    for command in (
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
        ["rocm-smi", "--showdriverversion"],
    ):
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=20)
            if out.returncode == 0:
                return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            continue
    return None


# ---- one step on the CPU and on the device ----------------------------------------------------------------------
def tiny_lora_transformer(seed: int = 0, **shape):
    from modules.module.lora import attach_lora
    from modules.registry import default_family

    torch.manual_seed(seed)
    transformer = default_family().benchmark_kit().tiny_expert(**{**TINY_SHAPE, **shape})
    transformer.requires_grad_(False)
    attach_lora(transformer, rank=4, alpha=4.0)
    with torch.no_grad():  # a LoRA starts at zero (B = 0); random B gives every A a gradient too
        for name, parameter in transformer.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.02, generator=torch.Generator().manual_seed(seed + 1))
    return transformer


def tiny_inputs(seed: int = 1, size: int = 32, frames: int = 9, text_dim: int | None = None) -> dict:
    from modules.registry import default_family

    text_dim = text_dim or default_family().benchmark_kit().tiny_text_dim()
    generator = torch.Generator().manual_seed(seed)
    latent_frames = (frames - 1) // 4 + 1
    return {
        "hidden_states": torch.randn(1, 16, latent_frames, size // 8, size // 8, generator=generator),
        "timestep": torch.tensor([500.0]),
        "encoder_hidden_states": torch.randn(1, 16, text_dim, generator=generator),
        "target": torch.randn(1, 16, latent_frames, size // 8, size // 8, generator=generator),
    }


def lora_step(transformer, inputs: dict, device: torch.device, autocast_dtype: torch.dtype | None):
    """Loss and every LoRA gradient of one forward/backward pass, on the CPU in float32."""
    transformer = transformer.to(device)
    batch = {k: v.to(device) for k, v in inputs.items()}
    target = batch.pop("target")
    with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        output = transformer(**batch, return_dict=False)[0]
    loss = torch.nn.functional.mse_loss(output.float(), target)
    loss.backward()
    grads = {n: p.grad.detach().float().cpu() for n, p in transformer.named_parameters() if p.grad is not None}
    return float(loss), grads


def relative_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def cpu_vs_device(device: torch.device) -> dict:
    if device.type == "cuda":  # float32 means float32: no TF32 matmuls or convolutions in this comparison
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    inputs = tiny_inputs()
    reference_loss, reference = lora_step(tiny_lora_transformer(), inputs, torch.device("cpu"), None)
    rows = {}
    for name, dtype, tolerance in (
        ("float32", None, FLOAT32_TOLERANCE),
        ("bf16 autocast", torch.bfloat16, BF16_TOLERANCE),
    ):
        loss, grads = lora_step(tiny_lora_transformer(), inputs, device, dtype)
        worst = max(relative_distance(grads[k], reference[k]) for k in reference)
        rows[name] = {
            "loss": loss,
            "loss_relative": abs(loss - reference_loss) / abs(reference_loss),
            "worst_gradient_relative": worst,
            "gradients": len(grads),
            "tolerance": tolerance,
            "ok": grads.keys() == reference.keys()
            and worst <= tolerance
            and abs(loss - reference_loss) <= tolerance * abs(reference_loss),
        }
    ok = all(r["ok"] for r in rows.values())
    summary = "; ".join(
        f"{k}: worst gradient {r['worst_gradient_relative']:.1e} (<= {r['tolerance']:g})" for k, r in rows.items()
    )
    return {
        "status": "ok" if ok else "failed",
        "summary": f"{device} vs cpu, {summary}",
        "cpu_loss": reference_loss,
        **rows,
    }


# ---- quantised layers and block swapping -----------------------------------------------------------------------
def quantised_layers(device: torch.device) -> dict:
    """Each storage's layer output against the float32 layer, and whether it runs here at all."""
    from modules.module.bnb_linear import quantised_linear
    from modules.module.fp8_linear import Fp8Linear, quantise_fp8

    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 256).requires_grad_(False)
    x = torch.randn(8, 256)
    reference = linear(x).detach()
    rows = {}
    for kind in ("float8_e4m3fn", "int8", "nf4"):
        try:
            if kind == "float8_e4m3fn":
                layer = Fp8Linear.from_linear(_copy_linear(linear), *quantise_fp8(linear.weight.detach()))
            else:
                layer = quantised_linear(_copy_linear(linear), kind, torch.bfloat16)
            layer = layer.to(device)
            xin = x.to(device).requires_grad_(True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = layer(xin)
            out.float().sum().backward()
            rows[kind] = {"relative_error": relative_distance(out.float().cpu().detach(), reference),
                          "input_gradient_finite": bool(torch.isfinite(xin.grad).all())}  # fmt: skip
        except Exception as error:  # noqa: BLE001 - not runnable here is a finding, not a crash
            rows[kind] = {"error": f"{type(error).__name__}: {str(error)[:200]}"}
    return rows


def _copy_linear(linear: torch.nn.Linear) -> torch.nn.Linear:
    copy = torch.nn.Linear(linear.in_features, linear.out_features).requires_grad_(False)
    copy.load_state_dict(linear.state_dict())
    return copy


def swap_equality(device: torch.device, checkpointing: bool = True) -> dict:
    """A float32 LoRA step with half the blocks swapped equals the step without, bit for bit; the placement
    trace (copies per block and pass) comes with it."""
    from collections import Counter

    from modules.module.block_swap import BlockSwapper

    inputs = tiny_inputs()
    plain = tiny_lora_transformer()
    if checkpointing:
        plain.enable_gradient_checkpointing()
    plain_loss, plain_grads = lora_step(plain, inputs, device, None)
    swapped = tiny_lora_transformer()
    if checkpointing:
        swapped.enable_gradient_checkpointing()
    blocks = len(swapped.blocks)
    events = []
    swapper = BlockSwapper(swapped.blocks, range(blocks // 2, blocks))
    swapper.observer = lambda kind, index, phase, resident: events.append((kind, index, phase, len(resident)))
    loss, grads = lora_step(swapped, inputs, device, None)
    equal = (
        loss == plain_loss
        and grads.keys() == plain_grads.keys()
        and all(torch.equal(grads[k], plain_grads[k]) for k in grads)
    )
    copies = Counter(f"{index}/{phase}" for kind, index, phase, _ in events if kind == "copy")
    once = set(copies.values()) == {1} and len(copies) == 2 * (blocks - blocks // 2)
    return {"bit_equal": equal, "copies_per_block_and_pass": dict(copies), "each_block_once_per_pass": once,
            "most_resident": max((e[3] for e in events), default=0), "trace": events[:64]}  # fmt: skip


def offload_equality(device: torch.device) -> dict:
    """Activation offloading (with half the blocks swapped) against plain checkpointing, bit for bit, two steps; its
    host slots: one per block, each the block input's exact size, page-locked by registration on a GPU (what the
    host-memory plan counts), none made again by the second step."""
    from modules.module.activation_offload import offload_activations, offload_slot_pool
    from modules.module.block_swap import BlockSwapper
    from modules.module.host_buffer import page_rounded, pinned_bytes

    inputs = tiny_inputs()
    plain = tiny_lora_transformer()
    plain.enable_gradient_checkpointing()
    plain_loss, plain_grads = lora_step(plain, inputs, device, None)
    offloaded = tiny_lora_transformer()
    offloaded.enable_gradient_checkpointing()
    offload_activations(offloaded)
    blocks = len(offloaded.blocks)
    BlockSwapper(offloaded.blocks, range(blocks // 2, blocks))
    seen = []
    offloaded.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].nbytes))
    pool = offload_slot_pool(offloaded, pin=device.type == "cuda")
    pool.release_free()
    steps = []
    for _ in range(2):
        steps.append(lora_step(offloaded, inputs, device, None))
        offloaded.zero_grad(set_to_none=True)
    equal = all(
        loss == plain_loss and all(torch.equal(grads[k], plain_grads[k]) for k in plain_grads) for loss, grads in steps
    )
    expected = blocks * page_rounded(seen[0])
    return {"bit_equal": equal, "slots_made": pool.created, "blocks": blocks, "held_bytes": pool.held_bytes,
            "expected_bytes": expected, "exact": pool.exact and pool.held_bytes == expected,
            "pinned_bytes_now": pinned_bytes()[0]}  # fmt: skip


def copy_overlap(device: torch.device, tiny: bool) -> dict:
    """Step time with swapping against without, and the time the copies take alone: the share of copy time hidden
    behind compute (1: fully overlapped). Meaningful on CUDA only (elsewhere copies are synchronous)."""
    from modules.module.block_swap import BlockSwapper

    real = device.type == "cuda" and not tiny
    dtype = torch.bfloat16 if device.type == "cuda" else None
    inputs = tiny_inputs(size=480, frames=33, text_dim=4096) if real else tiny_inputs()

    def build():
        if not real:
            return tiny_lora_transformer()
        from modules.module.lora import attach_lora
        from modules.registry import default_family

        # Four blocks of the real A14B expert's shape, bf16, built a block at a time and parked in CPU memory.
        kit = default_family().benchmark_kit()
        transformer = kit.real_shaped_expert(device, torch.bfloat16, num_layers=4, host=torch.device("cpu"))
        transformer.requires_grad_(False)
        attach_lora(transformer, rank=16, alpha=16.0)
        return transformer

    def median_step(transformer, steps: int = 3) -> float:
        times = []
        for _ in range(steps + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            lora_step(transformer, inputs, device, dtype)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
            transformer.zero_grad(set_to_none=True)
        return sorted(times[1:])[len(times[1:]) // 2]

    plain = build()
    plain_s = median_step(plain)
    del plain
    swapped = build()
    blocks = len(swapped.blocks)
    BlockSwapper(swapped.blocks, range(blocks // 2, blocks))
    swap_s = median_step(swapped)
    block = [t for t in [*swapped.blocks[0].parameters(), *swapped.blocks[0].buffers()] if not t.requires_grad]
    staged = [t.detach().cpu().pin_memory() if device.type == "cuda" else t.detach().cpu() for t in block]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(2 * (blocks - blocks // 2)):  # each swapped block in once per pass
        [t.to(device, non_blocking=True) for t in staged]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    copy_s = time.perf_counter() - start
    hidden = None if copy_s <= 0 else max(0.0, min(1.0, 1 - (swap_s - plain_s) / copy_s))
    return {"no_swap_s": plain_s, "swap_s": swap_s, "copies_alone_s": copy_s,
            "overlap_fraction": hidden if device.type == "cuda" else None,
            "shape": "A14B blocks x4, 480x480x33" if real else "tiny"}  # fmt: skip


def layers_and_swap(device: torch.device, tiny: bool) -> dict:
    layers = quantised_layers(device)
    swap = swap_equality(device)
    offload = offload_equality(device)
    overlap = copy_overlap(device, tiny)
    ok = swap["bit_equal"] and swap["each_block_once_per_pass"] and "error" not in layers["float8_e4m3fn"]
    ok = ok and offload["bit_equal"] and offload["exact"] and offload["slots_made"] == offload["blocks"]
    ran = ", ".join(
        f"{k} {v['relative_error']:.3f}" if "relative_error" in v else f"{k} unavailable" for k, v in layers.items()
    )
    frac = overlap["overlap_fraction"]
    summary = (f"swap bit-equal: {swap['bit_equal']}; offloading bit-equal: {offload['bit_equal']}, exact slots: "
               f"{offload['exact']}; layers (relative error): {ran}; copy overlap "
               + (f"{frac:.0%}" if frac is not None else "n/a (synchronous copies off CUDA)"))  # fmt: skip
    return {"status": "ok" if ok else "failed", "summary": summary, "layers": layers, "swap": swap,
            "offload": offload, "overlap": overlap}  # fmt: skip


# ---- child processes: the scripts -------------------------------------------------------------------------------
def run_script(arguments: list[str], timeout_s: float, log: Path) -> tuple[int, str]:
    """Run a repository script with this Python; (exit code, the tail of its output). A timeout is exit code 124."""
    command = [sys.executable, *arguments]
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=max(timeout_s, 1))
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        output = (
            (expired.stdout or b"").decode(errors="replace")
            if isinstance(expired.stdout, bytes)
            else (expired.stdout or "")
        )
        code = 124
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {' '.join(command)}\n{output}", encoding="utf-8")
    return code, output[-1500:]


def presets(device: torch.device, tiny: bool, out_dir: Path, timeout_s: float) -> dict:
    results = out_dir / "presets.json"
    arguments = ["scripts/smoke_presets.py", "--device", device.type, "--json", str(results)]
    if tiny:  # the plumbing: one preset
        arguments += ["--preset", "training_presets/wan22_ti2v_5b_lora_16gb.json"]
    code, tail = run_script(arguments, timeout_s, out_dir / "presets.log")
    rows = json.loads(results.read_text()) if results.is_file() else []
    failed = [r["preset"] for r in rows if r["status"] != "ok"]
    status = "ok" if code == 0 and rows and not failed else "failed"
    summary = f"{len(rows) - len(failed)} of {len(rows)} presets passed" + (
        f"; failed: {', '.join(failed)}" if failed else ""
    )
    return {
        "status": status,
        "summary": summary if rows else f"exit {code}: {tail[-300:]}",
        "exit_code": code,
        "results": rows,
    }


def benchmark(arguments: list[str], name: str, out_dir: Path, timeout_s: float) -> tuple[int, list[dict], str]:
    results = out_dir / f"{name}.json"
    code, tail = run_script(
        ["scripts/benchmark.py", *arguments, "--json", str(results)], timeout_s, out_dir / f"{name}.log"
    )
    rows = json.loads(results.read_text())["results"] if results.is_file() else []
    return code, rows, tail


def _row_line(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['name']}: {row['status']} {row.get('error', '')}"
    mfu = f", MFU {row['mfu']:.0%}" if row.get("mfu") is not None else ""
    peak = f", peak {row['peak_allocated_gib']:.1f} GiB" if row.get("peak_allocated_gib") is not None else ""
    return f"{row['name']}: {row['steady_s_median']:.2f} s/step{mfu}{peak}"


def real_shapes(variant: str, rank: int, tiny: bool, device: torch.device, out_dir: Path, timeout_s: float) -> dict:
    arguments = ["--variant", variant, "--device", device.type, "--compile", "none,blocks"]
    if tiny:
        arguments += ["--tiny", "--steps", "2", "--warmup", "1", "--compile", "none"]
    else:
        arguments += ["--width", "832", "--height", "480", "--frames", "81", "--rank", str(rank), "--steps", "5",
                      "--warmup", "2", "--dtype", "bfloat16", "--checkpointing"]  # fmt: skip
    code, rows, tail = benchmark(arguments, f"real_{variant.lower()}", out_dir, timeout_s)
    ok = code == 0 and rows and all(r["status"] == "ok" for r in rows)
    summary = "; ".join(_row_line(r) for r in rows) or f"exit {code}: {tail[-300:]}"
    return {"status": "ok" if ok else "failed", "summary": summary, "rows": rows}


def capped_a14b(device: torch.device, out_dir: Path, timeout_s: float) -> dict:
    """The 24 GB preset's settings on one A14B expert at 832x480x81, under a 24 GiB cap and without one."""
    preset = "training_presets/wan22_t2v_a14b_lora_24gb.json"
    common = ["--preset", preset, "--device", device.type, "--width", "832", "--height", "480", "--frames", "81",
              "--steps", "4", "--warmup", "2"]  # fmt: skip
    code, rows, tail = benchmark([*common, "--memory-cap", "24"], "a14b_24gb_capped", out_dir, timeout_s / 2)
    code2, free, tail2 = benchmark(common, "a14b_24gb_uncapped", out_dir, timeout_s / 2)
    capped, uncapped = (rows or [{}])[0], (free or [{}])[0]
    ratio = None
    if capped.get("status") == "ok" and uncapped.get("status") == "ok":
        ratio = capped["steady_s_median"] / uncapped["steady_s_median"]
    summary = "; ".join(_row_line(r) for r in (*rows, *free)) + (
        f"; capped/uncapped {ratio:.2f} (goal <= 1.3)" if ratio else ""
    )
    ok = ratio is not None and ratio <= 1.3 and capped.get("peak_reserved_gib", 99) <= 24
    summary = summary or f"exit {code}/{code2}: {tail[-200:]} {tail2[-200:]}"
    return {"status": "ok" if ok else "failed", "summary": summary, "ratio": ratio, "capped": capped,
            "uncapped": uncapped}  # fmt: skip
