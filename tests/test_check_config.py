"""BaseModelSetup.check_config runs before anything loads (preflight): settings the config alone shows to be wrong
are refused in seconds with the setting named, not after loading the model and building the cache."""

from __future__ import annotations

import pytest

from modules.config.validation import ConfigError
from modules.trainer.distributed import DistributedError
from modules.trainer.generic_trainer import GenericTrainer
from modules.trainer.guards.preflight import check_before_loading
from modules.wan.training.full_setup import WanFineTuneSetup
from modules.wan.training.lora_setup import WanLoRASetup
from tests.test_ema import lora_config


def test_bad_settings_are_refused_before_the_model_loads(tiny_model_dir, tmp_path):
    config = lora_config(tiny_model_dir("TI2V-5B"), tmp_path)
    check_before_loading(config, None, WanLoRASetup)  # a good config passes

    config.lora.layer_filter = "blocks.0.,attn(["
    trainer = GenericTrainer(config)
    with pytest.raises(ConfigError, match=r"lora\.layer_filter: .*attn\(\[") as error:
        trainer.claim_workspace()  # what load_and_cache does first
    assert "Fix:" in str(error.value) and trainer.model is None
    assert not list((tmp_path / "cache").rglob("*.safetensors"))  # nothing was cached

    config.lora.layer_filter = ""
    config.memory.blocks_to_swap = 99  # the tiny transformer has far fewer blocks
    with pytest.raises(ConfigError, match=r"memory\.blocks_to_swap: 99, but the transformer has \d+ blocks"):
        check_before_loading(config, None, WanLoRASetup)

    # Full fine-tuning on several processes shards the experts: block swapping is refused before loading too.
    config.memory.blocks_to_swap, config.ema.enabled = 1, False
    with pytest.raises(DistributedError, match="memory.blocks_to_swap"):
        check_before_loading(config, None, WanFineTuneSetup, world_size=2)
    check_before_loading(config, None, WanFineTuneSetup, world_size=1)
