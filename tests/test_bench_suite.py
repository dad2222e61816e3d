"""The suite's recorded timings (qss_toolkit.timings) and the bench section that prints them."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import pytest

from qss_toolkit import timings
from qss_toolkit.bench import runner as bench
from qss_toolkit.bench import suite
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.smoke import runner as smoke
from qss_toolkit.smoke.runner import ScenarioResult, Status, TargetRun
from qss_toolkit.smoke.targets import TARGETS, Target


def test_each_record_keeps_the_latest_run_of_its_name(tmp_path: Path) -> None:
    path = tmp_path / "dist" / "timings.json"
    timings.record("lane main", "tests", 80.0, ok=True, path=path)
    timings.record("lane main", "lint", 200.04, ok=False, path=path)
    timings.record("lane beside", "stock", 300.0, ok=True, path=path)
    timings.record("lane main", "tests", 61.25, ok=True, path=path)  # replaces the first
    recorded = timings.load(path)
    assert list(recorded) == ["lane main", "lane beside"]
    assert list(recorded["lane main"]) == ["tests", "lint"]
    assert recorded["lane main"]["tests"].seconds == 61.25
    assert not recorded["lane main"]["lint"].ok


def test_the_suite_section_prints_each_lane_with_its_total_and_each_smoke_target(
    tmp_path: Path,
) -> None:
    path = tmp_path / "timings.json"
    timings.record("smoke nspawn", "debian-12", 95.0, ok=True, path=path)
    timings.record("lane main", "tests", 61.0, ok=True, path=path)
    timings.record("lane main", "lint", 200.04, ok=False, path=path)
    timings.record("lane beside", "stock", 300.0, ok=True, path=path)
    text = suite.render(timings.load(path))
    lines = text.splitlines()
    # The lanes first (beside, main), then the smoke targets.
    assert lines[0] == "| session | lane beside: last run | ended |"
    assert "| stock | 300.0 s |" in text
    assert "| tests | 61.0 s |" in text
    assert "| lint | 200.0 s (failed) |" in text
    assert "| (lane main: the sessions above, total) | 261.0 s |  |" in lines
    assert "| target | smoke nspawn: last run | ended |" in lines
    assert "| debian-12 | 95.0 s |" in text
    assert text.index("lane main") < text.index("smoke nspawn")


def test_no_timings_say_how_to_get_them(tmp_path: Path) -> None:
    assert timings.load(tmp_path / "missing.json") == {}
    (tmp_path / "other.json").write_text(json.dumps({"lane main": {"tests": {"s": 1}}}))
    assert timings.load(tmp_path / "other.json") == {}  # not ours: no record, not a crash
    assert "run the suite first" in suite.render({})


def test_a_record_that_cannot_be_written_is_warned_about_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "dist").write_text("a file where the directory would be")
    with caplog.at_level(logging.WARNING, logger="qss_toolkit"):
        timings.record("lane main", "tests", 1.0, ok=True, path=tmp_path / "dist" / "t.json")
    assert "not recorded in" in caplog.text and "lane main tests took 1.0 s" in caplog.text


def test_the_smoke_runner_records_each_target_it_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timings, "TIMINGS", tmp_path / "timings.json")
    d12, d13, fedora = TARGETS["debian-12"], TARGETS["debian-13"], TARGETS["fedora-44"]
    runs = [
        TargetRun(d12, [ScenarioResult("debian-12", "a", Status.PASS, 2.0)], seconds=30.0),
        TargetRun(d13, [ScenarioResult("debian-13", "a", Status.FAIL, 3.0)], seconds=40.0),
        TargetRun(fedora, seconds=0.1, skipped="no registry here"),
    ]
    smoke.record_timings(runs, "nspawn", 75)
    recorded = timings.load()["smoke nspawn, 75 scenarios"]
    assert {name: (t.seconds, t.ok) for name, t in recorded.items()} == {
        "debian-12": (30.0, True),
        "debian-13": (40.0, False),
    }


def test_the_suite_section_needs_no_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(bench, "DIST", tmp_path)
    monkeypatch.setattr(timings, "TIMINGS", tmp_path / "timings.json")
    timings.record("lane main", "tests", 61.0, ok=True)
    assert bench.main(["--section", "suite"]) == 0
    assert "| tests | 61.0 s |" in capsys.readouterr().out
    assert json.loads((tmp_path / "bench.json").read_text())["sections"]["suite"] == {
        "lane main": {"tests": 61.0}
    }
    with pytest.raises(ConfigurationError, match="must run as root"):
        bench.main(["--section", "suite", "--section", "boot"])


@pytest.mark.parametrize("matrix_only", [False, True])
def test_the_smoke_section_times_each_target_alone_unless_told_the_matrix_only(
    monkeypatch: pytest.MonkeyPatch, matrix_only: bool
) -> None:
    """--smoke-matrix-only: one matrix run per round, each target's figure taken from it."""
    calls: list[tuple[list[str], int]] = []

    class Backend:
        name = "fake"

        def prepare(self, target: object) -> None:
            return None

    def smoke_once(
        targets: list[Target], jobs: int, dist: Path, backend: object
    ) -> dict[str, float]:
        calls.append(([t.name for t in targets], jobs))
        return {**{t.name: 10.0 * len(targets) for t in targets}, "(matrix wall)": 50.0,
                "(scenario CPU)": 70.0}  # fmt: skip

    monkeypatch.setattr(bench, "_smoke_once", smoke_once)
    monkeypatch.setattr(bench, "_backends", lambda args: [Backend()])
    argv = ["--target", "debian-12", "--target", "debian-13", "--smoke-runs", "1", "--jobs", "4"]
    parser = argparse.ArgumentParser()
    bench._common_arguments(parser)
    args = parser.parse_args(argv + (["--smoke-matrix-only"] if matrix_only else []))
    result = bench.measure_smoke(args)
    matrix = (["debian-12", "debian-13"], 4)
    assert calls == ([matrix] if matrix_only else [(["debian-12"], 1), (["debian-13"], 1), matrix])
    figures = result.data["fake"]
    assert figures["matrix_wall"]["median_s"] == 50.0
    assert figures["matrix_scenario_cpu"]["median_s"] == 70.0
    assert figures["debian-12"]["median_s"] == (20.0 if matrix_only else 10.0)
