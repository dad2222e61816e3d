"""Adding a package is adding its YAML file (docs/contributing.md): one more package, in a copy
of the tree, is built by both routes alike, linted, and installed and purged by the smoke
harness."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from debian import debfile

from added_package import EXTRA, EXTRA_FILE, make_tree
from fakes import RecordingContainer
from qss_toolkit import payload, version
from qss_toolkit.build import control, lint, packages, sources
from qss_toolkit.families import Family
from qss_toolkit.smoke.scenarios.registry import MAIN, ScenarioContext
from qss_toolkit.smoke.targets import TARGETS

BUILD_TOOLS = ("nfpm", "dpkg-buildpackage", "dh", "fakeroot", "rpmbuild", "rpm", "dpkg-deb")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="module")
def dists(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    for tool in BUILD_TOOLS:
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (see apt-packages.txt)")
    out = {}
    with pytest.MonkeyPatch.context() as env:
        # The copy has no git history: the build time of the tree it was copied from (an
        # older date would put the changelog's top entry before the ones below it).
        env.setenv("SOURCE_DATE_EPOCH", str(control.source_date_epoch()))
        for builder in ("nfpm", "native"):
            out[builder] = tmp_path_factory.mktemp(builder)
            packages.build(builder, payload.FORMATS, out[builder], root=tree)
    return out


def _listing(path: Path) -> list[str]:
    """Mode, owner and path of every entry (sizes and dates are each tool's own business)."""
    if path.suffix == ".deb":
        with debfile.DebFile(str(path)) as package:
            members = package.data.tgz().getmembers()
        # nfpm and dpkg-deb name members differently ("usr/", "./usr/"); dpkg-deb adds "./"
        names = {m: "/" + m.name.lstrip("./").rstrip("/") for m in members}
        return sorted(f"{m.mode:o} {m.uid}:{m.gid} {n}" for m, n in names.items() if n != "/")
    query = "[%{FILEMODES:octal} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]"
    argv = ["rpm", "-qp", "--nosignature", "--qf", query, str(path)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return sorted(line for line in out.splitlines() if line)


def test_the_yaml_alone_makes_it_one_of_ours(tree: Path) -> None:
    names = [p.name for p in payload.load_packages(tree)]
    assert names[0] == MAIN and EXTRA in names
    assert len(names) == len(payload.load_packages()) + 1
    assert payload.owner(EXTRA_FILE, tree) == EXTRA


def test_both_routes_build_it_with_the_same_files(dists: dict[str, Path]) -> None:
    ver = version.read_version()
    for family in Family:
        name = family.manager.file_name(EXTRA, ver)
        nfpm, native = dists["nfpm"] / name, dists["native"] / name
        assert _listing(nfpm) == _listing(native), name
        assert any(EXTRA_FILE in line for line in _listing(nfpm))
    count = len(payload.load_packages()) + 1
    assert (
        len(list(dists["native"].glob("*.deb"))) == len(list(dists["nfpm"].glob("*.deb"))) == count
    )


def test_lintian_and_rpmlint_pass_it(tree: Path, dists: dict[str, Path]) -> None:
    for tool in ("lintian", "rpmlint", "rpm2archive", "dpkg-source"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SOURCE_DATE_EPOCH", str(control.source_date_epoch()))
        sources.write_sources(dists["nfpm"], root=tree)  # its stanza and %package come along
    lines = lint.lint(dists["nfpm"], only=["lintian", "rpmlint"])
    count = len(payload.load_packages()) + 1
    assert lines[0].startswith(
        f"ok   lintian: lintian on {count} .deb, 1 source .changes and its .dsc: 0 errors,"
        " 0 warnings"
    )
    assert lines[1].startswith(
        f"ok   rpmlint: rpmlint on {count + 1} .rpm (source RPM included) and 1 spec: 0 errors,"
        " 0 warnings"
    )


@pytest.mark.parametrize("target", ["debian-12", "rpm-on-debian-13"])
def test_the_harness_installs_it_and_reset_purges_it(
    tree: Path, dists: dict[str, Path], target: str
) -> None:
    container = RecordingContainer()
    ctx = ScenarioContext(TARGETS[target], container, dists["nfpm"], project=tree)
    ctx.install_packages([MAIN, EXTRA])
    install = container.commands[-1]
    assert install.startswith(("DEBIAN_FRONTEND=noninteractive apt-get install", "dnf "))
    assert EXTRA in install
    ctx.reset()
    purge_loop = container.commands[-1].split("; do", 1)[0]
    assert EXTRA in purge_loop.split(" in ", 1)[1].split()
