"""Filling a booted root's queue through real qmail: many messages, each handed to
/var/qmail/bin/qmail-queue as qmail-inject hands it (the message on fd 0, the envelope on fd 1,
qmail-queue(8)), a few at a time so that two cores stay busy; qmail-send then preprocesses and
delivers or defers them as it would any mail. The status and relay benches use it.
"""

from __future__ import annotations

import json

from qss_toolkit.errors import CheckFailed
from qss_toolkit.smoke.qmail_root import ME
from qss_toolkit.smoke.scenarios.registry import ScenarioContext

# Runs in the container (python3 of the target, 3.9 at the oldest). argv: count sender
# recipient-pattern ("{n}" is the message's number) workers. Prints one JSON object: the
# seconds it took, and how many qmail-queue runs failed with which exit codes.
INJECTOR = r"""
import json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor

count, sender, pattern, workers = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])

def one(n):
    recipient = pattern.replace("{n}", str(n))
    body = ("From: <%s>\nTo: <%s>\nSubject: bench %d\n\nbench %d\n" % (sender, recipient, n, n))
    envelope = b"F" + sender.encode() + b"\0T" + recipient.encode() + b"\0\0"
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(["/var/qmail/bin/qmail-queue"], stdin=subprocess.PIPE,
                                 stdout=read_end, stderr=subprocess.DEVNULL)
    finally:
        os.close(read_end)
    try:
        child.stdin.write(body.encode())
        child.stdin.close()
        os.write(write_end, envelope)
    finally:
        os.close(write_end)
    return child.wait()

start = time.monotonic()
with ThreadPoolExecutor(workers) as pool:
    codes = list(pool.map(one, range(1, count + 1)))
failed = {}
for code in codes:
    if code:
        failed[str(code)] = failed.get(str(code), 0) + 1
print(json.dumps({"seconds": time.monotonic() - start, "failed": failed}))
"""
WORKERS = 4
SENDER = f"bench@{ME}"


def inject(ctx: ScenarioContext, count: int, recipient: str, *, sender: str = SENDER) -> float:
    """Queue `count` messages to `recipient` ("{n}": the message's number) through
    qmail-queue; the seconds it took. Any qmail-queue failure fails the bench."""
    argv = ["python3", "-c", INJECTOR, str(count), sender, recipient, str(WORKERS)]
    result = ctx.container.run(argv, check=False, timeout=300 + count * 0.2)
    if result.returncode != 0:
        raise CheckFailed(
            "the injector failed: " + (result.stderr.strip().splitlines() or ["no output"])[-1]
        )
    done = json.loads(result.stdout.strip().splitlines()[-1])
    if done["failed"]:
        raise CheckFailed(f"qmail-queue failed for some of {count} messages: {done['failed']}")
    return float(done["seconds"])
