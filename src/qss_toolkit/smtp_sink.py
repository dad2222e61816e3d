"""A plain-SMTP smarthost for the scenarios, run inside the booted container.

It binds a free loopback port at once but listens only when told the machine is online: until
then a connection is refused, as by a host that cannot be reached, so qmail-remote defers.
Each accepted message is written, its RCPT TO lines first, to DIR/N.eml.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from qss_toolkit.scenarios import ScenarioContext

SINK_DIR = "/run/qss-smtp-sink"
SINK_UNIT = "qss-smtp-sink.service"
SINK_SCRIPT = "/srv/qss/smtp-sink.py"

SMTP_SINK = r"""
import os, socket, sys, time
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
with open(os.path.join(out, "port.tmp"), "w") as f:
    f.write(str(srv.getsockname()[1]))
os.rename(os.path.join(out, "port.tmp"), os.path.join(out, "port"))
while not os.path.exists(os.path.join(out, "online")):
    time.sleep(0.05)
# Real qmail-remote connects up to concurrencyremote (20) at once: a short backlog drops SYNs,
# and a connect retried after 31 s outlasts a scenario's wait.
srv.listen(128)
open(os.path.join(out, "listening"), "w").close()
count = 0

def session(conn):
    global count
    f = conn.makefile("rwb")
    def say(text):
        f.write(text.encode() + b"\r\n")
        f.flush()
    say("220 smarthost.example.net ESMTP sink")
    rcpts = []
    while True:
        line = f.readline()
        if not line:
            return
        verb = line[:4].decode(errors="replace").upper()
        if verb == "RCPT":
            rcpts.append(line.decode(errors="replace").strip())
            say("250 ok")
        elif verb == "DATA":
            say("354 go ahead")
            body = []
            while True:
                data = f.readline()
                if not data or data.rstrip(b"\r\n") == b".":
                    break
                body.append(data)
            count += 1
            tmp = os.path.join(out, "%d.tmp" % count)
            with open(tmp, "wb") as m:
                m.write("".join(r + "\n" for r in rcpts).encode())
                m.writelines(body)
            os.rename(tmp, os.path.join(out, "%d.eml" % count))
            rcpts = []
            say("250 accepted")
        elif verb == "QUIT":
            say("221 bye")
            return
        else:
            say("250 ok")

while True:
    conn, _ = srv.accept()
    try:
        session(conn)
    except OSError:
        pass
    conn.close()
"""


@dataclass(frozen=True)
class SmtpSink:
    ctx: ScenarioContext
    port: str

    @property
    def address(self) -> str:
        """host:port, as `setup --smarthost` and control/smtproutes take it."""
        return f"127.0.0.1:{self.port}"

    def go_online(self) -> None:
        self.ctx.check_output(["touch", f"{SINK_DIR}/online"])
        self.ctx.wait_for(f"test -e {SINK_DIR}/listening", timeout=15, message="the sink to listen")

    def messages(self) -> list[str]:
        """Every message received so far, oldest first (each begins with its RCPT TO lines)."""
        names = self.ctx.run(f"ls {SINK_DIR} | grep '[.]eml$' | sort -n").stdout.split()
        return [self.ctx.check_output(["cat", f"{SINK_DIR}/{name}"]) for name in names]


@contextmanager
def smtp_sink(ctx: ScenarioContext) -> Iterator[SmtpSink]:
    """Start the sink (offline) in the container; stop it afterwards, whatever happened."""
    ctx.run(["systemctl", "stop", SINK_UNIT])
    ctx.check_output(["rm", "-rf", SINK_DIR])
    wrote = ctx.run(["sh", "-c", f"mkdir -p /srv/qss && cat > {SINK_SCRIPT}"], input=SMTP_SINK)
    ctx.expect(wrote.returncode == 0, f"cannot write the SMTP sink: {wrote.stderr.strip()}")
    try:
        ctx.check_output(
            ["systemd-run", f"--unit={SINK_UNIT}", "--collect", "python3", SINK_SCRIPT, SINK_DIR]
        )
        ctx.wait_for(f"test -s {SINK_DIR}/port", timeout=15, message="the sink's port")
        yield SmtpSink(ctx, ctx.check_output(["cat", f"{SINK_DIR}/port"]).strip())
    finally:
        ctx.run(["systemctl", "stop", SINK_UNIT])
