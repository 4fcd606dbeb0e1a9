"""Regenerate docs/configuration.md from the config declarations."""

import sys

import _repo_path  # noqa: F401

from modules.config.docs import render_configuration_doc
from modules.util.errors import run_script


def main() -> None:
    (_repo_path.REPO_ROOT / "docs" / "configuration.md").write_text(render_configuration_doc(), encoding="utf-8")
    print("docs/configuration.md written")


if __name__ == "__main__":
    sys.exit(run_script(main))
