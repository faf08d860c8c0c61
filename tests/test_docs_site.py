"""The documentation: the quickstart's and README's code runs and passes ``mypy --strict``,
``help(WalConfig)`` documents every field, user docs never point at files users cannot
see, and the site builds strictly with nothing loaded from the network.
"""

from __future__ import annotations

import ast
import dataclasses
import pydoc
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lsnwal

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: words a user doc must not contain: pointers to files users do not have
FORBIDDEN = re.compile(r"DESIGN\.md|\.\./shared|\bthe contract\b|\bDESIGN contract\b|"
                       r"\bissue (?:#)?\d+", re.IGNORECASE)
#: the benchmarks page is rewritten by the benchmark harness work; it is checked there
NOT_MINE = {"benchmarks.md"}


def _python_blocks(path: Path) -> str:
    return "\n".join(re.findall(r"```python\n(.*?)```", path.read_text(), re.S))


@pytest.mark.parametrize("page", ["docs/quickstart.md", "README.md"])
def test_page_code_runs_in_an_empty_directory(page: str, tmp_path: Path) -> None:
    """Every Python block of the page, run in order in one session, succeeds."""
    code = _python_blocks(ROOT / page)
    assert "lsnwal" in code
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_page_code_passes_mypy_strict(tmp_path: Path) -> None:
    """The quickstart's and the README's code, each as one module, pass ``mypy --strict``."""
    files = []
    for page in ("docs/quickstart.md", "README.md"):
        src = tmp_path / f"{Path(page).stem.lower()}_example.py"
        src.write_text(_python_blocks(ROOT / page))
        files.append(str(src))
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                           "--python-version", "3.10", *files],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Success: no issues found in 2 source files" in proc.stdout


def test_help_walconfig_documents_every_field() -> None:
    """``help(WalConfig)`` has an entry, with text, for every field."""
    text = pydoc.render_doc(lsnwal.WalConfig, renderer=pydoc.plaintext)
    doc = lsnwal.WalConfig.__doc__ or ""
    for f in dataclasses.fields(lsnwal.WalConfig):
        m = re.search(rf"^ {{8}}{f.name}: (\S.*)$", doc, re.M)
        assert m is not None, f"{f.name} is not in WalConfig's Attributes section"
        assert f.name in text


def _docstrings() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "lsnwal").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    out.append((f"{path.relative_to(ROOT)}:{getattr(node, 'name', '')}", doc))
    return out


def test_user_docs_point_only_at_what_users_have() -> None:
    """README, docs pages and docstrings never cite DESIGN.md, ../shared, the contract or issues."""
    pages = [ROOT / "README.md", *(p for p in DOCS.glob("*.md") if p.name not in NOT_MINE)]
    found = [f"{p.name}: {m.group(0)}" for p in pages for m in FORBIDDEN.finditer(p.read_text())]
    found += [f"{where}: {m.group(0)}" for where, doc in _docstrings()
              for m in FORBIDDEN.finditer(doc)]
    config_comments = (ROOT / "lsnwal" / "config.py").read_text()  # shown as field docs
    found += [f"config.py: {m.group(0)}" for m in FORBIDDEN.finditer(config_comments)]
    assert found == []


def test_every_page_is_in_the_nav() -> None:
    """mkdocs.yml's nav lists every docs page, and the theme loads no web fonts."""
    text = (ROOT / "mkdocs.yml").read_text()
    for page in DOCS.glob("*.md"):
        assert f": {page.name}" in text, page.name
    assert re.search(r"^  font: false$", text, re.M)
    assert "- offline" not in text  # it loads a script from a CDN


def test_site_builds_strictly_and_needs_no_network(tmp_path: Path) -> None:
    """``mkdocs build --strict`` succeeds and no page loads a script, style or font from a URL."""
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(site)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 9
    external = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(?:https?:)?//")
    offenders = [p.name for p in pages if external.search(p.read_text())]
    assert offenders == []
    css = "".join(p.read_text() for p in site.rglob("*.css"))
    assert "fonts.googleapis" not in css and "@import url(http" not in css
    api = (site / "api.html").read_text()
    for name in ("open_async", "AsyncWal", "create_if_missing", "WalMetrics",
                 "FullFsyncBackend", "segment_max_bytes", "write_buffer_bytes"):
        assert name in api, name
    quick = (site / "quickstart.html").read_text()
    assert 'language-python highlight' in quick and '<span class="kn">' in quick  # Pygments
