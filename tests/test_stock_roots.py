"""Stock roots (a new machine's) beside the smoke roots: what mmdebstrap and the build steps get."""

from __future__ import annotations

from pathlib import Path

from qss_toolkit.smoke import rootfs
from qss_toolkit.smoke.targets import LOCAL_TARGETS, STOCK_TARGETS, debian_root


def test_a_stock_root_is_minbase_with_python3_and_git_and_no_build_steps() -> None:
    for target in STOCK_TARGETS.values():
        argv = rootfs.mmdebstrap_command(debian_root(target), Path("/dest"))
        assert "--variant=minbase" in argv
        assert [a for a in argv if a.startswith("--include=")] == ["--include=git,python3"]
        assert rootfs.build_steps(debian_root(target)) == ()


def test_a_smoke_root_keeps_its_packages_and_the_common_build_steps() -> None:
    for target in LOCAL_TARGETS.values():
        root = debian_root(target)
        argv = rootfs.mmdebstrap_command(root, Path("/dest"))
        assert "--variant=apt" in argv
        assert "systemd" in root.packages
        assert rootfs.build_steps(root)[: len(rootfs.COMMON_CUSTOMIZE)] == (rootfs.COMMON_CUSTOMIZE)


def test_each_stock_release_is_a_root_of_its_own() -> None:
    targets = (*LOCAL_TARGETS.values(), *STOCK_TARGETS.values())
    assert len({rootfs.cache_key(t) for t in targets}) == len(targets)
    assert {debian_root(t).suite for t in STOCK_TARGETS.values()} == {
        debian_root(t).suite for t in LOCAL_TARGETS.values()
    }
