"""Packaging: the wheel and the sdist carry the licence and the metadata a user checks, and
the sdist's own tests run from the unpacked sdist (conftest, _golden.py and fixtures included).

The distributions are built once per run with ``python -m build --no-isolation`` (the
``test`` extra installs ``build`` and a setuptools that knows SPDX licence strings).
Under ``LSNWAL_STRESS=1`` the whole test suite of the sdist runs; normally a sample does.
"""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import stress_enabled

ROOT = Path(__file__).resolve().parent.parent
#: a sample of the suite that needs conftest.py, _golden.py, fixtures/ and docs/
SDIST_SAMPLE = ["tests/test_golden.py", "tests/test_config.py", "tests/test_docs_examples.py"]
REQUIRED_CLASSIFIERS = {
    "Operating System :: POSIX :: Linux", "Operating System :: MacOS", "Typing :: Typed",
    "Topic :: Database", "Programming Language :: Python :: 3.10",
    "Programming Language :: Python :: 3.13",
}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) built from this checkout into a temporary directory."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def _tracked(*dirs: str) -> list[str]:
    """Files git tracks under ``dirs`` (what a clone has)."""
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", *dirs], check=True,
                         capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line]


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(z.read(name).decode())


def test_license_in_repository_wheel_and_sdist(dist: tuple[Path, Path]) -> None:
    """LICENSE (MIT) is in the repository, the wheel's dist-info and the sdist's root."""
    sdist, wheel = dist
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    with zipfile.ZipFile(wheel) as z:
        lic = [n for n in z.namelist() if n.endswith("/licenses/LICENSE")]
        assert len(lic) == 1 and z.read(lic[0]).decode() == text
        assert "lsnwal/py.typed" in z.namelist()
    with tarfile.open(sdist) as t:
        member = t.extractfile(f"{sdist.name[:-len('.tar.gz')]}/LICENSE")
        assert member is not None and member.read().decode() == text


def test_metadata_a_user_checks(dist: tuple[Path, Path]) -> None:
    """SPDX licence expression, classifiers, URLs, and a description that says what lsnwal is."""
    meta = _metadata(dist[1])
    assert meta["License-Expression"] == "MIT"
    classifiers = set(meta.get_all("Classifier") or [])
    assert classifiers >= REQUIRED_CLASSIFIERS
    assert not any(c.startswith("License ::") for c in classifiers)  # SPDX replaces them
    urls = {u.split(",")[0] for u in meta.get_all("Project-URL") or []}
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= urls
    assert meta["Summary"].startswith("A write-ahead log for Python")
    body = meta.get_payload()
    assert isinstance(body, str)
    first_paragraph = body.strip().split("\n\n")[1]
    assert first_paragraph.startswith("A write-ahead log"), first_paragraph
    assert "make run" not in body.split("##")[0]
    assert set(meta.get_all("Provides-Extra") or []) >= {"metrics", "cli", "docs", "test"}


def test_sdist_holds_everything_the_tests_need(dist: tuple[Path, Path]) -> None:
    """Every tracked file of tests/, stress/ and docs/ is in the sdist, nothing stale."""
    sdist, _ = dist
    prefix = sdist.name[: -len(".tar.gz")] + "/"
    with tarfile.open(sdist) as t:
        names = {m.name[len(prefix):] for m in t.getmembers() if m.isfile()}
    wanted = set(_tracked("tests", "stress", "docs"))
    assert wanted, "git ls-files found nothing"
    assert wanted <= names, sorted(wanted - names)[:10]
    assert {"tests/conftest.py", "tests/_golden.py", "LICENSE", "README.md", "CHANGELOG.md",
            "pyproject.toml"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_sdist_tests_run_from_the_unpacked_sdist(
    dist: tuple[Path, Path], tmp_path: Path
) -> None:
    """The unpacked sdist's tests pass against the sdist's own package (a sample; all under
    LSNWAL_STRESS=1)."""
    sdist, _ = dist
    with tarfile.open(sdist) as t:
        t.extractall(tmp_path, filter="data")
    root = tmp_path / sdist.name[: -len(".tar.gz")]
    where = subprocess.run([sys.executable, "-c", "import lsnwal; print(lsnwal.__file__)"],
                           cwd=root, check=True, capture_output=True, text=True).stdout
    assert Path(where.strip()).is_relative_to(root)  # the sdist's package, not the checkout's
    targets = ["tests"] if stress_enabled() else SDIST_SAMPLE
    env = {k: v for k, v in os.environ.items() if k != "LSNWAL_STRESS"}  # make test's sizes
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           *targets], cwd=root, capture_output=True, text=True, timeout=1800,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " skipped" not in proc.stdout


def test_wheel_holds_the_package_cli_and_typing_marker(
    dist: tuple[Path, Path], tmp_path: Path
) -> None:
    """The unpacked wheel imports, declares the ``lsnwal`` script and ships ``py.typed``."""
    _, wheel = dist
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
        entry = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
        assert "lsnwal = lsnwal.cli:main" in z.read(entry).decode()
    assert (target / "lsnwal" / "py.typed").exists()
    assert (target / "lsnwal" / "cli" / "top.py").exists()
    proc = subprocess.run([sys.executable, "-c", "import lsnwal.cli, sys; "
                           "print(lsnwal.__file__); sys.exit(lsnwal.cli.main(['--version']))"],
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    where, version = proc.stdout.split()[0], proc.stdout.split()[-1]
    assert Path(where).is_relative_to(target) and version == "0.1.0"
