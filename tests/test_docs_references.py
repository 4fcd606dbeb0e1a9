"""Docs and docstrings name files that exist: every `modules/...`, `scripts/...` or `tests/...` path in docs/ and
README.md, and every `name.py` a module docstring of modules/ mentions. A moved or renamed file shows here with
the page or module that still names it. Package `__init__.py` files hold docstrings, no `__all__` lists (which
went stale as modules were added).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Files of other projects that docstrings name on purpose (ComfyUI's comfy/weight_adapter/loha.py and lokr.py).
EXTERNAL = {"loha.py", "lokr.py"}


def our_file_names() -> set[str]:
    return {p.name for folder in ("modules", "scripts", "tests") for p in (ROOT / folder).rglob("*") if p.is_file()}


def stale_docstring_names(sources: dict[str, str], known: set[str]) -> list[str]:
    found = []
    for where, source in sources.items():
        doc = "\n".join(
            ast.get_docstring(node) or ""
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        )
        found += [f"{where}: {name}" for name in re.findall(r"\b(\w+\.py)\b", doc) if name not in known | EXTERNAL]
    return found


def stale_paths(text: str) -> list[str]:
    return [
        p for p in re.findall(r"\b((?:modules|scripts|tests)/[\w/]+\.(?:py|sh|md))", text) if not (ROOT / p).exists()
    ]


def test_docstrings_of_modules_name_existing_files():
    sources = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in (ROOT / "modules").rglob("*.py")}
    known = our_file_names()
    assert stale_docstring_names(sources, known) == []
    assert stale_docstring_names({"x.py": '"""See embedding_text.py."""'}, known) == ["x.py: embedding_text.py"]


def test_docs_name_existing_paths():
    pages = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
    stale = {str(page.relative_to(ROOT)): stale_paths(page.read_text(encoding="utf-8")) for page in pages}
    assert {page: paths for page, paths in stale.items() if paths} == {}
    assert stale_paths("see `modules/util/diagnostics.py`") == ["modules/util/diagnostics.py"]


def test_packages_have_no_all_lists():
    with_all = [str(p.relative_to(ROOT)) for p in (ROOT / "modules").rglob("__init__.py") if "__all__" in p.read_text()]
    assert with_all == []
