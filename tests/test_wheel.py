"""`python -m build`: the wheel is the helper alone (stdlib only), so it declares no dependency;
the toolkit, which reads this repository's packaging/ tree, is not in it."""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from qss_toolkit import PROJECT_ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build")
    pytest.importorskip("setuptools")
    # A copy: building in the tree would leave src/*.egg-info behind.
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT_ROOT / name, tree / name)
    shutil.copytree(
        PROJECT_ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tree / "out"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            "--wheel",
            "--outdir",
            str(out),
            str(tree),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_holds_the_helper_and_nothing_else(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    helper = sorted(p.name for p in (PROJECT_ROOT / "src/qmail_send_systemd").glob("*.py"))
    assert (
        sorted(n.split("/", 1)[1] for n in names if n.startswith("qmail_send_systemd/")) == helper
    )
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"qmail_send_systemd"}


def test_the_wheel_declares_no_dependency_and_the_helpers_entry_point(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        info = next(
            n.split("/")[0] for n in archive.namelist() if n.endswith(".dist-info/METADATA")
        )
        metadata = email.parser.Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert metadata["Name"] == "qmail-send-systemd"
    assert metadata.get_all("Requires-Dist") is None  # the helper is stdlib only
    assert metadata["Requires-Python"] == ">=3.9"
    assert "qmail-send-systemd = qmail_send_systemd.cli:main" in entry_points
