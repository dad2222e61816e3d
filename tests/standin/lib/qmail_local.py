"""Stand-in for qmail-local(8), whose main() bin/qmail-local runs: deliver one message to one
local recipient by the rules of dot-qmail(5).

Usage, as qmail-lspawn calls it: qmail-local [-nN] user homedir local dash ext domain sender
defaultdelivery, with the message on stdin. Exit 0 delivered, 100 permanent failure, 111
temporary failure; the report is on stdout.

Modelled: the home directory checks (deferred when it is world-writable or sticky); the
.qmail file search as qmail-local.c's qmesearch does it (the extension lower-cased with its dots
turned into colons, then `.qmail-EXT`, the `-default` files from the most specific to
`.qmail-default`, and `.qmail`/`.qmaildefault` for the bare user; a name that is not a regular
file is passed over, one that cannot be opened for lack of permission defers, a world-writable
one defers; no file with an extension bounces); defaultdelivery when the file is missing (bare
user) or empty (0 bytes), a blank first line deferring; comments, `+list` lines ignored;
Maildir delivery (deferred "Unable to chdir to maildir" when the directory is missing,
"Temporary error on maildir delivery" when tmp/ or new/ is), mbox delivery; |program
deliveries (exit 0, 99, 100, 111 as dot-qmail(5) says; what they print on stdout or stderr
opens the report); forwards (&address or a bare address)
re-injected through qmail-queue with the original envelope sender; the Delivered-To loop check.
Not modelled: -n, the execute bit of a .qmail file (`+list` and forward-only files), quota and
disk-full handling beyond an OSError, bounce address extensions (NEWSENDER is the sender), mbox
locking beyond flock, and Maildir++ folders.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import time

import qmail_standin as q

HOME = q.qmail_home_dir(__file__)
# qmail-local runs once per local delivery: subprocess (with locale) and socket, imported at
# each start, cost more than a Maildir delivery itself. They are imported where |program and
# forward deliveries need them; the host name for Maildir is uname's, which is what
# gethostname(2) returns.
HARD_PROGRAM_EXITS = {64, 65, 70, 76, 77, 78, 100, 112}
PATTERN_WRITABLE = 0o002  # conf-patrn
# qmail's error_temp(): errors worth a retry rather than a verdict.
TEMPORARY_ERRORS = {
    errno.EINTR, errno.ENOMEM, errno.ETXTBSY, errno.EIO, errno.ETIMEDOUT, errno.EAGAIN,
    errno.ENFILE, errno.EMFILE, errno.ENOSPC, errno.EDQUOT, errno.ESTALE, errno.ENOBUFS,
    errno.EBUSY, errno.EFBIG, errno.EDEADLK, errno.ENOLCK,
}  # fmt: skip


class Temporary(Exception):
    pass


class Permanent(Exception):
    pass


def dot_qmail_names(dash: str, ext: str) -> list[str]:
    """qmesearch's order: .qmail<dash><ext>, then <dash><prefix>default for each prefix of
    the extension that ends at a `-`, longest first, down to the empty one. The extension is
    lower-cased and its dots become colons first (dot-qmail(5))."""
    safe = ext.lower().replace(".", ":")
    names = [f".qmail{dash}{safe}"]
    for cut in range(len(safe), -1, -1):
        if cut == 0 or safe[cut - 1] == "-":
            names.append(f".qmail{dash}{safe[:cut]}default")
    return names


def open_dot_qmail(name: str) -> bytes | None:
    """qmeexists: the content of NAME if it opens as a regular file, None if it does not exist
    as one; a file qmail may not open, or a world-writable one, is a temporary failure."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in TEMPORARY_ERRORS or exc.errno in (errno.EACCES, errno.EPERM):
            raise Temporary(f"Unable to open {name}: {exc.strerror}. (#4.3.0)") from exc
        return None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as dot:
        if mode & PATTERN_WRITABLE:
            raise Temporary("Uh-oh: .qmail file is writable. (#4.7.0)")
        return dot.read()


def find_dot_qmail(dash: str, ext: str) -> tuple[str, bytes] | None:
    """The .qmail file that governs the address and its content, as qmail-local searches."""
    for name in dot_qmail_names(dash, ext):
        content = open_dot_qmail(name)
        if content is not None:
            return name, content
    return None


def check_home() -> None:
    """qmail-local's checkhome, in the home directory."""
    mode = os.stat(".").st_mode
    if mode & PATTERN_WRITABLE:
        raise Temporary("Uh-oh: home directory is writable. (#4.7.0)")
    if mode & stat.S_ISVTX:
        raise Temporary("Home directory is sticky: user is editing his .qmail file. (#4.2.1)")


def maildir(path: str, message: bytes) -> None:
    """Deliver into the maildir PATH (relative to the home) as qmail-local's maildir child
    does: chdir into it, write tmp/UNIQUE, link it into new/."""
    home = os.open(".", os.O_RDONLY)
    try:
        try:
            os.chdir(path)
        except OSError as exc:
            if exc.errno in TEMPORARY_ERRORS:
                raise Temporary("Temporary error on maildir delivery. (#4.3.0)") from exc
            raise Temporary("Unable to chdir to maildir. (#4.2.1)") from exc
        unique = f"{int(time.time())}.{os.getpid()}.{os.uname().nodename}"
        try:
            with open(f"tmp/{unique}", "xb") as out:
                out.write(message)
                out.flush()
                os.fsync(out.fileno())
            os.link(f"tmp/{unique}", f"new/{unique}")
            os.unlink(f"tmp/{unique}")
        except OSError as exc:
            try:  # noqa: SIM105 (contextlib would cost every delivery its import)
                os.unlink(f"tmp/{unique}")
            except OSError:
                pass
            raise Temporary("Temporary error on maildir delivery. (#4.3.0)") from exc
    finally:
        os.fchdir(home)
        os.close(home)


def mbox(path: str, sender: str, message: bytes) -> None:
    lines = []
    for line in message.split(b"\n"):
        lines.append(b">" + line if line.lstrip(b">").startswith(b"From ") else line)
    body = b"\n".join(lines)
    if not body.endswith(b"\n"):
        body += b"\n"
    envelope = sender or "MAILER-DAEMON"
    head = f"From {envelope} {time.asctime(time.gmtime())}\n".encode("utf-8", "surrogateescape")
    try:
        out = open(path, "ab")  # noqa: SIM115 (closed below; its errors differ from writes')
    except OSError as exc:
        raise Temporary(f"Unable to open {path}: {exc.strerror}. (#4.2.1)") from exc
    try:
        with out:
            fcntl.flock(out, fcntl.LOCK_EX)
            out.write(head + body + b"\n")
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise Temporary(f"Unable to write {path}: {exc.strerror}. (#4.3.0)") from exc


# What the programs wrote: qmail-local gives them its own fds 1 and 2, which qmail-lspawn has
# joined into the report, so their stdout and stderr come before qmail-local's own words.
SAID: list[str] = []


def program(command: str, message: bytes, env: dict[str, str]) -> bool:
    """Run |command; True when it asked to stop processing the .qmail file (exit 99)."""
    import subprocess

    proc = subprocess.run(
        ["/bin/sh", "-c", command],
        input=message,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        check=False,
    )
    output = proc.stdout.decode("utf-8", "replace")
    SAID.append(output)
    if proc.returncode in (0, 99):
        return proc.returncode == 99
    # qmail-local adds nothing of its own here; the stand-in names the program when it was
    # silent, so that a log line never ends empty.
    if proc.returncode in HARD_PROGRAM_EXITS:
        raise Permanent("" if output else f"Program {command} failed permanently. (#5.2.0)")
    raise Temporary("" if output else f"Program {command} failed temporarily. (#4.2.0)")


def forward(targets: list[str], sender: str, message: bytes) -> None:
    envelope = q.pack_envelope(sender, targets)
    read_env, write_env = os.pipe()
    os.write(write_env, envelope)
    os.close(write_env)
    import subprocess

    proc = subprocess.run(
        [os.path.join(HOME, "bin", "qmail-queue")],
        input=message,
        stdout=read_env,
        capture_output=False,
        check=False,
    )
    os.close(read_env)
    if proc.returncode != 0:
        raise Temporary(
            f"Unable to forward message: qmail-queue exited {proc.returncode}. (#4.3.0)"
        )


def deliver(argv: list[str], message: bytes) -> str:
    user, homedir, local, dash, ext, domain, sender, default = argv
    recipient = f"{local}@{domain}"
    dtline = f"Delivered-To: {recipient}\n".encode("utf-8", "surrogateescape")
    if dtline.lower() in [
        line.lower() + b"\n" for line in message.split(b"\n\n", 1)[0].split(b"\n")
    ]:
        raise Permanent("This message is looping: it already has my Delivered-To line. (#5.4.6)")
    try:
        os.chdir(homedir)
    except OSError as exc:
        raise Temporary(f"Unable to switch to {homedir}: {exc.strerror}. (#4.3.0)") from exc
    check_home()
    rpline = f"Return-Path: <{sender}>\n".encode("utf-8", "surrogateescape")
    stamped = rpline + dtline + message

    found = find_dot_qmail(dash, ext)
    if found is None and dash:
        raise Permanent("Sorry, no mailbox here by that name. (#5.1.1)")
    # dot-qmail(5): a missing .qmail (bare user) or an empty one (0 bytes) means defaultdelivery.
    content = found[1] if found else b""
    text = content.decode("utf-8", "surrogateescape") if content else default
    lines = [line.rstrip(" \t") for line in text.rstrip("\n").split("\n")]
    if not lines[0]:
        raise Temporary("Uh-oh: first line of .qmail file is blank. (#4.2.1)")

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "USER": user,
        "HOME": homedir,
        "SENDER": sender,
        "NEWSENDER": sender,
        "RECIPIENT": recipient,
        "LOCAL": local,
        "HOST": domain,
        "EXT": ext,
        "DTLINE": dtline.decode("utf-8", "surrogateescape"),
        "RPLINE": rpline.decode("utf-8", "surrogateescape"),
    }
    files = forwards = programs = 0
    targets: list[str] = []
    for line in lines:
        if not line or line.startswith(("#", "+")):
            continue
        if line.startswith("|"):
            programs += 1
            if program(line[1:], stamped, env):
                break
        elif line.startswith(("/", ".")):
            files += 1
            if line.endswith("/"):
                maildir(line, stamped)
            else:
                mbox(line, sender, stamped)
        else:
            targets.append(line[1:] if line.startswith("&") else line)
    if targets:
        forwards = len(targets)
        forward(targets, sender, dtline + message)
    return f"did {files}+{forwards}+{programs}/"


def main() -> int:
    args = sys.argv[1:]
    while args and args[0].startswith("-") and args[0] != "--":
        args.pop(0)  # -n and -N: not modelled
    if args and args[0] == "--":
        args.pop(0)
    if len(args) != 8:
        print(
            "qmail-local: usage: qmail-local [-nN] user homedir local dash ext domain sender "
            "defaultdelivery",
            file=sys.stderr,
        )
        return 100
    message = sys.stdin.buffer.read()
    # The report as qmail-lspawn passes it on: what the programs said, then "did F+M+P/" on
    # success or qmail-local's sentence otherwise.
    code, text = 0, ""
    try:
        text = deliver(args, message)
    except Permanent as exc:
        code, text = 100, f"{exc}\n" if str(exc) else ""
    except Temporary as exc:
        code, text = 111, f"{exc}\n" if str(exc) else ""
    sys.stdout.write("".join(SAID) + text)
    return code
