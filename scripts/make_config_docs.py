"""Regenerate docs/configuration.md from the config declarations."""

import _repo_path  # noqa: F401

from modules.config.docs import render_configuration_doc

(_repo_path.REPO_ROOT / "docs" / "configuration.md").write_text(render_configuration_doc(), encoding="utf-8")
print("docs/configuration.md written")
