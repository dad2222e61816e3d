"""Per-step timings with the CI engines' fold markers (qss_toolkit.steps)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest

from qss_toolkit.steps import ci_engine, section_id, step


def ticks(*values: float) -> Iterator[float]:
    return iter(values)


def lines_of(environ: dict[str, str], *, fail: bool = False) -> list[str]:
    out = io.StringIO()
    clock = ticks(100.0, 112.34)
    try:
        with step("lint: lintian", stream=out, environ=environ, clock=lambda: next(clock)):
            out.write("inside\n")
            if fail:
                raise RuntimeError("lintian broke")
    except RuntimeError:
        assert fail
    return out.getvalue().removesuffix("\n").split("\n")  # not at the \r of GitLab's markers


def test_plain_output_is_one_line_after_the_step_with_its_time() -> None:
    assert lines_of({}) == ["inside", "== lint: lintian (12.3 s)"]
    assert lines_of({"CI": "true"}, fail=True) == ["inside", "== lint: lintian failed (12.3 s)"]


def test_github_actions_folds_the_step_and_shows_its_time_outside_the_fold() -> None:
    assert lines_of({"GITHUB_ACTIONS": "true"}) == [
        "::group::lint: lintian",
        "inside",
        "::endgroup::",
        "== lint: lintian (12.3 s)",
    ]


def test_gitlab_ci_folds_the_step_in_a_collapsed_section_of_a_valid_name() -> None:
    start, inside, end, timing = lines_of({"GITLAB_CI": "true"}, fail=True)
    assert re.fullmatch(
        r"\x1b\[0Ksection_start:\d+:lint_lintian\[collapsed=true\]\r\x1b\[0Klint: lintian", start
    )
    assert inside == "inside"
    assert re.fullmatch(r"\x1b\[0Ksection_end:\d+:lint_lintian\r\x1b\[0K", end)
    assert timing == "== lint: lintian failed (12.3 s)"


@pytest.mark.parametrize(
    ("environ", "engine"),
    [
        ({}, None),
        ({"GITHUB_ACTIONS": "true"}, "github"),
        ({"GITLAB_CI": "true"}, "gitlab"),
        ({"GITHUB_ACTIONS": "false", "GITLAB_CI": "true"}, "gitlab"),
        ({"GITLAB_CI": "1"}, None),  # both engines set "true"; anything else is not theirs
    ],
)
def test_the_engine_is_read_from_its_own_variable(
    environ: dict[str, str], engine: str | None
) -> None:
    assert ci_engine(environ) == engine


def test_a_section_name_keeps_only_what_gitlab_allows() -> None:
    assert section_id("smoke: 3 scenarios on 2 targets") == "smoke_3_scenarios_on_2_targets"
    assert section_id("packages (nfpm: deb, rpm)") == "packages_nfpm_deb_rpm"
    assert section_id("::") == "step"
