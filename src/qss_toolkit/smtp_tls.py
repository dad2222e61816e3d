"""A TLS + AUTH smarthost for the scenarios, run inside the booted container (Debian's aiosmtpd).

The submission route (docs/submission.md) is proven against a real server, not a mock: aiosmtpd
speaks STARTTLS (`tls_context`, `require_starttls`), implicit TLS (an `ssl=` server socket) and
AUTH (`auth_required`, an authenticator), with a certificate from a throwaway CA that `openssl`
makes for the run (`make_pki`). Like the plain sink (smtp_sink.py) it binds its ports at once but
listens only while DIR/online exists, so that "the smarthost is down" is a refused connection;
removing DIR/online takes it down again. Each accepted message is written to DIR/N.eml, its
envelope first; every command it saw is in DIR/commands.log with whether TLS was up, so a
scenario can prove that nothing was said in clear. Recipients whose local part is
`reject-perm...` or `reject-temp...` get a 550 or a 451.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from qss_toolkit.scenarios import ScenarioContext

TLS_DIR = "/run/qss-smtp-tls"
TLS_UNIT = "qss-smtp-tls.service"
TLS_SCRIPT = "/srv/qss/smtp-tls.py"
PKI_DIR = "/srv/qss/pki"
# The name the server's certificate is made for: /etc/hosts points it at the loopback.
SERVER_NAME = "smarthost.qss.test"
USER = "laptop@qss.test"
# The throwaway account's password: spaces, a quote and a backslash test msmtprc's quoting.
PASSWORD = 's3cret pass"word\\ with quotes'  # noqa: S105

# Runs in the container with the target's python3 (3.9 at the oldest) and its aiosmtpd (1.2 on
# Debian 11, which names the authenticator `auth_callback`; 1.4 elsewhere). argv: DIR, with
# DIR/config.json: {"listen": [[port, "plain"|"starttls"|"implicit"]], "cert", "key", "users"}.
TLS_SERVER = r"""
import asyncio, inspect, json, os, socket, ssl, sys
from aiosmtpd.smtp import SMTP

out = sys.argv[1]
config = json.load(open(os.path.join(out, "config.json")))
users = {k.encode(): v.encode() for k, v in config["users"].items()}
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(config["cert"], config["key"])
count = 0

def record(server, session, line):
    # Implicit TLS wraps the socket, so aiosmtpd's session.ssl (set by STARTTLS) stays None.
    secure = session.ssl is not None or getattr(server, "implicit", False)
    tls = "tls" if secure else "clear"
    with open(os.path.join(out, "commands.log"), "a") as f:
        f.write("%s %s\n" % (tls, line))

class RecordingSMTP(SMTP):
    # EHLO is recorded here, not in a handle_EHLO hook: 1.2's hook takes other arguments.
    async def smtp_EHLO(self, hostname):
        record(self, self.session, "EHLO " + hostname)
        return await super().smtp_EHLO(hostname)

class Handler:
    async def handle_MAIL(self, server, session, envelope, address, options):
        record(server, session, "MAIL FROM:<%s>" % address)
        if address.startswith("reject-sender"):
            return "553 5.7.1 <%s>: sender not allowed" % address
        # A provider that lets a login send only as itself (most do).
        only = config.get("only_sender")
        if only and address.lower() != only.lower():
            return "553 5.7.1 <%s>: sender address rejected: not owned by user %s" % (address, only)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        record(server, session, "RCPT TO:<%s>" % address)
        local = address.rpartition("@")[0]
        if local.startswith("reject-perm"):
            return "550 5.1.1 <%s>: no such mailbox here" % address
        if local.startswith("reject-temp"):
            return "451 4.3.0 <%s>: try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        global count
        record(server, session, "DATA")
        locals_ = [r.rpartition("@")[0] for r in envelope.rcpt_tos]
        if any(l.startswith("reject-data-perm") for l in locals_):
            return "554 5.6.0 message content refused"
        if any(l.startswith("reject-data-temp") for l in locals_):
            return "452 4.3.1 insufficient system storage"
        count += 1
        tmp = os.path.join(out, "%d.tmp" % count)
        # 1.4 keeps "authenticated" on the session, 1.2 on the server.
        login = getattr(session, "authenticated", False) or getattr(server, "authenticated", False)
        login = bool(login)
        secure = session.ssl is not None or getattr(server, "implicit", False)
        with open(tmp, "wb") as m:
            head = "MAIL FROM:<%s>\n" % envelope.mail_from
            head += "".join("RCPT TO:<%s>\n" % r for r in envelope.rcpt_tos)
            head += "AUTH %s\nTLS %s\n\n" % (login, secure)
            m.write(head.encode() + envelope.original_content)
        os.rename(tmp, os.path.join(out, "%d.eml" % count))
        return "250 2.0.0 queued as qss%d" % count

def check(login, password):
    ok = users.get(login) == password
    with open(os.path.join(out, "commands.log"), "a") as f:
        f.write("auth %s %s\n" % (login.decode(errors="replace"), "ok" if ok else "refused"))
    return ok

params = inspect.signature(SMTP.__init__).parameters
kwargs = {"auth_required": True, "auth_require_tls": True, "hostname": config["name"]}
if "authenticator" in params:
    from aiosmtpd.smtp import AuthResult
    def authenticator(server, session, envelope, mechanism, data):
        return AuthResult(success=check(data.login, data.password), handled=False)
    kwargs["authenticator"] = authenticator
else:
    kwargs["auth_callback"] = lambda mechanism, login, password: check(login, password)

def factory(mode):
    extra = {"tls_context": context, "require_starttls": True} if mode == "starttls" else {}
    if mode == "plain":
        extra = {"auth_required": False}
    if mode == "implicit":
        extra = {"auth_require_tls": False}  # the whole connection is TLS (see record)

    def make():
        smtp = RecordingSMTP(Handler(), **dict(kwargs, **extra))
        smtp.implicit = mode == "implicit"
        return smtp
    return make

def bind(port):
    # Bound, not listening: a connection is refused, as by a host that is down. Going offline
    # closes the listening socket and binds a new one (a listening socket left open would take
    # connections into its backlog and never answer them).
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    return s

async def main():
    sockets = [(bind(port), mode) for port, mode in config["listen"]]
    open(os.path.join(out, "bound"), "w").close()
    servers = []
    loop = asyncio.get_event_loop()
    while True:
        online = os.path.exists(os.path.join(out, "online"))
        if online and not servers:
            for s, mode in sockets:
                tls = context if mode == "implicit" else None
                servers.append(await loop.create_server(factory(mode), sock=s, ssl=tls))
            open(os.path.join(out, "listening"), "w").close()
        elif not online and servers:
            for server in servers:
                server.close()
                await server.wait_closed()
            servers = []
            sockets = [(bind(port), mode) for port, mode in config["listen"]]
            os.unlink(os.path.join(out, "listening"))
        await asyncio.sleep(0.05)

asyncio.get_event_loop().run_until_complete(main())
"""

# A CA the container trusts (installed in the system store by the scenario that wants it), one
# it does not, and a server certificate from each. Short keys and lifetimes: for this run only.
PKI_SCRIPT = r"""
set -eu
d=$1 name=$2
rm -rf "$d"; mkdir -p "$d"; cd "$d"
for ca in trusted rogue; do
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=qss $ca test CA" \
    -keyout $ca-ca.key -out $ca-ca.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout $ca-server.key \
    -out $ca-server.csr 2>/dev/null
  printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$name" > ext.cnf
  openssl x509 -req -in $ca-server.csr -CA $ca-ca.pem -CAkey $ca-ca.key -CAcreateserial \
    -days 2 -extfile ext.cnf -out $ca-server.pem 2>/dev/null
done
chmod 0644 *.pem
"""


@dataclass(frozen=True)
class Listener:
    port: int
    mode: str  # plain | starttls | implicit


STANDARD_LISTENERS = (Listener(587, "starttls"), Listener(465, "implicit"), Listener(25, "plain"))


def make_pki(ctx: ScenarioContext) -> None:
    """The throwaway CAs and certificates (once per boot: four RSA keys are most of the CPU a
    scenario spends), and the server's name on the loopback."""
    if ctx.run(["test", "-s", f"{PKI_DIR}/rogue-server.pem"]).returncode != 0:
        ctx.run_expect([0], ["sh", "-c", PKI_SCRIPT, "pki", PKI_DIR, SERVER_NAME])
    ctx.check_output(
        f"grep -qw {SERVER_NAME} /etc/hosts || echo '127.0.0.1 {SERVER_NAME}' >> /etc/hosts"
    )


def trust_system_wide(ctx: ScenarioContext, *, trusted: bool = True) -> None:
    """Put the trusted test CA into (or take it out of) the system's CA store."""
    anchor = "/usr/local/share/ca-certificates/qss-test-ca.crt"
    step = f"cp {PKI_DIR}/trusted-ca.pem {anchor}" if trusted else f"rm -f {anchor}"
    # Without --fresh: only the one changed anchor is processed (and a removed one unlinked).
    ctx.check_output(f"{step} && update-ca-certificates >/dev/null 2>&1")


@dataclass(frozen=True)
class TlsServer:
    ctx: ScenarioContext

    def go_online(self) -> None:
        self.ctx.check_output(["touch", f"{TLS_DIR}/online"])
        self.ctx.wait_for(f"test -e {TLS_DIR}/listening", timeout=15, message="the TLS server")

    def go_offline(self) -> None:
        self.ctx.check_output(["rm", "-f", f"{TLS_DIR}/online"])
        self.ctx.wait_for(f"! test -e {TLS_DIR}/listening", timeout=15, message="server down")

    def messages(self) -> list[str]:
        """Every message received so far, oldest first (each begins with its envelope)."""
        names = self.ctx.run(f"ls {TLS_DIR} | grep '[.]eml$' | sort -n").stdout.split()
        return [self.ctx.check_output(["cat", f"{TLS_DIR}/{name}"]) for name in names]

    def commands(self) -> list[str]:
        return self.ctx.run(["cat", f"{TLS_DIR}/commands.log"]).stdout.splitlines()

    def wait_messages(self, count: int, timeout: float = 30) -> list[str]:
        self.ctx.wait_for(
            f"[ $(ls {TLS_DIR} | grep -c '[.]eml$') -ge {count} ]",
            timeout=timeout,
            message=f"{count} message(s) at the TLS smarthost",
        )
        return self.messages()


@contextmanager
def tls_server(
    ctx: ScenarioContext,
    *,
    ca: str = "trusted",
    listeners: Sequence[Listener] = STANDARD_LISTENERS,
    users: dict[str, str] | None = None,
    only_sender: str | None = None,
) -> Iterator[TlsServer]:
    """Start the server (offline) with the certificate of CA `ca`; stop it, whatever happened.
    With `only_sender`, every other envelope sender is refused (553), as providers do."""
    ctx.run(["systemctl", "stop", TLS_UNIT])
    ctx.check_output(["rm", "-rf", TLS_DIR])
    config = {
        "listen": [[one.port, one.mode] for one in listeners],
        "cert": f"{PKI_DIR}/{ca}-server.pem",
        "key": f"{PKI_DIR}/{ca}-server.key",
        "users": users if users is not None else {USER: PASSWORD},
        "name": SERVER_NAME,
        "only_sender": only_sender,  # refuse (553) every MAIL FROM but this one
    }
    write = (
        f"mkdir -p {TLS_DIR} /srv/qss && cat > {TLS_SCRIPT}"
        f" && printf '%s' {shlex.quote(json.dumps(config))} > {TLS_DIR}/config.json"
    )
    wrote = ctx.run(["sh", "-c", write], input=TLS_SERVER)
    ctx.expect(wrote.returncode == 0, f"cannot write the TLS server: {wrote.stderr.strip()}")
    try:
        ctx.check_output(
            ["systemd-run", f"--unit={TLS_UNIT}", "--collect", "python3", TLS_SCRIPT, TLS_DIR]
        )
        ctx.wait_for(f"test -e {TLS_DIR}/bound", timeout=15, message="the TLS server's ports")
        yield TlsServer(ctx)
    finally:
        ctx.run(["systemctl", "stop", TLS_UNIT])
