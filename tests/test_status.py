"""`status`: the queue read as qmail-qstat and qmail-qread read it, the service, the smarthost,
the latest delivery results, and what needs attention (exit 1), on fake trees.

The fake queues are written in qmail's own layout by qss_toolkit.smoke.fake_queue, not by the
stand-in: mess/, info/, local/ and remote/ split into 23 subdirectories, todo/ and intd/ flat,
one NUL-terminated `T`/`D` record per recipient.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from qmail_send_systemd import cli, status
from qmail_send_systemd.systemd import UNIT, Result, System
from qss_toolkit.smoke import fake_queue
from qss_toolkit.smoke.fake_queue import make_queue, split_file

T = TypeVar("T")

NOW = 1_800_000_000.0
ACTIVE = (
    "LoadState=loaded\nActiveState=active\nSubState=running\n"
    "ActiveEnterTimestamp=Tue 2027-01-12 08:00:00 UTC\nMainPID=4242\nNRestarts=2\n"
    "ConditionResult=yes\n"
)
INACTIVE = (
    "LoadState=loaded\nActiveState=inactive\nSubState=dead\nActiveEnterTimestamp=\n"
    "MainPID=0\nNRestarts=0\nConditionResult=yes\n"
)


class StatusSystem(System):
    """Answers `systemctl show` and status's two journalctl commands with canned output, each
    in the format that journalctl prints for that command; records every call."""

    def __init__(
        self, root: Path, show: str = ACTIVE, journal: Sequence[Entry] | None = None
    ) -> None:
        super().__init__(root, environ={})
        self.show = show
        # A running service has at least systemd's line of its start in the journal, and
        # qmail-send's first status line.
        self.journal = (
            list(journal)
            if journal is not None
            else [entry(NOW - 3599, "status: local 0/10 remote 0/20"), started(NOW - 3600)]
        )
        self.journal_stderr = ""
        self.calls: list[list[str]] = []

    def start(self, argv: Sequence[str]) -> Callable[[], Result]:
        result = self.call(argv)
        return lambda: result

    def beside(self, work: Callable[[], T]) -> Callable[[], T]:
        """Here, not in a child: its calls are recorded (test_the_report_is_the_same_beside
        runs the real one)."""
        result = work()
        return lambda: result

    def call(self, argv: Sequence[str]) -> Result:
        self.calls.append(list(argv))
        if argv[:2] == ["systemctl", "show"]:
            return Result(0, self.show)
        if list(argv) == status.DELIVERY_LINES:
            return Result(0, short_unix(self.journal), self.journal_stderr)
        if list(argv) == status.SYSTEMD_LINES:
            return Result(0, systemd_export(self.journal), self.journal_stderr)
        return Result(127, "", f"{argv[0]}: not expected here")


BOOT = "0123456789abcdef0123456789abcdef"
# One journal entry (its fields, as journald stores them), or a line of journalctl's output
# that is not an entry's first (a multi-line message's continuation, a line cut off).
Entry = dict[str, Any] | str


def entry(seconds: float, message: str | list[int], boot: str = BOOT, **fields: str) -> Entry:
    """One of qmail-send's lines, relayed by the helper (the unit's main process)."""
    return {
        "MESSAGE": message,
        "__REALTIME_TIMESTAMP": str(int(seconds * 1e6)),
        "_BOOT_ID": boot,
        "_SYSTEMD_UNIT": UNIT,
        "_PID": "65",
        "SYSLOG_IDENTIFIER": "qmail-send",
        **fields,
    }


def started(seconds: float, *, restarted: bool = False) -> Entry:
    """systemd's own lines about the unit (PID 1's, with UNIT=)."""
    message = (
        "qmail-send.service: Scheduled restart job, restart counter is at 1."
        if restarted
        else "Started qmail-send.service"
    )
    return {
        "MESSAGE": message,
        "__REALTIME_TIMESTAMP": str(int(seconds * 1e6)),
        "_BOOT_ID": BOOT,
        "_PID": "1",
        "UNIT": UNIT,
        "SYSLOG_IDENTIFIER": "systemd",
        "MESSAGE_ID": status.RESTART_SCHEDULED if restarted else status.UNIT_STARTED,
    }


def short_unix(journal: Sequence[Entry]) -> str:
    """What `journalctl _SYSTEMD_UNIT=... -o short-unix -r --all --quiet` prints of the entries
    (newest first, as given): `SECONDS.MICROS HOST IDENTIFIER[PID]: MESSAGE`, a message that is
    not UTF-8 as its bytes (decoded by status with errors="replace")."""
    lines = []
    for item in journal:
        if isinstance(item, str):
            lines.append(item)
            continue
        if item.get("_SYSTEMD_UNIT") != UNIT:
            continue
        message = item["MESSAGE"]
        if isinstance(message, list):
            message = bytes(message).decode("utf-8", "replace")
        micros = int(item["__REALTIME_TIMESTAMP"])
        stamp = f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
        lines.append(f"{stamp} laptop {item['SYSLOG_IDENTIFIER']}[{item['_PID']}]: {message}")
    return "".join(line + "\n" for line in lines)


def systemd_export(journal: Sequence[Entry]) -> str:
    """What `journalctl -b _PID=1 UNIT=... -o export --output-fields=MESSAGE_ID` prints: PID
    1's entries about the unit in this boot, oldest first, each with journalctl's own fields
    (FIELD=value lines, in journalctl's order) and an empty line after it."""
    out = []
    for item in reversed(journal):
        if isinstance(item, str) or item.get("_PID") != "1" or item.get("UNIT") != UNIT:
            continue
        if item["_BOOT_ID"] != BOOT:
            continue
        shown = {
            "__CURSOR": f"s=0;i=1;b={item['_BOOT_ID']}",
            "__REALTIME_TIMESTAMP": item["__REALTIME_TIMESTAMP"],
            "__MONOTONIC_TIMESTAMP": "1",
            "_BOOT_ID": item["_BOOT_ID"],
        }
        if "MESSAGE_ID" in item:
            shown["MESSAGE_ID"] = item["MESSAGE_ID"]
        out.append("".join(f"{key}={value}\n" for key, value in shown.items()) + "\n")
    return "".join(out)


def add_message(queue: Path, number: int, *, now: float = NOW, **details: Any) -> None:
    fake_queue.add_message(queue, number, now=now, **details)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_queue(tmp_path)
    (tmp_path / "proc/sys/kernel/random").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/random/boot_id").write_text(
        "01234567-89ab-cdef-0123-456789abcdef\n"
    )
    (tmp_path / "var/qmail/control").mkdir()
    (tmp_path / "var/qmail/control/smtproutes").write_text(
        "example.com:mx.example.com\n:smtp.example.net:587\n"
    )
    return tmp_path


def report(system: StatusSystem) -> dict[str, object]:
    return status.check(system, live=True, now=NOW)


def problems(result: dict[str, object]) -> list[str]:
    found = result["attention"]
    assert isinstance(found, list)
    return [p["problem"] for p in found]


def test_empty_queue_and_a_running_service_need_nothing(root: Path) -> None:
    system = StatusSystem(
        root,
        journal=[
            entry(NOW - 30, "delivery 3: success: ok/"),
            entry(NOW - 31, "starting delivery 3: msg 77 to local root@laptop"),
            started(NOW - 60),
            started(NOW - 3000, restarted=True),
            started(NOW - 3005),
            entry(NOW - 9000, "status: exiting", boot="0ld"),
        ],
    )
    result = report(system)
    assert problems(result) == []
    assert result["queue"] == {
        "messages": 0,
        "not_yet_preprocessed": 0,
        "being_queued": 0,
        "with_deliveries_to_do": {"local": 0, "remote": 0},
        "oldest": None,
        "not_read": [],
        "counted": True,
    }
    assert result["service"] == {
        "LoadState": "loaded",
        "ActiveState": "active",
        "SubState": "running",
        "ActiveEnterTimestamp": "Tue 2027-01-12 08:00:00 UTC",
        "MainPID": "4242",
        "NRestarts": "2",
        "ConditionResult": "yes",
    }
    assert result["smarthost"] == {
        "route": "smtp.example.net:587",
        "file": str(root / "var/qmail/control/smtproutes"),
        "domain_routes": 1,
    }
    text = status.render_text(result).splitlines()
    assert text[0] == (
        f"service: {UNIT} active (running) since Tue 2027-01-12 08:00:00 UTC, main PID 4242, "
        "started 2 times since boot (1 automatic restart scheduled)"
    )
    assert text[-1] == "ok: nothing needs attention"
    # Read-only: two journalctl and one `systemctl show`, nothing that changes anything.
    assert system.calls[:2] == [status.DELIVERY_LINES, status.SYSTEMD_LINES]
    assert [c[:2] for c in system.calls[2:]] == [["systemctl", "show"]]


def test_counts_follow_qmail_qstat_and_qmail_qread(root: Path) -> None:
    queue = root / "var/qmail/queue"
    add_message(queue, 100, local=["root"], remote=["a@x.org", "b@y.org"], done=["a@x.org"])
    add_message(queue, 123, remote=["c@z.org"], age=600)  # 123 % 23 == 8: another split
    add_message(queue, 130, remote=["d@z.org"], preprocessed=False, age=10)
    (queue / "intd/131").write_text("u0\0p1\0Fx\0")  # qmail-queue still writing 131
    split_file(queue, "mess", 131).write_text("partial")
    os.utime(split_file(queue, "mess", 131), (NOW, NOW))
    result = report(StatusSystem(root))
    q = result["queue"]
    assert isinstance(q, dict)
    assert (q["messages"], q["not_yet_preprocessed"], q["being_queued"]) == (4, 1, 1)
    # Preprocessed messages with a local/ or remote/ file: 100 in both, 123 remote alone
    # (todo/'s are not yet split; a channel's file goes once all its recipients are done).
    assert q["with_deliveries_to_do"] == {"local": 1, "remote": 2}
    assert q["oldest"] == {
        "message": 123,
        "age_seconds": 600,
        "queued_at": status._iso(NOW - 600),
        "from": "me@example.org",
    }


def test_every_split_directory_s_files_are_aged(root: Path) -> None:
    """info/'s files are stat'ed half in a second thread: each directory's come back."""
    queue = root / "var/qmail/queue"
    for number in range(100, 123):  # one message in each of the 23 split directories
        add_message(queue, number, remote=["a@x.org"], age=number)
    unread = [0]
    found = status.Queue()
    info = status._Split(str(queue), "info", found)
    try:
        births = info.births(None, unread)
    finally:
        info.close()
    assert births == {n: NOW - n for n in range(100, 123)}
    assert (unread, found.not_read) == ([0], [])


def test_info_is_found_by_conf_split_or_listed_with_the_same_answer(root: Path) -> None:
    """mess/ listed whole: each message's info/ file is stat'ed in N % conf-split, unlisted.
    info/ with a subdirectory qmail never makes (so conf-split cannot be told) is listed:
    the counts and the oldest message are the same either way."""
    queue = root / "var/qmail/queue"

    def age(number: int) -> int:
        return number % 23 * 60 + number

    for number in range(100, 150):
        add_message(queue, number, remote=["a@x.org"], age=age(number))
    add_message(queue, 7, preprocessed=False, age=10)
    found = status.Queue()
    info = status._Split(str(queue), "info", found, listed=False)
    try:
        assert sorted(info.by_split) == list(range(23)) and not info.dirs
        assert info.births_at({100, 101, 7}, [0]) == {100: NOW - age(100), 101: NOW - age(101)}
    finally:
        info.close()
    unlisted = status.read_queue(root, NOW).as_dict()
    (queue / "info/lost+found").mkdir()
    listed = status.read_queue(root, NOW).as_dict()
    assert unlisted == listed
    assert isinstance(listed["oldest"], dict) and listed["oldest"]["message"] == 137
    assert listed["messages"] == 51 and listed["not_yet_preprocessed"] == 1


def test_the_oldest_message_not_yet_preprocessed_is_aged_by_mess(root: Path) -> None:
    queue = root / "var/qmail/queue"
    add_message(queue, 7, preprocessed=False, age=7200)
    result = report(StatusSystem(root))
    q = result["queue"]
    assert isinstance(q, dict) and isinstance(q["oldest"], dict)
    assert (q["oldest"]["message"], q["oldest"]["from"]) == (7, None)
    assert q["oldest"]["age_seconds"] == 7205  # mess/'s mtime: no info/ yet
    assert problems(result) == ["message 7 has waited 2 h 0 min in the queue"]


def test_mail_older_than_an_hour_needs_attention_and_younger_does_not(root: Path) -> None:
    queue = root / "var/qmail/queue"
    add_message(queue, 1, age=3500)
    assert problems(report(StatusSystem(root))) == []
    add_message(queue, 2, age=3700)
    result = report(StatusSystem(root))
    assert problems(result) == ["message 2 has waited 61 min in the queue"]
    assert status.render_text(result).splitlines()[-1] == (
        "attention: message 2 has waited 61 min in the queue (fix: see the latest deferral; "
        "once online, as root: qmail-send-systemd flush)"
    )


def test_ten_thousand_messages(root: Path) -> None:
    fake_queue.fill(root, 10_000, NOW)
    result = report(StatusSystem(root))  # how long it takes: nox -s bench's status figure
    q = result["queue"]
    assert isinstance(q, dict) and isinstance(q["oldest"], dict)
    assert q["messages"] == 10_000
    assert q["with_deliveries_to_do"] == {"local": 0, "remote": 10_000}
    assert q["oldest"]["message"] == 499  # the first number with the largest age


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A tree another user can traverse (tmp_path's parents are private to root)."""
    top = Path(tempfile.mkdtemp(prefix="qss-status-"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        for path in [top, *top.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)

        shutil.rmtree(top)


def read_queue_as_a_user(root: Path) -> dict[str, object]:
    """status's queue reading as an ordinary user: as ourselves, or as nobody when root."""
    if os.geteuid() != 0:
        return status.read_queue(root, NOW).as_dict()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child drops to nobody and sends back what it read
        code = 1
        try:
            os.close(reader)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            os.write(writer, json.dumps(status.read_queue(root, NOW).as_dict()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    _, code = os.waitpid(pid, 0)
    assert code == 0 and data
    result = json.loads(data)
    assert isinstance(result, dict)
    return result


def _tree_for_a_user(root: Path) -> Path:
    queue = make_queue(root)
    add_message(queue, 50, remote=["a@x.org"], age=100)
    add_message(queue, 73, remote=["b@x.org"], age=200)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return queue


def test_unreadable_recipient_lists_are_named_not_fatal(shared_root: Path) -> None:
    """As a member of group qmail: mess/ and todo/ readable, info/ local/ remote/ not."""
    queue = _tree_for_a_user(shared_root)
    for name in ("info", "local", "remote"):
        (queue / name).chmod(0)
    q = read_queue_as_a_user(shared_root)
    assert q["messages"] == 2 and q["counted"] is True
    assert q["with_deliveries_to_do"] == {"local": 0, "remote": 0}
    assert sorted(q["not_read"]) == [  # type: ignore[call-overload]
        f"{queue}/{name}: permission denied" for name in ("info", "local", "remote")
    ]
    assert q["oldest"]["from"] is None  # type: ignore[index]


def test_an_unreadable_queue_is_said_in_one_line(shared_root: Path) -> None:
    queue = _tree_for_a_user(shared_root)
    queue.chmod(0o750 if os.geteuid() != 0 else 0o700)  # qmail's 0750 qmailq:qmail
    if os.geteuid() != 0:
        queue.chmod(0)
    q = read_queue_as_a_user(shared_root)
    assert q["counted"] is False
    assert f"{queue}/mess: permission denied" in q["not_read"]  # type: ignore[operator]
    skipped = {"not_read": "--root: not the running system", "skipped": True}
    shown: dict[str, object] = {
        "service": skipped,
        "queue": q,
        "smarthost": {"route": None, "file": "x", "note": "none"},
        "journal": skipped,
    }
    shown["attention"] = status.attention(shown)
    text = status.render_text(shown).splitlines()
    assert "queue: not counted (see below)" in text
    assert f"queue: not read: {queue}/mess: permission denied" in text
    # Never "ok" about what could not be seen: what, and how to see it.
    assert text[-1] == (
        f"attention: the queue could not be read as this user ({q['not_read'][0]}) "  # type: ignore[index]
        "(fix: as root: qmail-send-systemd status)"
    )


def test_one_unreadable_message_file_is_counted_apart(root: Path) -> None:
    queue = root / "var/qmail/queue"
    add_message(queue, 5)
    info = split_file(queue, "info", 5)
    info.unlink()
    info.symlink_to(info.name)  # stat() fails on it (ELOOP) for root too
    q = status.read_queue(root, NOW).as_dict()
    assert q["not_read"] == [f"{queue}: 1 message files could not be read"]
    assert q["messages"] == 1
    assert q["oldest"]["age_seconds"] == 65  # type: ignore[index]  # mess/'s, 5 s older


def test_recipient_lists_are_counted_not_read(root: Path) -> None:
    """A channel's file is there until all its recipients are done (qmail-send's job_close):
    its presence is the count, so an unreadable one counts the same and is never opened."""
    queue = root / "var/qmail/queue"
    add_message(queue, 5, local=["root"], remote=[])
    add_message(queue, 6, remote=["a@x.org"])
    for number, channel in ((5, "local"), (6, "remote")):
        split_file(queue, channel, number).unlink()
        split_file(queue, channel, number).mkdir()  # open() + read() would fail on it
    q = status.read_queue(root, NOW).as_dict()
    assert q["with_deliveries_to_do"] == {"local": 1, "remote": 1}
    assert q["not_read"] == []


@pytest.mark.parametrize(
    ("show", "problem", "fix"),
    [
        (INACTIVE, f"{UNIT} is inactive", "as root: systemctl start qmail-send"),
        (
            INACTIVE.replace("inactive", "failed"),
            f"{UNIT} is failed",
            "as root: systemctl reset-failed qmail-send && systemctl start qmail-send",
        ),
        (
            INACTIVE.replace("=inactive", "=activating").replace("=dead", "=auto-restart"),
            f"{UNIT} is down after a failure, waiting to be restarted",
            "`journalctl -u qmail-send -b -p err` says why it fails",
        ),
        (
            INACTIVE.replace("ConditionResult=yes", "ConditionResult=no"),
            f"{UNIT} is inactive",
            "as root, qmail-send-systemd verify",
        ),
        ("LoadState=not-found\nActiveState=inactive\n", f"{UNIT} is not installed", "install"),
    ],
)
def test_a_service_that_is_not_running_needs_attention(
    root: Path, show: str, problem: str, fix: str
) -> None:
    result = report(StatusSystem(root, show=show))
    found = result["attention"]
    assert isinstance(found, list) and len(found) == 1
    assert found[0]["problem"] == problem and fix in found[0]["fix"]


def test_reloading_is_not_down(root: Path) -> None:
    assert problems(report(StatusSystem(root, show=ACTIVE.replace("=active", "=reloading")))) == []


def test_the_latest_delivery_result_decides_about_deferrals(root: Path) -> None:
    deferral = "delivery 8: deferral: Sorry,_I_wasn't_able_to_establish_an_SMTP_connection./"
    failure = "delivery 6: failure: Sorry,_no_mailbox_here_by_that_name./"
    older = [
        entry(NOW - 300, deferral),
        entry(NOW - 301, "starting delivery 8: msg 8 to remote a@x.org"),
        entry(NOW - 400, failure),
        entry(NOW - 401, "starting delivery 6: msg 6 to local nobody@laptop"),
    ]
    system = StatusSystem(root, journal=[entry(NOW - 10, "status: exiting"), *older])
    assert problems(report(system)) == []  # the queue is empty: that deferral is history
    add_message(root / "var/qmail/queue", 8, remote=["a@x.org"])
    result = report(system)
    assert problems(result) == [
        "1 queued message whose last delivery attempt was deferred (latest: message 8 to "
        f"remote a@x.org at {status._iso(NOW - 300)}: "
        "Sorry,_I_wasn't_able_to_establish_an_SMTP_connection./)"
    ]
    journal = result["journal"]
    assert isinstance(journal, dict)
    assert journal["deferral"] == {
        "time": status._iso(NOW - 300),
        "line": deferral,
        "reason": "Sorry,_I_wasn't_able_to_establish_an_SMTP_connection./",
    }
    assert journal["failure"]["line"] == failure
    text = status.render_text(result)
    assert f"latest deferral: {status._iso(NOW - 300)} {deferral}" in text
    assert not text.splitlines()[-1].startswith("ok")
    # A success of that recipient after the deferral: its last attempt went through.
    system.journal[:0] = [
        entry(NOW - 5, "delivery 9: success: 192.0.2.1_accepted/"),
        entry(NOW - 6, "starting delivery 9: msg 8 to remote a@x.org"),
    ]
    assert problems(report(system)) == []


def test_a_later_success_elsewhere_does_not_hide_a_deferral(root: Path) -> None:
    """Issue 22: a local success after a remote deferral read as "ok" with two remote
    recipients waiting. Every queued message's last attempts count, each recipient's."""
    queue = root / "var/qmail/queue"
    add_message(queue, 21, remote=["a@x.org", "b@y.org"])
    add_message(queue, 22, local=["root"], remote=[], done=["root"])
    add_message(queue, 23, remote=["c@z.org"])
    lines = [  # newest first, as journalctl -r gives them
        entry(NOW - 1, "delivery 5: success: did_0+0+1/"),
        entry(NOW - 2, "starting delivery 5: msg 22 to local root@laptop"),
        entry(NOW - 3, "delivery 4: success: 192.0.2.9_accepted_message./"),
        entry(NOW - 4, "starting delivery 4: msg 21 to remote a@x.org"),
        entry(NOW - 10, "delivery 3: deferral: Sorry,_I_couldn't_find_any_host_by_that_name./"),
        entry(NOW - 11, "starting delivery 3: msg 21 to remote b@y.org"),
        entry(NOW - 12, "delivery 2: deferral: Connected_to_192.0.2.7_but_greeting_failed./"),
        entry(NOW - 13, "starting delivery 2: msg 21 to remote a@x.org"),
        entry(NOW - 20, "delivery 1: deferral: 451_try_later/"),
        entry(NOW - 21, "starting delivery 1: msg 23 to remote c@z.org"),
        entry(NOW - 30, "end msg 99"),
        entry(NOW - 31, "delivery 7: deferral: old_news/"),
        entry(NOW - 32, "starting delivery 7: msg 23 to remote c@z.org"),
        entry(NOW - 33, "new msg 23"),  # 23 before: another message with that number
    ]
    result = report(StatusSystem(root, journal=lines))
    deferred = result["deferred"]
    assert isinstance(deferred, dict)
    assert deferred["messages"] == 2
    assert [(d["message"], d["recipient"]) for d in deferred["shown"]] == [
        (21, "b@y.org"),
        (23, "c@z.org"),
    ]
    assert problems(result)[0].startswith(
        "2 queued messages whose last delivery attempt was deferred (latest: message 21 to "
        "remote b@y.org"
    )
    assert status.needs_attention(result)  # exit 1


class ForkingSystem(StatusSystem):
    """StatusSystem with System's own beside(): the live part runs in a child process."""

    beside = System.beside


def test_the_report_is_the_same_beside(root: Path) -> None:
    """What the running system says is found in a child process while the queue is read, and
    comes back whole: the same report as found here, deferrals, dates and journal included."""
    queue = root / "var/qmail/queue"
    add_message(queue, 21, remote=["a@x.org", "b@y.org"])
    add_message(queue, 23, remote=["c@z.org"])
    lines = [
        entry(NOW - 10, "delivery 3: deferral: Sorry,_I_couldn't_find_any_host_by_that_name./"),
        entry(NOW - 11, "starting delivery 3: msg 21 to remote b@y.org"),
        entry(NOW - 20, "delivery 1: deferral: 451_try_later/"),
        entry(NOW - 21, "starting delivery 1: msg 23 to remote c@z.org"),
        entry(NOW - 40, "alert: oh no! lost spawn connection! dying..."),
        started(NOW - 3600),
    ]
    here = StatusSystem(root, journal=lines)
    beside = ForkingSystem(root, journal=lines)
    expected = report(here)
    assert here.calls and not beside.calls  # its calls were made in the child
    assert report(beside) == expected
    assert not beside.calls
    deferred = expected["deferred"]
    assert isinstance(deferred, dict) and deferred["messages"] == 2


def test_journal_lines_that_are_not_delivery_results_are_ignored(root: Path) -> None:
    lines = [
        entry(NOW, "delivery x: deferral: not a number"),
        entry(NOW, "delivery 3: deferrals: not a result"),
        entry(NOW, "starting delivery 3: msg 5 to remote a@b"),
        entry(NOW, [100, 101, 108, 255]),  # not UTF-8: journalctl --all prints the bytes
        "    delivery 4: success: the continuation of a multi-line message/",
        "laptop qmail-send[65]: delivery 5: success: no time/",
    ]
    result = report(StatusSystem(root, journal=lines))
    journal = result["journal"]
    assert isinstance(journal, dict)
    assert journal["latest"] is None and journal["entries_read"] == 4
    assert problems(result) == []


def test_a_journal_this_user_cannot_see_is_named(root: Path) -> None:
    system = StatusSystem(root, journal=[])
    system.journal_stderr = (
        "Hint: You are currently not seeing messages from other users and the system.\n"
    )
    journal = report(system)["journal"]
    assert isinstance(journal, dict)
    assert journal["not_read"] == "this user cannot read the system journal"


def test_a_journal_this_user_cannot_read_is_never_ok(root: Path) -> None:
    """journalctl 252's JSON output carries no hint: it shows no line at all. So status looks
    at the journal files, and says what it could not see and how to see it."""
    journal_file = root / "var/log/journal/0123/system.journal"
    journal_file.parent.mkdir(parents=True)
    journal_file.write_text("")
    journal_file.chmod(0o640)
    system = StatusSystem(root, journal=[])
    as_user = 65534 if os.geteuid() == 0 else os.geteuid()

    # os.access as that user would answer (root may read anything): the file is root's 0640.
    def access(path: str, mode: int) -> bool:
        return bool(os.stat(path).st_mode & 0o004) and os.access(path, mode)

    result = status.check(system, live=True, now=NOW, euid=as_user, access=access)
    assert [c[0] for c in system.calls] == ["systemctl"]  # journalctl would show nothing
    found = result["attention"]
    assert isinstance(found, list) and len(found) == 1
    problem: dict[str, str] = found[0]
    assert problem["problem"].startswith("qmail-send's journal could not be read (")
    assert "deferrals and failures are not seen" in problem["problem"]
    assert problem["fix"].startswith("as root: qmail-send-systemd status; or let ")
    assert "usermod -a -G systemd-journal" in problem["fix"]
    text = status.render_text(result)
    assert "\nok" not in text and status.needs_attention(result)
    journal_file.chmod(0o644)  # readable: journalctl runs
    result = status.check(system, live=True, now=NOW, euid=as_user, access=access)
    assert [c[0] for c in system.calls][-3:] == ["journalctl", "journalctl", "systemctl"]


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        (":smtp.example.net\n", "smtp.example.net"),
        (":[192.0.2.25]:2525\nexample.com:\n", "[192.0.2.25]:2525"),
        ("example.com:mx.example.com\n", None),
        (":\n", None),  # an empty relay: the MX, as qmail-remote reads it
        ("", None),
    ],
)
def test_the_smarthost_is_smtproutes_default_route(
    root: Path, routes: str, expected: str | None
) -> None:
    (root / "var/qmail/control/smtproutes").write_text(routes)
    assert status.read_smarthost(root)["route"] == expected


def test_without_smtproutes_mail_goes_to_the_mx(root: Path) -> None:
    (root / "var/qmail/control/smtproutes").unlink()
    line = status._smarthost_line(status.read_smarthost(root))
    assert line.startswith("smarthost: none: remote mail goes to each domain's MX")
    assert line.endswith("smtproutes: no such file)")


def test_cli_under_root_reads_the_tree_and_not_the_live_system(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_message(root / "var/qmail/queue", 9, age=5 * 3600, now=time.time())
    code = cli.main(["--root", str(root), "status", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1  # five hours in the queue
    assert out["queue"]["messages"] == 1
    assert out["service"] == {
        "not_read": f"--root {root} is not the running system",
        "skipped": True,
    }
    assert out["journal"] == out["service"]
    assert [p["problem"] for p in out["attention"]] == [
        "message 9 has waited 5 h 0 min in the queue"
    ]


def test_cli_exit_zero_when_healthy(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--root", str(root), "status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[1] == "queue: 0 messages, 0 not yet preprocessed, 0 with local and 0 with remote "
        "deliveries to do"
    )
    assert out[-1] == (
        "ok: nothing needs attention in the queue and the smarthost (the service and the "
        "journal are the running system's: not looked at)"
    )


def test_cli_without_a_queue_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--root", str(tmp_path), "status"]) == 1
    out = capsys.readouterr().out
    assert f"queue: not read: {tmp_path}/var/qmail/queue: no such file or directory\n" in out
    assert "\nok" not in out
    assert "Traceback" not in out


def test_hostile_senders_and_replies_cannot_reach_the_terminal(root: Path) -> None:
    """The envelope sender comes from any SMTP client, a deferral's text from any server."""
    add_message(root / "var/qmail/queue", 4, sender="evil\x1b[2J\n@example.org")
    reply = "delivery 2: deferral: 421_\x1b]0;owned\x07_bye/"
    result = report(StatusSystem(root, journal=[entry(NOW - 1, reply)]))
    oldest = result["queue"]["oldest"]  # type: ignore[index]
    assert oldest["from"] == "evil_[2J_@example.org"
    text = status.render_text(result)
    assert "\x1b" not in text and "\x07" not in text
    assert "delivery 2: deferral: 421__]0;owned__bye/" in text


def test_a_hup_to_every_process_is_named_with_the_safe_command(root: Path) -> None:
    """Issue 22: `systemctl kill -s HUP qmail-send` kills qmail-lspawn, -rspawn and -clean;
    qmail-send dies of it. status says what happened and which command is safe."""
    lines = [
        started(NOW - 5, restarted=True),
        entry(NOW - 10, "alert: oh no! lost spawn connection! dying..."),
        started(NOW - 600),  # this boot's first start
        entry(NOW - 900, "alert: oh no! lost spawn connection! dying...", boot="0ld"),
    ]
    text = status.render_text(report(StatusSystem(root, journal=lines))).splitlines()
    [note] = [line for line in text if line.startswith("note:")]
    assert note == (
        "note: qmail-send lost qmail-lspawn, -rspawn or -clean at "
        f"{status._iso(NOW - 10)} and was restarted: `systemctl kill` signals every process of "
        "the unit (they die of HUP); `systemctl reload qmail-send` passes HUP and ALRM to "
        "qmail-send alone"
    )
    quiet = status.render_text(report(StatusSystem(root, journal=lines[2:])))
    assert "note:" not in quiet  # another boot's


def test_a_running_service_with_no_journal_line_is_not_ok(root: Path) -> None:
    result = report(StatusSystem(root, journal=[]))
    assert problems(result) == [
        f"qmail-send's journal could not be read (journalctl shows no line of {UNIT}, which is "
        "running): its deferrals and failures are not seen"
    ]
    assert problems(report(StatusSystem(root, show=INACTIVE, journal=[]))) == [
        f"{UNIT} is inactive"
    ]


def test_a_line_cut_off_costs_only_itself() -> None:
    """journalctl killed mid-line: the lines before and after it still count."""
    lines = [
        "1799999990.000000 laptop qmail-send[65]: delivery 4: deferral: Sorry,_no_route/",
        "1799999989.5",  # cut off
        "1799999989.000000 laptop qmail-send[65]: starting delivery 4: msg 90 to remote a@x.org",
    ]
    journal, attempts = status.parse_journal(Result(0, "\n".join(lines) + "\n"), Result(0, ""))
    assert journal["entries_read"] == 3
    assert attempts.deferred()[90]["reason"] == "Sorry,_no_route/"
    assert attempts.deferred()[90]["seconds"] == 1799999990.0


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        {"a": [], "b": {}, "c": [{}], "d": [[]]},
        {'quote"back\\slash': "tab\tnewline\ncr\rnul\0bell\x07del\x7f"},
        {"é": "ünïcödé ✓ 日本 \U0001f4e7 \ud800 lone surrogate", "\u2028": "\x85\u2029"},
        {"2": 1, "10": -0, "x": True, "y": False, "z": None},
        {3: "int keys, sorted as numbers", 20: "x", 1: {"a": 1}},
        {True: 1, False: 2},
        {None: 1},
        {1.5: 3, 0.25: 4, float("inf"): 5},
        {"n": [0, -1, 2**70, 1.5, -0.0, 1e300, 1e-300, 0.1, float("nan"), float("inf")]},
        {"t": ("tuple", ("nested", [1, {"deep": {"deeper": ["x"]}}]))},
        ["top", "level", 1, None],
        "just a string",
        42,
    ],
)
def test_the_json_report_is_what_json_dumps_prints(value: Any) -> None:
    """render_json avoids importing json (8 ms of `status --json`): its output is
    json.dumps(indent=2, sort_keys=True)'s, byte for byte, whatever the report holds."""
    assert status.render_json(value) == json.dumps(value, indent=2, sort_keys=True)


def test_a_real_report_as_json_is_what_json_dumps_prints(root: Path) -> None:
    queue = root / "var/qmail/queue"
    add_message(queue, 21, remote=["a@x.org", "b\u00e9@y.org"], sender="s\x1b[2J@evil")
    lines = [
        entry(NOW - 10, "delivery 3: deferral: Sorry,_no_route_\u00e9\t/"),
        entry(NOW - 11, "starting delivery 3: msg 21 to remote b\u00e9@y.org"),
        started(NOW - 3600),
    ]
    result = report(StatusSystem(root, journal=lines))
    assert status.render_json(result) == json.dumps(result, indent=2, sort_keys=True)
    assert json.loads(status.render_json(result)) == json.loads(json.dumps(result))


def test_what_json_cannot_print_is_refused_as_json_does() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        status.render_json({"a": {1, 2}})
    with pytest.raises(TypeError, match="keys must be"):
        status.render_json({(1, 2): "tuple key"})
    with pytest.raises(TypeError, match="not supported between"):  # so does json.dumps
        status.render_json({1: "mixed", "1": "keys"})
