"""How the rebuild session reads reprotest (qss_toolkit.build.debian_tools), without running it:
tests/container/test_rebuild.py runs it."""

from __future__ import annotations

from qss_toolkit.build import debian_tools

LOG = """\
INFO:reprotest:build "control": FIX environment, FIX build_path, FIX time
INFO:reprotest:build "experiment-1": vary environment, FIX build_path, vary time
INFO:reprotest:build "experiment-2": FIX environment, vary build_path, vary time
"""


def test_each_experiments_variations_are_read_from_reprotests_log() -> None:
    assert debian_tools.varied_in(LOG) == [["environment", "time"], ["build_path", "time"]]
    assert debian_tools.varied_in("no build line") == []


def test_the_experiments_vary_every_variation_and_say_why_one_leaves_one_out() -> None:
    varied = {v for e in debian_tools.EXPERIMENTS for v in debian_tools.expected_variations(e)}
    assert varied == set(debian_tools.VARIATIONS)
    for experiment in debian_tools.EXPERIMENTS:
        assert set(experiment.left_out) <= set(debian_tools.VARIATIONS)
        assert all(why.strip() for why in experiment.left_out.values())


def test_a_difference_shows_diffoscopes_report_and_what_was_left_out() -> None:
    result = debian_tools.ReprotestResult(
        debian_tools.EXPERIMENTS,
        1,
        [["umask"], ["time"]],
        [],
        ["", "--- control\n+++ experiment-2\n│ ./usr/share/doc/x/built-at"],
        [],
        1.0,
    )
    summary = result.summary()
    assert not result.reproducible
    assert "NOT reproducible" in summary and "built-at" in summary
    assert "fileordering (disorderfs" in summary
    ineffective = debian_tools.ReprotestResult(
        debian_tools.EXPERIMENTS[:1], 0, [["umask"]], ["num_cpus is ineffective"], [""], [], 1.0
    )
    assert not ineffective.reproducible and "ineffective: num_cpus" in ineffective.summary()
