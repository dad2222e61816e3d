"""`status [--json]`: where is my mail? The service, the queue, the smarthost, the last attempts.

Read-only. The queue is read straight from queue/ as qmail-qstat(8) and qmail-qread(8) read it
(qmail's INTERNALS, "Queue structure"): every message has mess/S/N (S = N % conf-split); todo/N
while it waits to be preprocessed (intd/N while qmail-queue still writes it); once preprocessed
info/S/N, holding `F` and the envelope sender, and local/S/N and remote/S/N, its recipients of
that channel, which qmail-send removes once all of them are done (qmail-send.c's job_close):
so a listing of local/ and remote/ tells how many messages still have deliveries to do on each
channel, without opening one. The message's age is info/'s mtime (what qmail-qread prints and
qmail-send's queuelifetime counts from), or mess/'s for a message not yet preprocessed.
queue/ is 0750 qmailq:qmail and info/, local/, remote/ 0700 qmails: what this user cannot read
is named in the report, never a traceback.

Exit 0 when nothing needs attention, 1 when something does (service down, mail queued for more
than an hour, a queued message whose last delivery attempt was deferred, or a part of the
picture that could not be seen: the journal or the queue unreadable as this user), each with a
one-line fix. It never says "ok" about what it could not see.

Fast on a large queue (the bench's aim: 100 ms for 10,000 messages): the queue is counted from
directory listings, each split directory opened once and info/'s files stat'ed relative to it
(where conf-split puts each message of mess/: info/ is not listed), in one thread (two contend
for the GIL at every stat: slower); one file is read (the oldest message's sender). What
journalctl and systemctl say is found meanwhile by a child process (System.beside, `_live`);
qmail-send's lines are asked for in journalctl's short-unix form (a time and a text each),
systemd's few in its export form. Nothing that status imports pulls in json, re, pathlib,
enum or subprocess (most of a start's imports), and --json is written without json.
"""

from __future__ import annotations

import os
import pwd
import time

from qmail_send_systemd import submission_state  # a revoked grant, a refused sender
from qmail_send_systemd.submission import missing_line, missing_programs
from qmail_send_systemd.systemd import REVIVE, UNIT

TYPE_CHECKING = False  # not typing's: see start.py
if TYPE_CHECKING:
    from collections.abc import Callable

    from qmail_send_systemd.systemd import Result, System

QUEUE = "var/qmail/queue"
SMTPROUTES = "var/qmail/control/smtproutes"
# Where qmail keeps a message's files in conf-split subdirectories (hier.c's dsplit calls),
# besides mess/ and info/ (read by _Split): the channels', only counted.
CHANNELS = ("local", "remote")
SERVICE_PROPERTIES = (
    "LoadState",
    "ActiveState",
    "SubState",
    "ActiveEnterTimestamp",
    "MainPID",
    "NRestarts",
    "ConditionResult",
)
# How far back in qmail-send's journal to look for the latest delivery results.
JOURNAL_LINES = 5000
STALE_AFTER = 3600  # seconds: "mail older than an hour still queued"
# systemd's catalogue (sd-messages.h): a start job of the unit done, a restart scheduled.
UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"
RESTART_SCHEDULED = "5eb03494b6584870a536b337290809b3"
# Where journald keeps the system journal (persistent, volatile): who can read it sees qmail-send.
JOURNAL_DIRS = ("var/log/journal", "run/log/journal")
# Queued messages whose last attempt was deferred: how many of them the report names.
SHOWN_DEFERRED = 10
AS_ROOT = "as root: qmail-send-systemd status"


class Queue:
    """What the queue holds, and what of it could not be read."""

    def __init__(self) -> None:
        self.messages = 0
        self.unprocessed = 0  # todo/: not yet preprocessed by qmail-send
        self.being_queued = 0  # intd/ without todo/: qmail-queue is still writing it
        # Messages with deliveries still to do, per channel: local/N and remote/N exist until
        # every recipient of that channel is done (a message may be in both).
        self.with_deliveries = {"local": 0, "remote": 0}
        self.oldest: dict[str, object] | None = None
        self.not_read: list[str] = []
        self.counted = False  # mess/ could be listed: the counts mean something
        self.numbers: set[int] = set()  # every queued message (mess/), for the journal's view

    def as_dict(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "not_yet_preprocessed": self.unprocessed,
            "being_queued": self.being_queued,
            "with_deliveries_to_do": dict(self.with_deliveries),
            "oldest": self.oldest,
            "not_read": self.not_read,
            "counted": self.counted,
        }


def _failure(result: Result) -> str:
    """Why a command failed, in a line: its stderr's first, or its exit status."""
    return (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[0]


def _why(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


class _Split:
    """queue/NAME/*/: each subdirectory open once, so that a message's file is stat'ed or
    opened relative to it (no path walk per file); listed (its message files' names), or,
    with `listed=False` and subdirectories named 0 to conf-split - 1, only opened: a message
    N's file is then in N % conf-split, and is found without a listing."""

    def __init__(self, queue: str, name: str, found: Queue, *, listed: bool = True) -> None:
        self.fds: list[int] = []
        self.dirs: list[tuple[int, list[str]]] = []  # (directory fd, its message files)
        self.by_split: dict[int, int] = {}  # N % conf-split -> directory fd, when not listed
        self.read = False
        self.complete = False  # every subdirectory opened, and listed unless by_split
        top = f"{queue}/{name}"
        try:
            subdirs = os.listdir(top)
        except OSError as exc:
            found.not_read.append(f"{top}: {_why(exc)}")
            return
        self.read = True
        opened: dict[str, int] = {}
        for sub in subdirs:
            try:
                opened[sub] = os.open(f"{top}/{sub}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                found.not_read.append(f"{top}/{sub}: {_why(exc)}")
        self.fds = list(opened.values())
        self.complete = len(opened) == len(subdirs)
        if not listed and self.complete and set(opened) == {str(i) for i in range(len(opened))}:
            self.by_split = {int(sub): fd for sub, fd in opened.items()}
            return
        for sub, fd in opened.items():
            try:
                names = os.listdir(fd)
            except OSError as exc:
                found.not_read.append(f"{top}/{sub}: {_why(exc)}")
                self.complete = False
                continue
            self.dirs.append((fd, [entry for entry in names if entry.isdecimal()]))

    def numbers(self) -> set[int]:
        return {int(entry) for _, names in self.dirs for entry in names}

    def find(self, number: int) -> tuple[int, str] | None:
        """Message NUMBER's file: its directory's fd and its name."""
        name = str(number)
        if self.by_split:
            return self.by_split[number % len(self.by_split)], name
        return next(((fd, name) for fd, names in self.dirs if name in names), None)

    def births_at(self, numbers: set[int], found: list[int]) -> dict[int, float]:
        """Number -> mtime of the file of each of `numbers` that exists where conf-split puts
        it (by_split); each one that could not be stat'ed otherwise is counted in found[0]."""
        births = {}
        stat = os.stat
        dirs = self.by_split
        split = len(dirs)
        for number in numbers:
            try:
                births[number] = stat(str(number), dir_fd=dirs[number % split]).st_mtime
            except FileNotFoundError:
                continue
            except OSError:
                found[0] += 1
        return births

    def births(self, numbers: set[int] | None, found: list[int]) -> dict[int, float]:
        """Number -> mtime of each file (of `numbers` only, when given); each file that
        could not be stat'ed is counted in found[0]."""
        births = {}
        stat = os.stat
        for fd, names in self.dirs:
            for name in names:
                number = int(name)
                if numbers is not None and number not in numbers:
                    continue
                try:
                    births[number] = stat(name, dir_fd=fd).st_mtime
                except OSError:
                    found[0] += 1
        return births

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def _flat_entries(queue: str, name: str, found: Queue) -> set[int] | None:
    try:
        return {int(n) for n in os.listdir(f"{queue}/{name}") if n.isdecimal()}
    except OSError as exc:
        found.not_read.append(f"{queue}/{name}: {_why(exc)}")
        return None


def _count_split(queue: str, name: str, found: Queue) -> int:
    """How many messages queue/NAME/*/ holds, from the listings alone."""
    top = f"{queue}/{name}"
    try:
        subdirs = os.listdir(top)
    except OSError as exc:
        found.not_read.append(f"{top}: {_why(exc)}")
        return 0
    count = 0
    for sub in subdirs:
        try:
            count += sum(1 for entry in os.listdir(f"{top}/{sub}") if entry.isdigit())
        except OSError as exc:
            found.not_read.append(f"{top}/{sub}: {_why(exc)}")
    return count


def _read_at(directory: int, name: str) -> bytes:
    """A small queue file (info/'s sender), relative to its open directory."""
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=directory)
    try:
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def read_queue(root: str | os.PathLike[str], now: float) -> Queue:
    """Count the queue as qmail-qstat and qmail-qread would, under `root`."""
    found = Queue()
    queue = os.path.join(root, QUEUE)
    try:
        os.stat(queue)
    except OSError as exc:
        found.not_read.append(f"{queue}: {_why(exc)}")
        return found
    mess = _Split(queue, "mess", found)
    # mess/ listed whole: info/ is not listed, each message's file is stat'ed where conf-split
    # puts it (a listing of 10,000 names less). Else info/ is listed, and each file in it aged.
    info = _Split(queue, "info", found, listed=not mess.complete)
    try:
        _tally(found, queue, mess, info, now)
    finally:
        mess.close()
        info.close()
    return found


def _tally(found: Queue, queue: str, mess: _Split, info: _Split, now: float) -> None:
    todo = _flat_entries(queue, "todo", found)
    intd = _flat_entries(queue, "intd", found)
    numbers = mess.numbers()
    if mess.read:
        found.messages = len(numbers)
        found.numbers = numbers
        found.counted = True
    if todo is not None:
        found.unprocessed = len(todo)
        if intd is not None:
            found.being_queued = len(intd - todo)
    unreadable = [0]
    # Number -> info/'s mtime, or mess/'s for a message without info/ (not yet preprocessed).
    births = info.births_at(numbers, unreadable) if info.by_split else info.births(None, unreadable)
    from_info = set(births)
    without_info = numbers - from_info
    if without_info:
        births.update(mess.births(without_info, unreadable))
    for channel in CHANNELS:
        found.with_deliveries[channel] = _count_split(queue, channel, found)
    if unreadable[0]:
        found.not_read.append(f"{queue}: {unreadable[0]} message files could not be read")
    if births:
        number, birth = min(births.items(), key=lambda item: (item[1], item[0]))
        found.oldest = {
            "message": number,
            "age_seconds": max(0, int(now - birth)),
            "queued_at": _iso(birth),
            "from": _sender(info, number) if number in from_info else None,
        }


def _sender(info: _Split, number: int) -> str | None:
    """info/'s envelope sender (`F` + address + NUL), as qmail-qread prints it."""
    where = info.find(number)
    if where is None:
        return None
    try:
        data = _read_at(*where)
    except OSError:
        return None
    if not data.startswith(b"F"):
        return None
    return printable(data[1:].split(b"\0", 1)[0].decode("utf-8", "replace"))


def printable(text: str) -> str:
    """TEXT with every character outside printable ASCII as `_`, as qmail-qread prints it:
    an envelope sender or a remote server's reply cannot move the terminal's cursor."""
    return "".join(c if " " <= c <= "~" else "_" for c in text)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(seconds))


def read_smarthost(root: str | os.PathLike[str]) -> dict[str, object]:
    """control/smtproutes' default route (`:host[:port]`), as qmail-remote(8) uses it."""
    path = os.path.join(root, SMTPROUTES)
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read()
    except FileNotFoundError:
        return {"route": None, "file": path, "note": "no control/smtproutes"}
    except OSError as exc:
        return {"route": None, "file": path, "not_read": _why(exc)}
    routes = [line.strip() for line in text.splitlines() if line.strip()]
    default = next((r[1:] for r in routes if r.startswith(":")), None)
    return {
        "route": default or None,
        "file": path,
        "domain_routes": len([r for r in routes if not r.startswith(":")]),
    }


def _service(result: Result) -> dict[str, str]:
    """`systemctl show` of the unit (see _live): state, since when, main PID, NRestarts."""
    if not result.ok:
        return {"not_read": f"systemctl show: {_failure(result)}"}
    shown = dict(line.partition("=")[::2] for line in result.stdout.splitlines() if "=" in line)
    return {key: shown.get(key, "") for key in SERVICE_PROPERTIES}


class Attempts:
    """qmail-send's journal lines, oldest first: the last attempt for each recipient of each
    message (`starting delivery D: msg M to local|remote R`, then `delivery D: RESULT: text`),
    forgotten at `end msg M` (done) and at `new msg M` (a new message with a reused number)."""

    def __init__(self) -> None:
        self.started: dict[str, tuple[int, str]] = {}  # delivery number -> (message, recipient)
        self.last: dict[int, dict[str, dict[str, object]]] = {}  # message -> recipient -> attempt

    def line(self, seconds: float, text: str) -> None:
        if text.startswith("starting delivery "):
            delivery, _, rest = text[len("starting delivery ") :].partition(": msg ")
            message, _, recipient = rest.partition(" to ")
            if delivery.isdecimal() and message.isdecimal():
                self.started[delivery] = (int(message), recipient)  # "remote a@example.org"
        elif text.startswith("delivery "):
            delivery, _, rest = text[len("delivery ") :].partition(": ")
            result, _, reason = rest.partition(": ")
            which = self.started.pop(delivery, None)
            if which is not None and result in ("success", "deferral", "failure"):
                number, recipient = which
                channel, _, address = recipient.partition(" ")
                self.last.setdefault(number, {})[recipient] = {
                    "message": number,
                    "channel": channel,
                    "recipient": address,
                    "result": result,
                    "seconds": seconds,  # as the journal's time: made a date only if shown
                    "reason": reason,
                }
        elif text.startswith(("new msg ", "end msg ")):
            ended = text[len("end msg ") :].partition(" ")[0]
            if ended.isdecimal():
                self.last.pop(int(ended), None)

    def deferred(self) -> dict[int, dict[str, object]]:
        """Message -> its newest deferral, for the messages one of whose recipients' last
        attempt was deferred."""
        found = {}
        for message, recipients in self.last.items():
            deferrals = [a for a in recipients.values() if a["result"] == "deferral"]
            if deferrals:
                found[message] = max(deferrals, key=_seconds)
        return found


def _seconds(attempt: dict[str, object]) -> float:
    return float(str(attempt["seconds"]))


def _deliveries(messages: list[tuple[float, str]]) -> dict[str, dict[str, object] | None]:
    """The latest `delivery N: RESULT: text` line of each result, newest first in `messages`."""
    latest: dict[str, dict[str, object] | None] = {
        "success": None,
        "deferral": None,
        "failure": None,
    }
    last_result = None
    for seconds, text in messages:
        if not text.startswith("delivery "):
            continue
        head, _, rest = text.partition(": ")
        result, _, reason = rest.partition(": ")
        if result not in latest or not head[len("delivery ") :].isdigit():
            continue
        last_result = last_result or result
        if latest[result] is None:
            latest[result] = {"time": _iso(seconds), "line": text, "reason": reason}
    return {**latest, "latest": {"result": last_result} if last_result else None}


# qmail-send's own lines (the helper relays them as the unit's main process), newest first:
# deliveries, messages' ends, its alerts. short-unix and not JSON: status reads only each line's
# time and text, and JSON (a cursor and four timestamps per line) costs journalctl twice the
# CPU. --all: a line that is not UTF-8 is printed, not replaced by "[blob data]"; --quiet: no
# "-- Boot --" separators between boots.
DELIVERY_LINES = [
    "journalctl", f"_SYSTEMD_UNIT={UNIT}", "-o", "short-unix", "-r", "-n", str(JOURNAL_LINES),
    "--all", "--quiet", "--no-pager",
]  # fmt: skip
# systemd's own lines about the unit in this boot (PID 1's, as `journalctl -u` includes them):
# its starts and its scheduled restarts, a few per start, all of the boot. Export form (each
# entry's fields as FIELD=value lines, then an empty line): read without a JSON parser, whose
# import (json and re) is 9 ms of status's start.
SYSTEMD_LINES = [
    "journalctl", "-b", "_PID=1", f"UNIT={UNIT}", "-o", "export", "--output-fields=MESSAGE_ID",
    "--no-pager",
]  # fmt: skip
# What status looks for in qmail-send's lines (Attempts, _deliveries, the lost helpers).
# qmail-send's alert when it lost qmail-lspawn, -rspawn or -clean ("spawn" or "qmail-clean").
LOST_HELPER = "alert: oh no! lost "
_WANTED = ("starting delivery ", "delivery ", "new msg ", "end msg ", LOST_HELPER)


def journal_readable(
    root: str | os.PathLike[str], euid: int, access: Callable[[str, int], bool] = os.access
) -> bool | None:
    """Whether this user can read the system journal (None: no journal file to judge by).
    journalctl need not say so (its JSON output, the form status read before 1.2.0, carries no
    hint): it just leaves the lines out. access()
    and not the mode bits: journald gives groups adm and wheel read access by ACLs."""
    if euid == 0:
        return True
    seen = False
    for top in JOURNAL_DIRS:
        try:
            machines = os.listdir(os.path.join(root, top))
        except OSError:
            continue
        for machine in machines:
            path = os.path.join(root, top, machine, "system.journal")
            if os.path.exists(path):
                seen = True
                if access(path, os.R_OK):
                    return True
    return False if seen else None


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _lines(result: Result) -> tuple[int, list[tuple[float, str]]]:
    """`journalctl -o short-unix` output: how many entries, and the time and text of those
    that matter (`SECONDS.MICROS HOST IDENTIFIER[PID]: TEXT`). A line that does not start with
    a time continues a multi-line message, and is not one of qmail-send's."""
    read = 0
    found = []
    for line in result.stdout.splitlines():
        stamp, _, rest = line.partition(" ")
        whole, dot, fraction = stamp.partition(".")
        if not (whole.isdecimal() and dot and fraction.isdecimal()):
            continue
        read += 1
        text = rest.partition(": ")[2]
        if text.startswith(_WANTED):
            found.append((float(stamp), text))
    return read, found


def _systemd_lines(result: Result) -> tuple[int, int, float | None]:
    """Starts, restarts scheduled and the first line's time, from SYSTEMD_LINES' output."""
    starts = scheduled = 0
    first = None
    for text in result.stdout.split("\n\n"):
        entry = dict(line.partition("=")[::2] for line in text.split("\n"))
        stamp = entry.get("__REALTIME_TIMESTAMP", "")
        if not stamp.isdecimal():
            continue
        seconds = int(stamp) / 1e6
        first = seconds if first is None else min(first, seconds)
        if entry.get("MESSAGE_ID") == UNIT_STARTED:
            starts += 1
        elif entry.get("MESSAGE_ID") == RESTART_SCHEDULED:
            scheduled += 1
    return starts, scheduled, first


def parse_journal(deliveries: Result, systemd: Result) -> tuple[dict[str, object], Attempts]:
    """The journal's report (the latest results, starts since boot) and each message's last
    attempts, from the output of DELIVERY_LINES and SYSTEMD_LINES."""
    attempts = Attempts()
    if not deliveries.ok:
        return {"not_read": f"journalctl: {_failure(deliveries)}"}, attempts
    read, messages = _lines(deliveries)
    for seconds, text in reversed(messages):
        attempts.line(seconds, text)
    journal: dict[str, object] = dict(_deliveries(messages))
    journal["entries_read"] = read
    boot_began = None
    if systemd.ok:
        starts, scheduled, boot_began = _systemd_lines(systemd)
        journal["since_boot"] = {"starts": starts, "restarts_scheduled": scheduled}
    # qmail-send's alert that it lost a helper, when it came after the unit's first line of
    # this boot (no such line: no boot to compare with, and no note).
    lost = next((s for s, text in messages if text.startswith(LOST_HELPER)), None)
    journal["helpers_lost"] = (
        _iso(lost) if lost is not None and boot_began is not None and lost >= boot_began else None
    )
    if not read and "not seeing messages from other users" in deliveries.stderr:
        journal["not_read"] = "this user cannot read the system journal"
    return journal, attempts


def _count(number: object, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h {minutes % 60} min" if hours < 48 else f"{hours // 24} days"


def attention(report: dict[str, object]) -> list[dict[str, str]]:
    """What needs the administrator, each with its one-line fix."""
    found = []
    service = report["service"]
    assert isinstance(service, dict)
    if service.get("LoadState") == "not-found":
        found.append(
            {
                "problem": f"{UNIT} is not installed",
                "fix": "install the qmail-send-systemd package (apt install / dnf install)",
            }
        )
    elif "ActiveState" in service and service["ActiveState"] not in ("active", "reloading"):
        problem = f"{UNIT} is {service['ActiveState']}"
        if service.get("ConditionResult") == "no":
            fix = "qmail is missing or broken: as root, qmail-send-systemd verify"
        elif service.get("SubState", "").startswith("auto-restart"):
            # Down after a failure, restarted every RestartSec= by systemd itself.
            problem = f"{UNIT} is down after a failure, waiting to be restarted"
            fix = (
                "`journalctl -u qmail-send -b -p err` says why it fails (and `qmail-send-systemd "
                "verify` as root); it restarts by itself once that is fixed"
            )
        elif service["ActiveState"] == "failed":
            fix = f"as root: {REVIVE} (`journalctl -u qmail-send -e`: why it failed)"
        else:
            fix = "as root: systemctl start qmail-send (`journalctl -u qmail-send -e`: why it "
            fix += "stopped)"
        found.append({"problem": problem, "fix": fix})
    elif service.get("not_read") and not service.get("skipped"):
        found.append(
            {
                "problem": f"the service's state could not be read ({service['not_read']})",
                "fix": AS_ROOT,
            }
        )
    queue = report["queue"]
    assert isinstance(queue, dict)
    if queue["not_read"]:
        what = (
            "the queue could not be read"
            if not queue["counted"]
            else "part of the queue could not be read"
        )
        found.append({"problem": f"{what} as this user ({queue['not_read'][0]})", "fix": AS_ROOT})
    oldest = queue.get("oldest")
    if isinstance(oldest, dict) and int(str(oldest["age_seconds"])) > STALE_AFTER:
        found.append(
            {
                "problem": f"message {oldest['message']} has waited "
                f"{_duration(int(str(oldest['age_seconds'])))} in the queue",
                "fix": "see the latest deferral; once online, as root: qmail-send-systemd flush",
            }
        )
    deferred = report.get("deferred")
    if isinstance(deferred, dict) and deferred["messages"]:
        shown = deferred["shown"]
        assert isinstance(shown, list) and shown
        newest = shown[0]
        found.append(
            {
                "problem": f"{_count(deferred['messages'], 'queued message')} whose last delivery "
                f"attempt was deferred (latest: message {newest['message']} to "
                f"{newest['channel']} {printable(str(newest['recipient']))} at {newest['time']}: "
                f"{printable(str(newest['reason']))})",
                "fix": "fix what the reason says, then, as root: qmail-send-systemd flush",
            }
        )
    route = report.get("route")
    if isinstance(route, list):
        for program in route:
            problem, fix = missing_line(str(program))
            found.append({"problem": problem, "fix": fix})
    journal = report["journal"]
    assert isinstance(journal, dict)
    if journal.get("not_read") and not journal.get("skipped"):
        found.append(
            {
                "problem": f"qmail-send's journal could not be read ({journal['not_read']}): "
                "its deferrals and failures are not seen",
                "fix": journal.get("fix") or AS_ROOT,
            }
        )
    found += report.get("submission", [])  # type: ignore[arg-type]
    return found


def deferred_messages(
    deferred: dict[int, dict[str, object]], queue: dict[str, object], numbers: set[int]
) -> dict[str, object]:
    """The queued messages whose last attempt (of any recipient) was deferred (Attempts'
    `deferred()`), newest first, the first SHOWN_DEFERRED with their time as a date. With the
    queue unread, every message the journal has not seen end."""
    found = deferred
    if queue["counted"]:
        found = {m: a for m, a in found.items() if m in numbers}
    ordered = sorted(
        found.values(), key=lambda a: (_seconds(a), int(str(a["message"]))), reverse=True
    )
    shown = []
    for attempt in ordered[:SHOWN_DEFERRED]:
        dated = {key: value for key, value in attempt.items() if key != "seconds"}
        dated["time"] = _iso(_seconds(attempt))
        shown.append(dated)
    return {"messages": len(found), "shown": shown}


def check(
    system: System,
    *,
    live: bool | None = None,
    now: float | None = None,
    euid: int | None = None,
    access: Callable[[str, int], bool] = os.access,
) -> dict[str, object]:
    """The whole report. The service and the journal only for the running system (root /,
    unless `live` says otherwise): under --root they are not the tree's. What the running
    system says (`_live`) is found beside, in a child process, while the queue is read."""
    root = system.root_dir
    live = system.is_live_root() if live is None else live
    skipped = {"not_read": f"--root {root} is not the running system", "skipped": True}
    service: dict[str, object] = dict(skipped)
    journal_report: dict[str, object] = dict(skipped)
    deferred: dict[int, dict[str, object]] = {}
    beside = None
    if live:
        readable = journal_readable(root, os.geteuid() if euid is None else euid, access)
        if readable is False:
            user = _user()
            journal_report = {
                "not_read": f"{user} cannot read the system journal",
                "fix": f"{AS_ROOT}; or let {user} read it: as root, usermod -a -G "
                f"systemd-journal {user} (from {user}'s next login)",
            }
        beside = system.beside(lambda: _live(system, read_journal=readable is not False))
    queue = read_queue(root, time.time() if now is None else now)
    if beside is not None:
        unit, journal_read, deferred = beside()
        service = dict(unit)
        journal_report = journal_read or journal_report
    report: dict[str, object] = {
        "service": service,
        "queue": queue.as_dict(),
        "smarthost": read_smarthost(root),
        "journal": journal_report,
        "route": missing_programs(root),  # the submission route's, when set up
    }
    report["submission"] = submission_state.attention(root)
    _no_lines_seen(report)
    report["deferred"] = deferred_messages(deferred, report["queue"], queue.numbers)  # type: ignore[arg-type]
    report["attention"] = attention(report)
    return report


def _live(
    system: System, *, read_journal: bool
) -> tuple[dict[str, str], dict[str, object] | None, dict[int, dict[str, object]]]:
    """What the running system says: the unit's state, the journal's report (None: not read)
    and the queued messages' deferrals (Attempts' `deferred()`). journalctl and systemctl run
    at once, the longest first: it has the most to print."""
    journal = (system.start(DELIVERY_LINES), system.start(SYSTEMD_LINES)) if read_journal else None
    shown = system.start(["systemctl", "show", "-p", ",".join(SERVICE_PROPERTIES), UNIT])
    service = _service(shown())
    if journal is None:
        return service, None, {}
    report, attempts = parse_journal(journal[0](), journal[1]())
    return service, report, attempts.deferred()


def _no_lines_seen(report: dict[str, object]) -> None:
    """A running service has written lines (its start, qmail-send's first status line): a
    journal that shows none of them was not seen, whatever the reason (no journal kept, no
    access that the files could tell)."""
    service, journal = report["service"], report["journal"]
    assert isinstance(service, dict) and isinstance(journal, dict)
    if (
        journal.get("entries_read") == 0
        and not journal.get("not_read")
        and service.get("ActiveState") == "active"
    ):
        journal["not_read"] = f"journalctl shows no line of {UNIT}, which is running"
        journal["fix"] = f"{AS_ROOT}; check that journald keeps the log (journalctl -u {UNIT})"


def render_json(report: object) -> str:
    """The report as `json.dumps(report, indent=2, sort_keys=True)` prints it, byte for byte,
    without importing json: its import compiles regular expressions (json and re: 8 ms of
    the 90 that `status --json` takes on a large queue). Strings are escaped by the function
    that json.dumps itself calls, from CPython's `_json`; without it, json is imported."""
    try:
        from _json import encode_basestring_ascii as quote
    except ImportError:  # not CPython
        import json

        return json.dumps(report, indent=2, sort_keys=True)
    out: list[str] = []
    _json_value(report, "\n", quote, out)
    return "".join(out)


def _json_value(value: object, newline: str, quote: Callable[[str], str], out: list[str]) -> None:
    """VALUE as json.dumps writes it with indent=2 and sort_keys, at the depth that `newline`
    (a newline and that depth's indentation) gives."""
    if isinstance(value, str):
        out.append(quote(value))
    elif value is None or isinstance(value, (bool, int, float)):
        out.append(_json_scalar(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = newline + "  "
        out.append("{")
        for i, (key, item) in enumerate(sorted(value.items())):
            out.append(("," if i else "") + inner + quote(_json_key(key)) + ": ")
            _json_value(item, inner, quote, out)
        out.append(newline + "}")
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        inner = newline + "  "
        out.append("[")
        for i, item in enumerate(value):
            out.append(("," if i else "") + inner)
            _json_value(item, inner, quote, out)
        out.append(newline + "]")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json_scalar(value: bool | int | float | None) -> str:
    """null, true, false or a number, as json.dumps writes it (a value, or a dict key)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return int.__repr__(value)
    if value != value:  # noqa: PLR0124 - NaN, as json writes it
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _json_key(key: object) -> str:
    """A dict key as json.dumps makes it a string."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return _json_scalar(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _restarts(service: dict[str, str], journal: dict[str, object]) -> str:
    """What the journal says of this boot's starts, or NRestarts for what it is."""
    since = journal.get("since_boot")
    if isinstance(since, dict):
        return (
            f"started {_count(since['starts'], 'time')} since boot "
            f"({_count(since['restarts_scheduled'], 'automatic restart')} scheduled)"
        )
    count = service.get("NRestarts") or "0"
    return f"NRestarts={count} (systemd's automatic restarts since the last manual start)"


def _service_line(service: dict[str, str], journal: dict[str, object]) -> str:
    if "not_read" in service:
        return f"service: not read ({service['not_read']})"
    if service.get("LoadState") == "not-found":
        return f"service: {UNIT} is not installed"
    line = f"service: {UNIT} {service['ActiveState']} ({service['SubState']})"
    if service.get("ActiveEnterTimestamp"):
        line += f" since {service['ActiveEnterTimestamp']}"
    if service.get("MainPID") not in ("", "0"):
        line += f", main PID {service['MainPID']}"
    return line + ", " + _restarts(service, journal)


def _queue_line(queue: dict[str, object]) -> str:
    if not queue["counted"]:
        return "queue: not counted (see below)"
    todo = queue["with_deliveries_to_do"]
    assert isinstance(todo, dict)
    line = (
        f"queue: {_count(queue['messages'], 'message')}, {queue['not_yet_preprocessed']} not yet "
        f"preprocessed, {todo['local']} with local and {todo['remote']} with remote deliveries "
        "to do"
    )
    oldest = queue["oldest"]
    if isinstance(oldest, dict):
        line += f"; oldest: message {oldest['message']}"
        if oldest.get("from") is not None:
            line += f" from <{oldest['from']}>"
        line += f", queued {_duration(int(str(oldest['age_seconds'])))} ago"
    return line


def _smarthost_line(smarthost: dict[str, object]) -> str:
    if "not_read" in smarthost:
        return f"smarthost: not read ({smarthost['file']}: {smarthost['not_read']})"
    if smarthost["route"]:
        return f"smarthost: {smarthost['route']} (the default route of {smarthost['file']})"
    why = "no such file" if "note" in smarthost else "it has no `:host` line"
    return f"smarthost: none: remote mail goes to each domain's MX ({smarthost['file']}: {why})"


def _journal_lines(journal: dict[str, object]) -> list[str]:
    if "entries_read" not in journal:
        return [f"journal: not read ({journal['not_read']})"]
    lines = []
    for result in ("deferral", "failure"):
        seen = journal[result]
        if isinstance(seen, dict):
            lines.append(f"latest {result}: {seen['time']} {printable(str(seen['line']))}")
        else:
            lines.append(f"latest {result}: none in qmail-send's last {JOURNAL_LINES} lines")
    if journal.get("helpers_lost"):
        lines.append(
            f"note: qmail-send lost qmail-lspawn, -rspawn or -clean at {journal['helpers_lost']} "
            "and was restarted: `systemctl kill` signals every process of the unit (they die "
            "of HUP); `systemctl reload qmail-send` passes HUP and ALRM to qmail-send alone"
        )
    return lines


def render_text(report: dict[str, object]) -> str:
    service, queue = report["service"], report["queue"]
    smarthost, journal = report["smarthost"], report["journal"]
    assert isinstance(service, dict) and isinstance(queue, dict)
    assert isinstance(smarthost, dict) and isinstance(journal, dict)
    lines = [_service_line(service, journal), _queue_line(queue)]
    for what in queue["not_read"]:
        lines.append(f"queue: not read: {what}")
    lines += [_smarthost_line(smarthost), *_journal_lines(journal)]
    problems = report["attention"]
    assert isinstance(problems, list)
    for problem in problems:
        lines.append(f"attention: {problem['problem']} (fix: {problem['fix']})")
    if not problems:
        skipped = [name for name in ("service", "journal") if report[name].get("skipped")]  # type: ignore[attr-defined]
        if skipped:
            lines.append(
                "ok: nothing needs attention in the queue and the smarthost (the "
                f"{' and the '.join(skipped)} are the running system's: not looked at)"
            )
        else:
            lines.append("ok: nothing needs attention")
    return "\n".join(lines)


def needs_attention(report: dict[str, object]) -> bool:
    return bool(report["attention"])
