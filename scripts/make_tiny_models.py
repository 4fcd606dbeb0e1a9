"""Write tiny, random WAN 2.2 models (all three variants) in the diffusers folder layout.

python scripts/make_tiny_models.py --out models/tiny [--variant TI2V-5B] [--seed 0]
"""

import argparse
import sys

import _repo_path  # noqa: F401

from modules.util.errors import run_script
from modules.wan.tiny_models import write_tiny_model
from modules.wan.variants import VARIANTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder that receives one subfolder per variant")
    parser.add_argument("--variant", choices=sorted(VARIANTS), action="append", help="default: all three")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in args.variant or sorted(VARIANTS):
        path = write_tiny_model(name, f"{args.out}/{name}", args.seed)
        print(f"{name}: {path}")


if __name__ == "__main__":
    sys.exit(run_script(main))
