""".packit.yaml: COPR builds of the committed spec per pull request. Packit itself runs only on
the forge; here its configuration is checked against the spec, and its two actions run as
Packit runs them (in a clone), so that a pull request's build cannot fail on them."""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from qss_toolkit import payload, version
from qss_toolkit.build import sources

PROJECT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((PROJECT / ".packit.yaml").read_text(encoding="utf-8"))
SPEC = sources.spec_path(PROJECT)


def _expand(text: str) -> str:
    name = payload.main_package().name
    return text.replace("%{name}", name).replace("%{version}", version.read_version())


def test_it_names_the_committed_spec_and_the_package() -> None:
    assert PROJECT / CONFIG["specfile_path"] == SPEC
    name = payload.main_package().name
    assert CONFIG["upstream_package_name"] == CONFIG["downstream_package_name"] == name
    assert CONFIG["upstream_tag_template"] == "v{version}"  # the releases' tags, Source0's URL
    jobs = {(j["job"], j["trigger"]): j for j in CONFIG["jobs"]}
    assert set(jobs) == {("copr_build", "pull_request"), ("copr_build", "commit")}
    for job in jobs.values():
        assert "fedora-all" in job["targets"]
    assert set(CONFIG) <= {"specfile_path", "upstream_package_name", "downstream_package_name",
                           "upstream_project_url", "upstream_tag_template", "srpm_build_deps",
                           "actions", "jobs"}  # fmt: skip
    assert set(CONFIG["actions"]) == {"get-current-version", "create-archive"}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("git", "xz", "bash"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    where = tmp_path_factory.mktemp("packit") / "clone"
    subprocess.run(["git", "clone", "-q", str(PROJECT), str(where)], check=True)
    return where


def _action(name: str, cwd: Path) -> str:
    [command] = CONFIG["actions"][name]
    return subprocess.run(
        ["sh", "-c", command], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_get_current_version_prints___version__(clone: Path) -> None:
    assert _action("get-current-version", clone) == version.read_version()


def test_create_archive_makes_source0_with_the_top_directory_of_autosetup(clone: Path) -> None:
    spec = SPEC.read_text(encoding="utf-8")
    source0 = _expand(re.search(r"^Source0: +(\S+)$", spec, re.M).group(1))  # type: ignore[union-attr]
    top = _expand(re.search(r"^%autosetup -n (\S+)$", spec, re.M).group(1))  # type: ignore[union-attr]
    archive = clone / _action("create-archive", clone)
    assert archive.is_file() and archive.name == source0.rsplit("/", 1)[1]
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert all(n == top or n.startswith(f"{top}/") for n in names)
    assert f"{top}/{CONFIG['specfile_path']}" in names  # rpmbuild -ta finds it too
