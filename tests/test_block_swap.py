"""Block swapping (modules/module/block_swap.py) and activation offloading: a training step with swapping equals the
step without it bit for bit (outputs, loss, every LoRA gradient; float32; with and without gradient checkpointing;
a LoRA and both A14B experts through the real trainer); sampling equals sampling without; an instrumented run shows
which blocks are resident, that no swapped block ever computes (forward, recomputation or backward) with its CPU
copy, and that each is copied in once per forward and once per backward. Plus the refused combinations."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from modules.config.loading import config_from_dict
from modules.config.sampling_config import SampleConfig
from modules.config.validation import ConfigError, to_dict
from modules.module.activation_offload import offload_activations, offloaded_checkpoint
from modules.module.block_swap import BlockSwapper
from modules.module.fp8_linear import Fp8Linear, convert_to_fp8_storage
from modules.module.lora import attach_lora, lora_parameters
from modules.wan.loading.loader import load_wan_model
from modules.wan.memory import install_block_swap
from modules.wan.sampling.pipeline import generate_clip
from modules.wan.sampling.settings import resolve_settings
from modules.wan.tiny_models import build_transformer
from modules.wan.training import experts
from modules.wan.variants import VARIANTS
from tests.test_both_experts import make_trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BLOCKS, SWAPPED, WINDOW = 5, 3, 2


def bit_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape and the same float32 bits (not merely ==, which would equate -0.0 and 0.0)."""
    a, b = a.detach().float().contiguous(), b.detach().float().contiguous()
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


def lora_transformer(seed: int = 0, fp8: bool = False) -> torch.nn.Module:
    torch.manual_seed(seed)
    transformer = build_transformer(VARIANTS["TI2V-5B"], num_layers=BLOCKS)
    transformer.requires_grad_(False)
    if fp8:
        convert_to_fp8_storage(transformer)
    attach_lora(transformer, rank=4, alpha=3.0)
    with torch.no_grad():  # B is zero after init: give every adapter a gradient path through both factors
        for parameter in lora_parameters(transformer):
            parameter.normal_(std=0.05)
    return transformer


def inputs(transformer) -> dict:
    generator = torch.Generator().manual_seed(3)
    return dict(
        hidden_states=torch.randn(1, transformer.config.in_channels, 2, 8, 8, generator=generator),
        timestep=torch.tensor([640.0]),
        encoder_hidden_states=torch.randn(1, 7, transformer.config.text_dim, generator=generator),
        return_dict=False,
    )


def step(transformer, checkpointing: bool, autocast: torch.dtype | None = None, text_grad: bool = False):
    """One forward + backward; returns the output, the loss and every gradient (with `text_grad`, also the text
    states' gradient, the path an embedding trains through)."""
    if checkpointing and not transformer.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    transformer.train()
    transformer.zero_grad(set_to_none=True)
    arguments = inputs(transformer)
    text = arguments["encoder_hidden_states"].requires_grad_(text_grad)
    with torch.autocast("cpu", dtype=autocast or torch.float32, enabled=autocast is not None):
        output = transformer(**arguments)[0]
    loss = output.float().square().mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in transformer.named_parameters() if p.requires_grad}
    if text_grad:
        grads["text"] = text.grad.clone()
    return output.detach().clone(), loss.detach().clone(), grads


class Recorder:
    """Every copy/release of the swapper, and every use of a swapped weight: while a layer computes and whenever
    the backward pass reads a saved weight, the weight must be the device copy, never the CPU storage."""

    def __init__(self, transformer, swapper: BlockSwapper):
        self.events, self.bad_uses, self.uses = [], [], 0
        self.storage = {slot.storage.data_ptr() for slots in swapper.slots.values() for slot in slots}
        swapper.observer = lambda kind, index, phase, resident: self.events.append((kind, index, phase, resident))
        for index in swapper.slots:
            for name, module in transformer.blocks[index].named_modules():
                if isinstance(module, torch.nn.Linear) and not name.split(".")[-1].startswith("lora"):
                    module.register_forward_pre_hook(
                        lambda m, args, where=f"{index}.{name}": self.check(m.weight, where)
                    )

    def check(self, tensor: torch.Tensor, where: str) -> None:
        self.uses += 1
        if tensor.data_ptr() in self.storage:
            self.bad_uses.append(where)

    def saved_tensor_hooks(self):
        def unpack(tensor):
            self.check(tensor, "backward") if tensor.data_ptr() in self.storage else None
            return tensor

        return torch.autograd.graph.saved_tensors_hooks(lambda tensor: tensor, unpack)


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
def test_lora_step_is_bit_equal_and_each_swapped_block_visits_once_per_pass(checkpointing):
    reference = step(lora_transformer(), checkpointing)
    transformer = lora_transformer()
    swapper = BlockSwapper(transformer.blocks, range(BLOCKS - SWAPPED, BLOCKS), window=WINDOW)
    recorder = Recorder(transformer, swapper)
    with recorder.saved_tensor_hooks():
        output, loss, grads = step(transformer, checkpointing)

    assert bit_equal(output, reference[0]) and bit_equal(loss, reference[1])
    assert grads.keys() == reference[2].keys() and len(grads) == 2 * 10 * BLOCKS  # A and B of 10 linears per block
    assert all(bit_equal(grads[name], reference[2][name]) for name in grads)
    # Every swapped layer computed (forward and, with checkpointing, recomputation) with its device copy.
    assert recorder.uses >= SWAPPED * 10 * (2 if checkpointing else 1) and not recorder.bad_uses
    copies = Counter((index, phase) for kind, index, phase, _ in recorder.events if kind == "copy")
    assert copies == {(i, phase): 1 for i in swapper.slots for phase in ("forward", "backward")}
    # Resident at any time: the unswapped blocks and at most `window` swapped ones.
    most = max(len(resident) for *_, resident in recorder.events)
    assert most == WINDOW and (BLOCKS - SWAPPED) + most <= (BLOCKS - SWAPPED) + WINDOW
    # Forward in block order, backward in reverse; nothing resident or pointing at a device copy afterwards.
    order = [(index, phase) for kind, index, phase, _ in recorder.events if kind == "copy"]
    assert [i for i, p in order if p == "forward"] == [2, 3, 4] and [i for i, p in order if p == "backward"] == [
        4,
        3,
        2,
    ]
    assert not swapper.resident
    assert all(
        slot.module._parameters.get(slot.name, None) is None
        or slot.module._parameters[slot.name].data_ptr() == slot.storage.data_ptr()
        for slots in swapper.slots.values()
        for slot in slots
        if slot.is_parameter
    )


def assert_same_step(reference, got) -> None:
    assert bit_equal(got[0], reference[0]) and bit_equal(got[1], reference[1])
    assert got[2].keys() == reference[2].keys() and all(bit_equal(got[2][k], reference[2][k]) for k in got[2])


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
def test_fp8_storage_with_swapping_is_bit_equal(checkpointing):
    reference = step(lora_transformer(fp8=True), checkpointing, autocast=torch.bfloat16)
    transformer = lora_transformer(fp8=True)
    swapper = BlockSwapper(transformer.blocks, range(1, BLOCKS))
    swapped = [n for n, m in transformer.blocks[BLOCKS - 1].named_modules() if isinstance(m, Fp8Linear)]
    assert len(swapped) == 10  # the fp8 layers of a swapped block, weight and scale both in CPU storage
    assert {slot.name for slot in swapper.slots[BLOCKS - 1]} >= {"weight", "scale_weight"}
    assert_same_step(reference, step(transformer, checkpointing, autocast=torch.bfloat16))


def full_finetune_transformer() -> torch.nn.Module:
    """finetune.block_filter '0' on top of the LoRA model: block 0's own weights train too."""
    transformer = lora_transformer()
    transformer.blocks[0].requires_grad_(True)
    return transformer


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
def test_full_finetune_of_a_block_filter_and_embedding_gradients_are_bit_equal(checkpointing):
    reference = step(full_finetune_transformer(), checkpointing, text_grad=True)
    transformer = full_finetune_transformer()
    BlockSwapper(transformer.blocks, range(1, BLOCKS))
    got = step(transformer, checkpointing, text_grad=True)
    assert any(k.startswith("blocks.0.ffn") and "lora" not in k for k in got[2]) and "text" in got[2]
    assert_same_step(reference, got)


def test_moving_the_model_leaves_swapped_weights_in_cpu_memory():
    transformer = lora_transformer()
    swapper = BlockSwapper(transformer.blocks, [BLOCKS - 1])
    transformer.to("meta")  # any move: the resident part goes, the swapped frozen weights stay where they live
    swapped = transformer.blocks[BLOCKS - 1]
    assert swapped.attn1.to_q.base_layer.weight.device.type == "cpu"
    assert swapped.attn1.to_q.lora_A["default"].weight.device.type == "meta"  # adapters travel with the model
    assert transformer.blocks[0].attn1.to_q.base_layer.weight.device.type == "meta"
    assert len(swapper.slots[BLOCKS - 1]) > 10


def test_activation_offloading_is_bit_equal_to_plain_checkpointing():
    from modules.module.activation_offload import TRAFFIC, offload_copies_per_step

    reference = step(lora_transformer(), checkpointing=True)
    transformer = lora_transformer()
    transformer.enable_gradient_checkpointing()
    offload_activations(transformer)
    TRAFFIC.reset()
    output, loss, grads = step(transformer, checkpointing=True)
    assert transformer._gradient_checkpointing_func is offloaded_checkpoint
    # Every block input parked and brought back (tests/test_activation_offload_traffic.py checks the bytes).
    assert TRAFFIC.copies == offload_copies_per_step(BLOCKS)
    assert bit_equal(output, reference[0]) and bit_equal(loss, reference[1])
    assert all(bit_equal(grads[name], reference[2][name]) for name in grads)


def test_swapping_and_activation_offloading_together_stay_bit_equal():
    reference = step(lora_transformer(), checkpointing=True)
    transformer = lora_transformer()
    transformer.enable_gradient_checkpointing()
    offload_activations(transformer)
    BlockSwapper(transformer.blocks, range(1, BLOCKS))
    output, loss, grads = step(transformer, checkpointing=True)
    assert bit_equal(output, reference[0]) and bit_equal(loss, reference[1])
    assert all(bit_equal(grads[name], reference[2][name]) for name in grads)


# ---- through the WAN plugin ---------------------------------------------------------------------------------


def expert_step_gradients(trainer, expert: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model, setup = trainer.model, trainer.setup
    batch = next(iter(trainer.data.batches(0)))
    generator = torch.Generator().manual_seed(11)
    prediction = setup.predict(model, batch, trainer.config, trainer.progress, generator, expert=expert)
    loss = setup.calculate_loss(model, batch, prediction, trainer.config)
    loss.backward()
    transformer = getattr(model, expert)
    grads = {n: p.grad.clone() for n, p in transformer.named_parameters() if p.requires_grad and p.grad is not None}
    transformer.zero_grad(set_to_none=True)
    return loss.detach(), grads


@pytest.mark.parametrize("checkpointing", ["false", "true"])
def test_both_experts_train_bit_equal_through_the_trainer(
    tiny_model_dir, demo_data_dir, tmp_path_factory, checkpointing
):
    cache = tmp_path_factory.mktemp("swap_cache")
    runs = {}
    for swap in (0, 1):
        trainer = make_trainer(
            tiny_model_dir("T2V-A14B"),
            demo_data_dir,
            cache,
            tmp_path_factory.mktemp(f"swap{swap}"),
            f"memory.blocks_to_swap={swap}",
            f"training.gradient_checkpointing={checkpointing}",
        )
        runs[swap] = {name: expert_step_gradients(trainer, name) for name in (experts.HIGH, experts.LOW)}
        swappers = [e.__dict__.get("block_swapper") for e in trainer.model.experts()]
        assert all(s is not None for s in swappers) if swap else not any(swappers)
    for name in (experts.HIGH, experts.LOW):
        (loss, grads), (swapped_loss, swapped_grads) = runs[0][name], runs[1][name]
        assert bit_equal(loss, swapped_loss)
        assert grads and grads.keys() == swapped_grads.keys()
        assert all(bit_equal(grads[k], swapped_grads[k]) for k in grads), name


def test_sampling_with_swapping_equals_sampling_without(tiny_model_dir):
    folder = tiny_model_dir("T2V-A14B")
    config = SampleConfig(prompt="a red circle moves", width=32, height=32, frames=5, steps=3)
    plain = load_wan_model(folder, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32)
    reference = generate_clip(plain, resolve_settings(plain, config), device=torch.device("cpu"), offload_experts=True)
    model = load_wan_model(folder, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32)
    swappers = install_block_swap(model, 1, sampling_only=True)
    copied = Counter()
    for swapper in swappers:
        swapper.observer = lambda kind, index, phase, resident, s=swapper: copied.update([(id(s), kind)])
    frames = generate_clip(model, resolve_settings(model, config), device=torch.device("cpu"), offload_experts=True)
    assert (frames == reference).all()
    assert len(swappers) == 2 and all(copied[(id(s), "copy")] > 0 for s in swappers)  # both experts swapped
    assert all(copied[(id(s), "copy")] == copied[(id(s), "release")] for s in swappers)


# ---- refused combinations -----------------------------------------------------------------------------------


def demo_config(**sections) -> dict:
    from modules.config.loading import load_config
    from tests.test_both_experts import PRESET

    data = to_dict(load_config(PRESET))
    for section, values in sections.items():
        data[section] = {**data[section], **values} if isinstance(values, dict) else values
    return data


def test_config_refuses_combinations_that_cannot_work():
    with pytest.raises(ConfigError, match="memory.offload_activations.*gradient_checkpointing"):
        config_from_dict(demo_config(memory={"offload_activations": True}, training={"gradient_checkpointing": False}))
    with pytest.raises(ConfigError, match="memory.blocks_to_swap.*int8"):
        config_from_dict(demo_config(memory={"blocks_to_swap": 2}, model={"transformer_dtype": "int8"}))
    with pytest.raises(ConfigError, match="memory.blocks_to_swap.*training.compile 'blocks'"):
        config_from_dict(demo_config(memory={"blocks_to_swap": 2}, training={"compile": "blocks"}))
    with pytest.raises(ConfigError, match="nf4.*training_method 'full'"):
        config_from_dict(demo_config(training_method="full", model={"transformer_dtype": "nf4"}))
    config = config_from_dict(
        demo_config(
            memory={"blocks_to_swap": 3, "offload_activations": True}, training={"gradient_checkpointing": True}
        )
    )
    assert config.memory.blocks_to_swap == 3 and config.memory.offload_activations


def test_swapping_a_fully_trained_block_or_more_blocks_than_exist_is_refused(tiny_model_dir):
    model = load_wan_model(tiny_model_dir("TI2V-5B"), transformer_dtype=torch.float32)
    with pytest.raises(ConfigError, match="memory.blocks_to_swap: 3, but the transformer has 2 blocks"):
        install_block_swap(model, 3)
    model.transformer.requires_grad_(False)
    model.transformer.blocks[1].ffn.requires_grad_(True)  # finetune.block_filter '1' trains block 1
    with pytest.raises(ConfigError, match=r"blocks \[1\] train their own weights.*at most 0"):
        install_block_swap(model, 1)
    model.transformer.blocks[1].ffn.requires_grad_(False)
    model.transformer.blocks[0].ffn.requires_grad_(True)  # block 0 trains: swapping block 1 is fine
    (swapper,) = install_block_swap(model, 1)
    assert swapper.swapped == [1] and install_block_swap(model, 1) == [swapper]  # installed once


def test_sample_script_with_swapping_and_the_text_phase_on_cpu_equals_plain_sampling(tiny_model_dir, tmp_path):
    import numpy as np

    from modules.wan.sampling.sampler import SamplerOptions, WanModelSampler
    from tests.test_sample_script import png_frames, run_script

    folder = tiny_model_dir("TI2V-5B")
    done = run_script(
        *("--model", str(folder), "--prompt", "a red circle moves", "--width", "32", "--height", "32"),
        *("--frames", "5", "--steps", "2", "--seed", "4", "--dtype", "float32", "--device", "cpu"),
        *("--text-max-length", "64", "--format", "png", "--out", str(tmp_path / "out")),
        *("--blocks-to-swap", "2", "--text-encoder-on-cpu"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    model = load_wan_model(
        folder, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32, text_max_length=64
    )
    config = SampleConfig(prompt="a red circle moves", width=32, height=32, frames=5, steps=2, seed=4)
    plain = WanModelSampler(SamplerOptions(format="png")).sample(model, config, tmp_path / "plain")
    assert np.array_equal(png_frames(plain), png_frames(tmp_path / "out" / "sample-000-seed4"))
