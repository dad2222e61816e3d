"""The import layers hold and nothing imports in a circle (pyproject.toml's [tool.importlinter]),
and the check can fail: a circle, even behind TYPE_CHECKING or inside a function, is reported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qss_toolkit import PROJECT_ROOT
from qss_toolkit.build import lint
from qss_toolkit.errors import CheckFailed

PYPROJECT = PROJECT_ROOT / "pyproject.toml"


def test_the_toolkit_and_the_helper_keep_their_layers() -> None:
    contracts = PYPROJECT.read_text(encoding="utf-8").count("[[tool.importlinter.contracts]]")
    assert contracts >= 3
    assert lint.import_contracts() == f"Contracts: {contracts} kept, 0 broken."


def _package(top: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (top / name).parent.mkdir(parents=True, exist_ok=True)
        (top / name).write_text(text, encoding="utf-8")
    config = top / "pyproject.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["circ"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "no circle"\ntype = "acyclic_siblings"\n'
        'ancestors = ["circ"]\n',
        encoding="utf-8",
    )
    return config


@pytest.mark.parametrize("hidden", ["TYPE_CHECKING", "function"])
def test_a_hidden_circle_in_a_tiny_package_is_reported(tmp_path: Path, hidden: str) -> None:
    a = "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from circ import b\n"
    if hidden == "function":
        a = "def f() -> None:\n    from circ import b\n"
    files = {"circ/__init__.py": "", "circ/a.py": a, "circ/b.py": ""}
    config = _package(tmp_path, files)
    assert lint.import_contracts(config, [tmp_path]) == "Contracts: 1 kept, 0 broken."
    (tmp_path / "circ/b.py").write_text("from circ import a\n", encoding="utf-8")
    with pytest.raises(CheckFailed, match=r"no circle\n(.|\n)*circ") as failed:
        lint.import_contracts(config, [tmp_path])
    assert "leaf module" in str(failed.value.hint)


def test_a_circle_behind_type_checking_in_the_toolkit_breaks_its_contracts(tmp_path: Path) -> None:
    # families -> the container protocol was the circle families -> smoke -> ... -> families.
    src = tmp_path / "src"
    shutil.copytree(PROJECT_ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    families = src / "qss_toolkit/families.py"
    text = families.read_text(encoding="utf-8").replace(
        "from qss_toolkit.run import run\n",
        "from qss_toolkit.run import run\n\nif TYPE_CHECKING:\n"
        "    from qss_toolkit.smoke.engines.base import Container\n",
    )
    families.write_text(text.replace("from typing import ", "from typing import TYPE_CHECKING, "))
    with pytest.raises(CheckFailed) as failed:
        lint.import_contracts(PYPROJECT, [src])
    message = str(failed.value)
    assert "No import circle" in message
    assert "qss_toolkit.families -> qss_toolkit.smoke.engines.base" in message
