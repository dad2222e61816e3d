"""DEP-8: debian/tests/ run by Debian's own runner, autopkgtest, on the packages built from
this tree, in a podman test bed that reverts after `breaks-testbed` (qss_toolkit.build.dep8)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qss_toolkit import payload
from qss_toolkit.build import dep8

pytestmark = [
    pytest.mark.container,
    pytest.mark.rebuild,
    pytest.mark.skipif(os.geteuid() != 0, reason="builds roots and runs podman: needs root"),
]


def test_debian_tests_pass_under_autopkgtest(project_dist_and_sources: Path) -> None:
    """Both tests run and pass; autopkgtest's summary is printed (-rA shows it in CI). The
    packages and source packages are the run's (conftest.py), which the rebuilds use too."""
    dist = project_dist_and_sources
    assert len(list(dist.glob("*.deb"))) == len(payload.load_packages())
    result = dep8.run_dep8(dist)
    print("\n".join(result.summary))
    print(f"autopkgtest exit {result.returncode} in {result.seconds:.1f}s")
    tests = {line.split()[0]: line.split()[1] for line in result.summary}
    assert tests == {"helper-judges-a-tree": "PASS", "notqmail": "PASS"}
    assert result.returncode == 0 and result.passed
