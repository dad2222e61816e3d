"""A configuration file is one YAML entry (`type: config|noreplace` or `type: config`): a
package that ships a file under /etc is still one more YAML file. Both routes make it a
conffile (.deb) and %config(noreplace) (RPM), and the parity views compare both."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from added_package import EXTRA, make_tree
from qss_toolkit import payload, version
from qss_toolkit.build import control, packages, parity, sources
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.families import Family

CONF = f"/etc/{EXTRA}/extra.conf"
ENTRY = f"""contents:
  - src: packaging/extra/extra.conf
    dst: {CONF}
    type: config|noreplace
    file_info: {{mode: 0644}}
"""
TOOLS = ("nfpm", "dpkg-buildpackage", "dh", "fakeroot", "rpmbuild", "rpm", "rpm2archive", "git")


def _with_conffile(tree: Path, kind: str = "config|noreplace") -> Path:
    config = tree / "packaging/nfpm" / f"{EXTRA}.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("contents:\n", ENTRY.replace("config|noreplace", kind), 1))
    (tree / "packaging/extra/extra.conf").write_text("# the administrator's settings\n")
    sources.write_derived(tree)
    subprocess.run(["git", "-c", "safe.directory=*", "-C", str(tree), "add", "-A"], check=True)
    return tree


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    for tool in TOOLS:
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (see apt-packages.txt)")
    tree = _with_conffile(make_tree(tmp_path_factory.mktemp("tree")))
    out = {}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SOURCE_DATE_EPOCH", str(control.source_date_epoch()))
        for builder in ("nfpm", "native"):
            out[builder] = tmp_path_factory.mktemp(builder)
            packages.build(builder, payload.FORMATS, out[builder], root=tree)
    return out


def test_the_deb_lists_it_in_conffiles_on_both_routes(dists: dict[str, Path]) -> None:
    name = Family.DEB.manager.file_name(EXTRA, version.read_version())
    nfpm, native = (parity.deb_view(dists[b] / name) for b in ("nfpm", "native"))
    assert parity.differences(nfpm, native, ("nfpm", "native")) == []
    assert nfpm.scripts["conffiles"].split() == [CONF]


def test_the_rpm_marks_it_config_noreplace_on_both_routes(dists: dict[str, Path]) -> None:
    name = Family.RPM.manager.file_name(EXTRA, version.read_version())
    nfpm = parity.rpm_view(dists["nfpm"] / name)
    native = parity.split_rpm_macro_prefix(parity.rpm_view(dists["native"] / name), nfpm)
    assert parity.differences(nfpm, native, ("nfpm", "native")) == []
    assert nfpm.files[CONF][4] == "cn"  # FILEFLAGS: config, noreplace


def test_lintian_sees_a_conffile(dists: dict[str, Path]) -> None:
    if not shutil.which("lintian"):
        pytest.skip("lintian is not installed")
    deb = dists["native"] / Family.DEB.manager.file_name(EXTRA, version.read_version())
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    out = subprocess.run(["lintian", "-EvIL", "+pedantic", str(deb)], capture_output=True,
                         text=True, env=env, check=False).stdout  # fmt: skip
    assert "conffile" not in out, out


def test_plain_config_is_config_without_noreplace(tmp_path: Path) -> None:
    tree = _with_conffile(make_tree(tmp_path / "tree"), "config")
    [extra] = [p for p in payload.load_packages(tree) if p.name == EXTRA]
    assert f"%attr(0644,root,root) %config {CONF}" in payload.rpm_file_list(extra).splitlines()


def test_a_file_under_etc_needs_the_type_and_the_type_needs_etc(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    config = tree / "packaging/nfpm" / f"{EXTRA}.yaml"
    original = config.read_text(encoding="utf-8")
    (tree / "packaging/extra/extra.conf").write_text("x\n")
    config.write_text(
        original.replace("contents:\n", ENTRY.replace("    type: config|noreplace\n", ""), 1)
    )
    with pytest.raises(ConfigurationError, match=r"under /etc/ is configuration: give it `type"):
        payload.load_packages(tree)
    elsewhere = ENTRY.replace(f"dst: {CONF}", f"dst: /usr/share/{EXTRA}/extra.conf")
    config.write_text(original.replace("contents:\n", elsewhere, 1))
    with pytest.raises(
        ConfigurationError, match=r"type config\|noreplace is for files under /etc/"
    ):
        payload.load_packages(tree)
