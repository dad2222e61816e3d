"""`status [--json]`: where is my mail? The service, the queue, the smarthost, the last attempts.

Read-only. The queue is read straight from queue/ as qmail-qstat(8) and qmail-qread(8) read it
(qmail's INTERNALS, "Queue structure"): every message has mess/S/N (S = N % conf-split); todo/N
while it waits to be preprocessed (intd/N while qmail-queue still writes it); once preprocessed
info/S/N, holding `F` and the envelope sender, and local/S/N and remote/S/N, one NUL-terminated
record per recipient, `T` while its delivery is still to do and `D` once done. The message's
age is info/'s mtime (what qmail-qread prints and qmail-send's queuelifetime counts from), or
mess/'s for a message not yet preprocessed. queue/ is 0750 qmailq:qmail and info/, local/,
remote/ 0700 qmails: what this user cannot read is named in the report, never a traceback.

Exit 0 when nothing needs attention, 1 when something does (service down, mail queued for more
than an hour, the latest delivery attempt deferred while mail is still queued), each with a
one-line fix.
"""

from __future__ import annotations

import json
import os
import time

from qmail_send_systemd import submission_state  # a revoked grant, a refused sender
from qmail_send_systemd.systemd import REVIVE, UNIT

TYPE_CHECKING = False  # not typing's: see start.py
if TYPE_CHECKING:
    from pathlib import Path

    from qmail_send_systemd.systemd import System

QUEUE = "var/qmail/queue"
SMTPROUTES = "var/qmail/control/smtproutes"
# Where qmail keeps a message's files in conf-split subdirectories (hier.c's dsplit calls).
SPLIT_DIRS = ("mess", "info", "local", "remote")
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


class Queue:
    """What the queue holds, and what of it could not be read."""

    def __init__(self) -> None:
        self.messages = 0
        self.unprocessed = 0  # todo/: not yet preprocessed by qmail-send
        self.being_queued = 0  # intd/ without todo/: qmail-queue is still writing it
        self.to_do = {"local": 0, "remote": 0}  # recipients whose delivery is still to do
        self.done = 0  # recipients done, in messages still queued
        self.oldest: dict[str, object] | None = None
        self.not_read: list[str] = []
        self.counted = False  # mess/ could be listed: the counts mean something

    def as_dict(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "not_yet_preprocessed": self.unprocessed,
            "being_queued": self.being_queued,
            "recipients_to_do": dict(self.to_do),
            "recipients_done": self.done,
            "oldest": self.oldest,
            "not_read": self.not_read,
            "counted": self.counted,
        }


def _why(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


def _split_entries(queue: str, name: str, found: Queue) -> dict[int, str] | None:
    """Message number -> path of every file under queue/NAME/*/ (None: NAME unreadable)."""
    top = f"{queue}/{name}"
    try:
        subdirs = os.listdir(top)
    except OSError as exc:
        found.not_read.append(f"{top}: {_why(exc)}")
        return None
    entries: dict[int, str] = {}
    for sub in subdirs:
        try:
            names = os.listdir(f"{top}/{sub}")
        except OSError as exc:
            found.not_read.append(f"{top}/{sub}: {_why(exc)}")
            continue
        for entry in names:
            if entry.isdigit():
                entries[int(entry)] = f"{top}/{sub}/{entry}"
    return entries


def _flat_entries(queue: str, name: str, found: Queue) -> set[int] | None:
    try:
        return {int(n) for n in os.listdir(f"{queue}/{name}") if n.isdigit()}
    except OSError as exc:
        found.not_read.append(f"{queue}/{name}: {_why(exc)}")
        return None


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def read_queue(root: Path, now: float) -> Queue:
    """Count the queue as qmail-qstat and qmail-qread would, under `root`."""
    found = Queue()
    queue = str(root / QUEUE)
    try:
        os.stat(queue)
    except OSError as exc:
        found.not_read.append(f"{queue}: {_why(exc)}")
        return found
    mess = _split_entries(queue, "mess", found)
    todo = _flat_entries(queue, "todo", found)
    intd = _flat_entries(queue, "intd", found)
    info = _split_entries(queue, "info", found)
    if mess is not None:
        found.messages = len(mess)
        found.counted = True
    if todo is not None:
        found.unprocessed = len(todo)
        if intd is not None:
            found.being_queued = len(intd - todo)
    channels = {c: _split_entries(queue, c, found) for c in ("local", "remote")}
    unreadable = 0
    births: dict[int, tuple[float, str]] = {}  # number -> (mtime, which file it is from)
    for number, path in (info or {}).items():
        try:
            births[number] = (os.stat(path).st_mtime, "info")
        except OSError:
            unreadable += 1
    for number, path in (mess or {}).items():
        if number not in births:
            try:
                births[number] = (os.stat(path).st_mtime, "mess")
            except OSError:
                unreadable += 1
    for channel, files in channels.items():
        for path in (files or {}).values():
            try:
                records = _read(path).split(b"\0")
            except OSError:
                unreadable += 1
                continue
            found.to_do[channel] += sum(1 for r in records if r[:1] == b"T")
            found.done += sum(1 for r in records if r[:1] == b"D")
    if unreadable:
        found.not_read.append(f"{queue}: {unreadable} message files could not be read")
    if births:
        number, (birth, source) = min(births.items(), key=lambda item: (item[1][0], item[0]))
        found.oldest = {
            "message": number,
            "age_seconds": max(0, int(now - birth)),
            "queued_at": _iso(birth),
            "from": _sender(info, number) if source == "info" else None,
        }
    return found


def _sender(info: dict[int, str] | None, number: int) -> str | None:
    """info/'s envelope sender (`F` + address + NUL), as qmail-qread prints it."""
    try:
        data = _read((info or {})[number])
    except (OSError, KeyError):
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


def read_smarthost(root: Path) -> dict[str, object]:
    """control/smtproutes' default route (`:host[:port]`), as qmail-remote(8) uses it."""
    path = root / SMTPROUTES
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {"route": None, "file": str(path), "note": "no control/smtproutes"}
    except OSError as exc:
        return {"route": None, "file": str(path), "not_read": _why(exc)}
    routes = [line.strip() for line in text.splitlines() if line.strip()]
    default = next((r[1:] for r in routes if r.startswith(":")), None)
    return {
        "route": default or None,
        "file": str(path),
        "domain_routes": len([r for r in routes if not r.startswith(":")]),
    }


def read_service(system: System) -> dict[str, str]:
    """`systemctl show` of the unit: state, since when, main PID, restarts since boot."""
    result = system.systemctl("show", "-p", ",".join(SERVICE_PROPERTIES), UNIT)
    if not result.ok:
        reason = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[0]
        return {"not_read": f"systemctl show: {reason}"}
    shown = dict(line.partition("=")[::2] for line in result.stdout.splitlines() if "=" in line)
    return {key: shown.get(key, "") for key in SERVICE_PROPERTIES}


def _deliveries(messages: list[tuple[int, str]]) -> dict[str, dict[str, object] | None]:
    """The latest `delivery N: RESULT: text` line of each result, newest first in `messages`."""
    latest: dict[str, dict[str, object] | None] = {
        "success": None,
        "deferral": None,
        "failure": None,
    }
    last_result = None
    for micros, text in messages:
        if not text.startswith("delivery "):
            continue
        head, _, rest = text.partition(": ")
        result, _, reason = rest.partition(": ")
        if result not in latest or not head[len("delivery ") :].isdigit():
            continue
        last_result = last_result or result
        if latest[result] is None:
            latest[result] = {"time": _iso(micros / 1e6), "line": text, "reason": reason}
    return {**latest, "latest": {"result": last_result} if last_result else None}


def read_journal(system: System) -> dict[str, object]:
    """qmail-send's latest delivery results, from its last JOURNAL_LINES journal entries."""

    result = system.call(
        ["journalctl", "-u", UNIT, "-o", "json", "-r", "-n", str(JOURNAL_LINES), "--no-pager"]
    )
    if not result.ok:
        reason = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[0]
        return {"not_read": f"journalctl: {reason}"}
    messages = []
    for line in result.stdout.splitlines():
        try:
            entry = json.loads(line)
            text = entry.get("MESSAGE")
            if isinstance(text, list):  # journalctl's form of a message that is not UTF-8
                text = bytes(text).decode("utf-8", "replace")
            messages.append((int(entry["__REALTIME_TIMESTAMP"]), str(text)))
        except (ValueError, KeyError, TypeError):
            continue
    journal: dict[str, object] = dict(_deliveries(messages))
    journal["entries_read"] = len(messages)
    if not messages and "not seeing messages from other users" in result.stderr:
        journal["not_read"] = "this user cannot read the system journal"
    return journal


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
            fix = "qmail is missing or broken: run `sudo qmail-send-systemd verify`"
        elif service.get("SubState", "").startswith("auto-restart"):
            # Down after a failure, restarted every RestartSec= by systemd itself.
            problem = f"{UNIT} is down after a failure, waiting to be restarted"
            fix = "`journalctl -u qmail-send -p alert` says why it fails; it restarts by itself"
        elif service["ActiveState"] == "failed":
            fix = f"{REVIVE} (`journalctl -u qmail-send -e`: why it failed)"
        else:
            fix = "sudo systemctl start qmail-send (`journalctl -u qmail-send -e`: why it stopped)"
        found.append({"problem": problem, "fix": fix})
    queue = report["queue"]
    assert isinstance(queue, dict)
    oldest = queue.get("oldest")
    if isinstance(oldest, dict) and int(str(oldest["age_seconds"])) > STALE_AFTER:
        found.append(
            {
                "problem": f"message {oldest['message']} has waited "
                f"{_duration(int(str(oldest['age_seconds'])))} in the queue",
                "fix": "see the latest deferral; once online, `sudo qmail-send-systemd flush`",
            }
        )
    journal = report["journal"]
    assert isinstance(journal, dict)
    latest = journal.get("latest")
    # A deferral matters while mail waits: once the queue is read and empty, it is history.
    waiting = not queue["counted"] or bool(queue["not_read"]) or queue["messages"] != 0
    if isinstance(latest, dict) and latest.get("result") == "deferral" and waiting:
        found.append(
            {
                "problem": "the latest delivery attempt was deferred",
                "fix": "fix what its reason says, then `sudo qmail-send-systemd flush` retries now",
            }
        )
    found += report.get("submission", [])  # type: ignore[arg-type]
    return found


def check(
    system: System, *, live: bool | None = None, now: float | None = None
) -> dict[str, object]:
    """The whole report. The service and the journal only for the running system (root /,
    unless `live` says otherwise): under --root they are not the tree's."""
    root = system.root
    live = str(root) == "/" if live is None else live
    skipped = {"not_read": f"--root {root} is not the running system"}
    report: dict[str, object] = {
        "service": read_service(system) if live else skipped,
        "queue": read_queue(root, time.time() if now is None else now).as_dict(),
        "smarthost": read_smarthost(root),
        "journal": read_journal(system) if live else skipped,
    }
    report["submission"] = submission_state.attention(root)
    report["attention"] = attention(report)
    return report


def render_json(report: dict[str, object]) -> str:
    return json.dumps(report, indent=2, sort_keys=True)


def _service_line(service: dict[str, str]) -> str:
    if "not_read" in service:
        return f"service: not read ({service['not_read']})"
    if service.get("LoadState") == "not-found":
        return f"service: {UNIT} is not installed"
    line = f"service: {UNIT} {service['ActiveState']} ({service['SubState']})"
    if service.get("ActiveEnterTimestamp"):
        line += f" since {service['ActiveEnterTimestamp']}"
    if service.get("MainPID") not in ("", "0"):
        line += f", main PID {service['MainPID']}"
    return line + f", {service.get('NRestarts') or 0} restarts since boot"


def _queue_line(queue: dict[str, object]) -> str:
    if not queue["counted"]:
        return "queue: not counted (see below)"
    todo = queue["recipients_to_do"]
    assert isinstance(todo, dict)
    line = (
        f"queue: {_count(queue['messages'], 'message')}, {queue['not_yet_preprocessed']} not yet "
        f"preprocessed; recipients to do: {todo['local']} local, {todo['remote']} remote"
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
    if "not_read" in journal:
        lines.append(f"journal: {journal['not_read']} (run as root, or join group adm)")
    return lines


def render_text(report: dict[str, object]) -> str:
    service, queue = report["service"], report["queue"]
    smarthost, journal = report["smarthost"], report["journal"]
    assert isinstance(service, dict) and isinstance(queue, dict)
    assert isinstance(smarthost, dict) and isinstance(journal, dict)
    lines = [_service_line(service), _queue_line(queue)]
    for what in queue["not_read"]:
        hint = " (run as root)" if "permission denied" in str(what) else ""
        lines.append(f"queue: not read: {what}{hint}")
    lines += [_smarthost_line(smarthost), *_journal_lines(journal)]
    problems = report["attention"]
    assert isinstance(problems, list)
    for problem in problems:
        lines.append(f"attention: {problem['problem']} (fix: {problem['fix']})")
    if not problems:
        partial = any(part.get("not_read") for part in (service, queue, journal))
        lines.append("ok: nothing needs attention" + (" in what could be read" if partial else ""))
    return "\n".join(lines)


def needs_attention(report: dict[str, object]) -> bool:
    return bool(report["attention"])
