"""The flush bench's driver and table, without a container: a real process gets real SIGALRMs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qss_toolkit.bench import flush
from qss_toolkit.bench.flush import FlushStats, percentile, render


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([3.0, 1.0, 2.0], 100) == 3.0


def _samples(hook: float, alrm: float | None, n: int = 100) -> list[dict[str, object]]:
    return [{"hook": hook, "alrm": alrm, "code": 0} for _ in range(n)]


def test_table_verdicts_follow_the_targets() -> None:
    fast = FlushStats.from_samples("debian-12", "up", _samples(0.004, 0.030))
    slow = FlushStats.from_samples("debian-12", "connectivity-change", _samples(0.060, 0.300))
    lost = FlushStats.from_samples("debian-12", "up", _samples(0.004, None, 3))
    assert fast.ok() and not slow.ok() and not lost.ok()
    table = render([fast, slow, lost]).splitlines()
    assert "| debian-12 | up | hook run time | 100 | 4.0 ms | 4.0 ms | < 50 ms | ok |" in table
    assert any("connectivity-change (FULL) | hook run time" in r and "MISSED" in r for r in table)
    assert any("SIGALRM" in r and "300.0 ms" in r and "MISSED" in r for r in table)
    assert any("MISSED (3 without SIGALRM)" in r for r in table)
    routable = FlushStats.from_samples("debian-12", "routable", _samples(0.004, 0.030))
    assert (
        render([routable])
        .splitlines()[2]
        .startswith("| debian-12 | networkd-dispatcher: routable | hook run time | 100 |")
    )


def run_driver(*args: str) -> subprocess.CompletedProcess[str]:
    """The flush bench's driver on the host (argv as in flush.DRIVER); skip without ptrace."""
    result = subprocess.run(
        [sys.executable, "-c", flush.DRIVER, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "could not attach" in result.stderr:
        pytest.skip("ptrace is not permitted here")
    return result


# Each dispatcher's calling convention, and the condition a hook that checks it tests.
CONVENTIONS = [
    pytest.param(
        ["", "connectivity-change"],
        {"CONNECTIVITY_STATE": "FULL"},
        '[ "$2" = connectivity-change ] && [ "$CONNECTIVITY_STATE" = FULL ]',
        id="NetworkManager",
    ),
    pytest.param(
        [],
        {"STATE": "routable", "IFACE": "host0"},
        '[ $# -eq 0 ] && [ "$STATE" = routable ] && [ "$IFACE" = host0 ]',
        id="networkd-dispatcher",
    ),
]


@pytest.mark.skipif(not shutil.which("strace"), reason="strace is not installed")
@pytest.mark.parametrize(("argv", "environment", "condition"), CONVENTIONS)
def test_driver_times_hook_and_signal_arrival(
    tmp_path: Path, argv: list[str], environment: dict[str, str], condition: str
) -> None:
    # A process that, like qmail-send, sleeps and takes SIGALRM; a hook that signals it in the
    # background and returns at once, as `systemctl --no-block reload` lets the real one do.
    target = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal,time\nsignal.signal(signal.SIGALRM, lambda *a: None)"
            "\nwhile True: time.sleep(1)",
        ]
    )
    try:
        hook = tmp_path / "hook"
        hook.write_text(
            f"#!/bin/sh\n{condition} || exit 3\n(sleep 0.02; kill -ALRM {target.pid}) &\n"
        )
        hook.chmod(0o755)
        env = json.dumps(environment)
        result = run_driver(json.dumps(argv), "5", "1", env, str(hook), str(target.pid))
        assert result.returncode == 0, result.stderr
        samples = json.loads(result.stdout)
        stats = FlushStats.from_samples("host", "connectivity-change", samples)
        assert stats.events == 5 and stats.lost == 0 and stats.failed == 0
        # Every signal arrived while the driver waited for it, after the hook started (the
        # figures themselves are `nox -s bench`'s: no wall-clock bound on a shared machine).
        assert len(stats.alrm_ms) == 5 and all(0.0 <= ms < 5000.0 for ms in stats.alrm_ms)
        assert len(stats.hook_ms) == 5 and all(0.0 <= h < 5000.0 for h in stats.hook_ms)
    finally:
        target.send_signal(signal.SIGTERM)
        target.wait(timeout=10)


def test_driver_reports_lost_signals(tmp_path: Path) -> None:
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    target = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(1)"])
    try:
        hook = tmp_path / "hook"
        hook.write_text("#!/bin/sh\nexit 0\n")  # a hook that never flushes
        hook.chmod(0o755)
        started = time.monotonic()
        result = run_driver('["eth0", "up"]', "1", "0", "{}", str(hook), str(target.pid))
        samples = json.loads(result.stdout)
        assert samples[0]["alrm"] is None
        assert time.monotonic() - started >= 5.0  # it waited the full timeout
    finally:
        os.kill(target.pid, signal.SIGTERM)
        target.wait(timeout=10)


def test_numbers_hold_the_table_figures() -> None:
    up = FlushStats.from_samples("debian-12", "up", _samples(0.004, 0.030, 100))
    run = flush.FlushRun((up,), (), (("debian-12", "0.5 0.4 0.3", "0.6 0.4 0.3"),))
    data = flush.numbers(run)["debian-12"]["up"]
    assert data["events"] == 100 and data["lost"] == 0 and data["ok"] is True
    assert data["hook_ms"]["median"] == 4.0 and data["alrm_ms"]["p95"] == 30.0
    assert len(data["alrm_ms"]["samples"]) == 100


def test_context_rows_follow_the_verdict_rows() -> None:
    up = FlushStats.from_samples("debian-12", "up", _samples(0.004, 0.030, 100))
    tcpok = flush.ContextTiming("debian-12", "stand-in qmail-tcpok", (40.0, 42.0, 80.0))
    table = render([up], [tcpok]).splitlines()
    assert (
        table[-1] == "| debian-12 | - | context: stand-in qmail-tcpok | 3 | 42.0 ms | 80.0 ms | | |"
    )


def test_delivery_rows_name_each_route_and_lost_mail() -> None:
    plain = flush.DeliveryStats.from_samples("debian-12", "plain SMTP", [0.1, 0.2, 0.3])
    tls = flush.DeliveryStats.from_samples("debian-12", "STARTTLS + AUTH", [0.4, None])
    table = render([], [], [plain, tls]).splitlines()
    assert (
        "| debian-12 | up | hook start -> mail at the smarthost, plain SMTP | 3 | 200.0 ms "
        "| 300.0 ms | | ok |" in table
    )
    assert any("STARTTLS + AUTH | 2 | 400.0 ms" in r and "MISSED (1 not delivered)" in r
               for r in table)  # fmt: skip
    run = flush.FlushRun((), (), (), (plain, tls))
    data = flush.numbers(run)["debian-12"]["delivery_ms"]
    assert data["plain SMTP"]["median"] == 200.0 and data["STARTTLS + AUTH"]["lost"] == 1
