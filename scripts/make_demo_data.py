"""Write the synthetic demo video set (moving shapes, captions) into a folder.

python scripts/make_demo_data.py --out workspace/demo/data
"""

import argparse
import sys

import _repo_path  # noqa: F401

from modules.data.sources.demo_data import make_demo_data
from modules.util.errors import run_script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write the clips, images and captions into")
    args = parser.parse_args()
    paths = make_demo_data(args.out)
    print(f"wrote {len(paths)} demo files to {args.out}")


if __name__ == "__main__":
    sys.exit(run_script(main))
