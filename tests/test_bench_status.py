"""The status bench's rows: the warming run left out, wall and CPU medians side by side."""

from __future__ import annotations

import json
import subprocess
import sys

from qmail_send_systemd import status
from qss_toolkit.bench import status as bench_status
from qss_toolkit.bench.status import TIMER, Timing


def test_the_first_run_warms_the_cache_and_is_left_out() -> None:
    timing = Timing.from_runs("x", [[9.0, 9.0], [0.05, 0.02], [0.07, 0.03], [0.06, 0.04]])
    assert (timing.wall, timing.cpu) == ((0.05, 0.07, 0.06), (0.02, 0.03, 0.04))
    assert timing.row(10_000) == "| x | 10000 | 3 | 60 ms | 70 ms | 30 ms |"
    assert timing.numbers()["cpu_median_s"] == 0.03


def test_the_timer_counts_the_command_s_cpu_not_its_waiting() -> None:
    busy = "import time; end = time.process_time() + 0.2\nwhile time.process_time() < end: pass"
    out = subprocess.run(
        [sys.executable, "-c", TIMER, "2", sys.executable, "-c", busy],
        capture_output=True, check=True, text=True,
    ).stdout  # fmt: skip
    runs = json.loads(out)
    assert len(runs) == 2 and all(cpu >= 0.19 and wall >= cpu * 0.9 for wall, cpu in runs)
    idle = subprocess.run(
        [sys.executable, "-c", TIMER, "1", "sleep", "0.3"], capture_output=True, check=True
    ).stdout
    [[wall, cpu]] = json.loads(idle)
    assert wall >= 0.3 and cpu < 0.1


def test_the_context_rows_time_status_s_own_journalctl_commands() -> None:
    """The toolkit does not import the helper: the bench's copies of the commands are checked
    here, so that a context row never times a command status no longer runs."""
    assert bench_status.STATUS_JOURNALCTL == status.DELIVERY_LINES
    assert bench_status.STATUS_SYSTEMD_LINES == status.SYSTEMD_LINES
