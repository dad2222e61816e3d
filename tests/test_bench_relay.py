"""The relay bench's arithmetic: /proc/PID/stat and /proc/PID/status as the kernel writes
them, and the helper's CPU against qmail-send's."""

from __future__ import annotations

import os

import pytest

from qss_toolkit.bench import relay
from qss_toolkit.bench.relay import Usage, cost, cpu_ticks, render, rss_kb
from qss_toolkit.errors import CheckFailed

# proc(5)'s layout; utime 1234 and stime 56 (fields 14 and 15), cutime 9999 and cstime 8888
# (the children's, which must not count).
STAT = (
    "4242 (qmail-send) S 4241 4242 4242 0 -1 4194560 1000 0 0 0 1234 56 9999 8888 20 0 1 0 "
    "5000 2400000 150 18446744073709551615 1 1 0 0 0 0 0 4096 16387 0 0 0 17 1 0 0 0 0 0"
)


def test_cpu_ticks_are_utime_plus_stime_without_the_children() -> None:
    assert cpu_ticks(STAT) == 1234 + 56


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() -> None:
    odd = STAT.replace("(qmail-send)", "(python3 (x) y)")
    assert cpu_ticks(odd) == 1290


def test_this_process_reads_as_the_kernel_writes_it() -> None:
    with open(f"/proc/{os.getpid()}/stat") as f:
        assert cpu_ticks(f.read()) >= 0
    with open(f"/proc/{os.getpid()}/status") as f:
        assert rss_kb(f.read()) > 1000


@pytest.mark.parametrize("text", ["", "4242 qmail-send S 1 2 3", "4242 (x) S 1 2"])
def test_what_is_not_a_stat_line_is_said(text: str) -> None:
    with pytest.raises(CheckFailed, match="not a /proc/PID/stat line"):
        cpu_ticks(text)


def test_rss_is_vmrss_and_its_absence_is_said() -> None:
    assert rss_kb("Name:\tqmail-send\nVmPeak:\t 5000 kB\nVmRSS:\t    1564 kB\n") == 1564
    with pytest.raises(CheckFailed, match="no VmRSS"):
        rss_kb("Name:\tkthreadd\n")


def test_cost_is_the_difference_over_the_clock_rate() -> None:
    before = {"helper": Usage(100, 9000), "qmail-send": Usage(50, 1500)}
    after = {"helper": Usage(130, 9200), "qmail-send": Usage(850, 1600)}
    found = cost(before, after, 100, 10_000, 42.0)
    assert (found.helper_cpu_s, found.qmail_send_cpu_s) == (0.3, 8.0)
    assert found.ratio == pytest.approx(0.0375)
    assert found.ok()
    assert (found.helper_rss_kb, found.qmail_send_rss_kb) == (9200, 1600)
    row = render([("here", found)]).splitlines()[-1]
    assert "| 0.30 s | 8.00 s | 3.8% | <= 10% (ok) | 9.0 MB | 1.6 MB | 42.0 s |" in row


def test_over_the_aim_is_missed_and_a_replaced_process_is_an_error() -> None:
    before = {"helper": Usage(0, 1), "qmail-send": Usage(0, 1)}
    over = cost(before, {"helper": Usage(300, 1), "qmail-send": Usage(800, 1)}, 100, 1, 1.0)
    assert not over.ok() and "MISSED" in render([("x", over)])
    assert relay.AIM == 0.10
    with pytest.raises(CheckFailed, match="went back"):
        cost({"helper": Usage(500, 1), "qmail-send": Usage(0, 1)}, before, 100, 1, 1.0)
    with pytest.raises(CheckFailed, match="clock ticks"):
        cost(before, before, 0, 1, 1.0)
