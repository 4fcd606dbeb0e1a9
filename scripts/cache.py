"""Build the latent and caption cache of a training config without loading the transformer.

python scripts/cache.py --config-path my.json
python scripts/cache.py --config-path my.json --config-value data.resolution=480

Caching is its own phase: this reads only the VAE and UMT5 (never an expert), encodes every training window,
caption and sample prompt not yet cached, and exits. `scripts/train.py` with the same config then finds a
complete cache and reads neither encoder's file (docs/data_pipeline.md). A training run goes through this same
phase before it loads the transformer; run it alone to cache ahead of training, and with embeddings, whose runs
keep UMT5 and otherwise cache beside the experts (scripts/train.py --plan shows the host memory plan).

Exit codes: 0 done; 2 a config, model or data problem (the message says which); 4 out of GPU memory while
VAE-encoding a clip (the clip is named; entries cached so far are kept).
"""

import argparse
import logging
import sys

import _repo_path  # noqa: F401


def main() -> int:
    from modules.config.loading import load_config
    from modules.trainer.generic_trainer import GenericTrainer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-path", required=True, help="JSON training config (see training_presets/)")
    parser.add_argument(
        "--config-value",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. data.resolution=480 (repeatable; VALUE is JSON or a string)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.config_path, args.config_value)
    data = GenericTrainer(config).build_cache()  # a UserError: one line and its exit code (run_script)
    print(
        f"\nCache ready: {len(data.samples)} training windows in {data.cache.root} "
        f"({data.stats.videos_encoded} latents, {data.stats.texts_encoded} captions and "
        f"{data.stats.prompts_encoded} sample prompts encoded now, "
        "the rest reused). scripts/train.py with this config reads no encoder file."
    )
    return 0


if __name__ == "__main__":
    from modules.util.errors import run_script

    sys.exit(run_script(main))
