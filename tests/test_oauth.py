"""OAuth 2.0 for the submission route (issue 25): the device flow, the loopback flow, the refresh
grant and its cache, a revoked grant as a deferral with the command that re-authorises; setup
--auth and --envelope-sender; and the real msmtp against a local server speaking XOAUTH2 and
OAUTHBEARER (qss_toolkit.smoke.scenarios.fixtures.smtp_oauth), with a provider's refusals.
No real provider is reached: the token endpoint is a thread on 127.0.0.1."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import shlex
import shutil
import stat
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import make_submission_tree
from qmail_send_systemd import (
    cli,
    findings,
    msmtprc,
    oauth,
    relay,
    sender,
    status,
    submission,
    submission_state,
    verify,
)
from qmail_send_systemd import oauth_setup as oauth_setup_mod
from qmail_send_systemd.errors import HelperError
from qmail_send_systemd.systemd import System
from qss_toolkit.smoke.scenarios.fixtures.smtp_oauth import (
    BASIC_AUTH_OFF,
    CLIENT_ID,
    CLIENT_SECRET,
    SENDER_REFUSED,
    OAuthSMTP,
    TokenEndpoint,
    make_certificate,
)

UID, GID = os.getuid(), os.getgid()
LOGIN = "me@example.net"
SRC = Path(__file__).resolve().parent.parent / "src"


@pytest.fixture(autouse=True)
def device_waits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """setup's and oauth-authorize's device flow wait the endpoint's interval (1 s, RFC 8628's
    least) before each poll; the endpoint here answers at once, so the waits are kept here
    instead of slept (test_device_flow_* show that the flow waits the interval)."""
    slept: list[float] = []
    monkeypatch.setattr(
        oauth, "device_flow", functools.partial(oauth.device_flow, sleep=slept.append)
    )
    yield slept
    assert set(slept) <= {1}, slept  # the endpoint's interval: never less, never more


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    with TokenEndpoint() as server:
        yield server


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fake root: qmail's accounts mapped to the test's uid, msmtp and our qmail-remote."""
    make_submission_tree(tmp_path)
    return tmp_path


def conf_for(endpoint: TokenEndpoint, provider: str = "microsoft") -> dict[str, str]:
    overrides = dict(item.split("=", 1) for item in endpoint.settings())
    tenant = "contoso.onmicrosoft.com" if provider == "microsoft" else None
    return oauth.settings_for(provider, CLIENT_ID, tenant, overrides, LOGIN)


def run(root: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--root", str(root), *argv])
    return code, out.getvalue(), err.getvalue()


def oauth_setup(root: Path, endpoint: TokenEndpoint, *extra: str) -> tuple[int, str, str]:
    settings = [arg for item in endpoint.settings() for arg in ("--oauth-setting", item)]
    umask = os.umask(0o077)  # as under a strict umask: qmailr must still reach its files
    try:
        return run(
            root, "setup", "--smarthost", "smtp.office365.com:587", "--tls", "starttls",
            "--user", LOGIN, "--auth", "xoauth2", "--oauth-provider", "microsoft",
            "--oauth-client-id", CLIENT_ID, "--oauth-tenant", "contoso.onmicrosoft.com",
            *settings, *extra,
        )  # fmt: skip
    finally:
        os.umask(umask)


# --- the flows -------------------------------------------------------------------------------


def test_device_flow_shows_the_code_polls_and_returns_the_grant(endpoint: TokenEndpoint) -> None:
    endpoint.approve_after = 2
    lines: list[str] = []
    slept: list[float] = []
    grant = oauth.device_flow(conf_for(endpoint), "", lines.append, sleep=slept.append)
    assert grant["refresh_token"] in endpoint.refresh_tokens
    assert endpoint.valid(grant["access_token"])
    assert f"{endpoint.url}/device" in lines[0] and "QSS-1234" in lines[0]
    assert slept == [1, 1, 1]  # the server's interval, two pending answers, then the grant
    scope = next(form["scope"] for path, form in endpoint.requests if path == "/devicecode")
    assert scope == "https://outlook.office.com/SMTP.Send offline_access"


def test_device_flow_slow_down_and_a_declined_code(endpoint: TokenEndpoint) -> None:
    answers = iter([{"error": "slow_down"}, {"error": "access_denied"}])
    conf = conf_for(endpoint)
    slept: list[float] = []
    original = oauth.post

    def post(url: str, fields: dict[str, str]) -> dict[str, object]:
        return original(url, fields) if url.endswith("/devicecode") else dict(next(answers))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(oauth, "post", post)
        with pytest.raises(HelperError, match="declined"):
            oauth.device_flow(conf, "", lambda line: None, sleep=slept.append)
    assert slept == [1, 6]  # RFC 8628 3.5: slow_down adds 5 seconds


def _browser(lines: list[str]) -> threading.Thread:
    """What the administrator's browser does: open the URL setup printed, follow the
    provider's redirect back to the loopback listener."""

    def visit() -> None:
        while not any(line.startswith("http") for line in lines):
            time.sleep(0.01)
        url = next(line for line in lines if line.startswith("http"))
        with urllib.request.urlopen(url, timeout=10) as page:  # noqa: S310 - 127.0.0.1
            assert b"authorisation received" in page.read()

    thread = threading.Thread(target=visit, daemon=True)
    thread.start()
    return thread


def test_loopback_flow_takes_the_redirect_and_proves_pkce(endpoint: TokenEndpoint) -> None:
    endpoint.client_secret = CLIENT_SECRET
    lines: list[str] = []
    browser = _browser(lines)
    grant = oauth.loopback_flow(
        conf_for(endpoint, "google"), CLIENT_SECRET, lines.append, timeout=10
    )
    browser.join(5)
    assert grant["refresh_token"] in endpoint.refresh_tokens
    assert grant["client_secret"] == CLIENT_SECRET
    query = next(form for path, form in endpoint.requests if path == "/authorize")
    assert query["redirect_uri"].startswith("http://127.0.0.1:")
    assert query["access_type"] == "offline" and query["scope"] == "https://mail.google.com/"
    assert query["login_hint"] == LOGIN


def test_loopback_flow_ignores_a_stranger_and_times_out(endpoint: TokenEndpoint) -> None:
    lines: list[str] = []

    def stranger() -> None:
        while not any("Waiting" in line for line in lines):
            time.sleep(0.01)
        port = next(line for line in lines if "Waiting" in line).split(":")[2].split("/")[0]
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/?code=x&state=forged", timeout=5)

    thread = threading.Thread(target=stranger, daemon=True)
    thread.start()
    with pytest.raises(HelperError, match="no answer came back"):
        oauth.loopback_flow(conf_for(endpoint, "google"), "", lines.append, timeout=1.5)
    thread.join(5)
    assert not any(path == "/token" for path, _ in endpoint.requests)


# --- setup, the refresh grant, the cache -----------------------------------------------------


def test_setup_auth_writes_the_route_and_one_private_copy_of_the_grant(
    tree: Path, endpoint: TokenEndpoint
) -> None:
    code, out, err = oauth_setup(tree, endpoint)
    assert code == 0, err
    assert "QSS-1234" in out
    rc = (tree / msmtprc.CONFIG.lstrip("/")).read_text()
    assert (
        "auth xoauth2\n" in rc and 'passwordeval "/usr/sbin/qmail-send-systemd oauth-token"' in rc
    )
    assert "password " not in rc and f'from "{LOGIN}"' in rc
    conf = msmtprc.read_config(str(tree / oauth.CONF.lstrip("/")))
    assert conf["token_url"] == f"{endpoint.url}/token" and conf["flow"] == "device"
    state = tree / submission_state.STATE_DIR
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o755  # qmailr passes through
    grant = state / oauth.GRANT
    assert stat.S_IMODE(grant.stat().st_mode) == 0o600 and grant.stat().st_uid == UID
    token = json.loads(grant.read_text())["refresh_token"]
    assert token in endpoint.refresh_tokens
    assert not any(token in p.read_text(errors="replace") for p in tree.rglob("*")
                   if p.is_file() and p != grant)  # fmt: skip
    # Authorising again replaces the grant: no backup of a secret, ever.
    assert oauth_setup(tree, endpoint)[0] == 0
    assert [p.name for p in state.iterdir() if ".bak" in p.name] == []
    # A password login takes the OAuth files away, the grant without a copy.
    (tree / "pw").write_text("secret\n")
    code, _, err = run(tree, "setup", "--smarthost", "smtp.example.net:587", "--tls", "starttls",
                       "--user", LOGIN, "--password-file", str(tree / "pw"))  # fmt: skip
    assert code == 0, err
    assert not grant.exists() and not (tree / oauth.CONF.lstrip("/")).exists()
    assert not [p for p in state.iterdir() if p.name.startswith(oauth.GRANT)]


def test_verify_wants_the_grant_qmailrs_alone(tree: Path, endpoint: TokenEndpoint) -> None:
    assert oauth_setup(tree, endpoint)[0] == 0
    assert [f.line() for f in verify.check(tree) if "submission" in f.path] == []
    grant = tree / submission_state.STATE_DIR / oauth.GRANT
    grant.chmod(0o644)
    found = [f for f in verify.check(tree) if f.path == str(grant)]
    assert [f.message for f in found] == ["holds the refresh token and is mode 0644"]
    assert found[0].fix.endswith("chmod 0600 " + str(grant))
    grant.unlink()
    found = [f for f in verify.check(tree) if f.path == str(grant)]
    assert found and found[0].fix == oauth.REAUTHORIZE


def test_setup_auth_dry_run_asks_nobody(tree: Path, endpoint: TokenEndpoint) -> None:
    code, out, _ = oauth_setup(tree, endpoint, "--dry-run")
    assert code == 0 and "without --dry-run, setup asks microsoft" in out
    assert endpoint.requests == []
    assert not (tree / submission_state.STATE_DIR).exists()


def _msmtp_says(tree: Path, version: str) -> None:
    (tree / submission.MSMTP.lstrip("/")).write_text(f"#!/bin/sh\necho 'msmtp version {version}'\n")


def test_xoauth2_needs_msmtp_1_8_13_before_anything_is_asked(
    tree: Path, endpoint: TokenEndpoint
) -> None:
    _msmtp_says(tree, "1.8.11")  # Debian 11's: OAUTHBEARER, no XOAUTH2
    code, _, err = oauth_setup(tree, endpoint)
    assert code != 0 and "msmtp 1.8.11 has no XOAUTH2" in err and "--auth oauthbearer" in err
    assert len(err.strip().splitlines()) == 1
    assert endpoint.requests == []
    assert not (tree / msmtprc.CONFIG.lstrip("/")).exists()
    _msmtp_says(tree, "1.8.13")
    code, _, err = oauth_setup(tree, endpoint)
    assert code == 0, err


def test_oauthbearer_with_an_msmtp_without_xoauth2(tree: Path, endpoint: TokenEndpoint) -> None:
    _msmtp_says(tree, "1.8.11")
    settings = [arg for item in endpoint.settings() for arg in ("--oauth-setting", item)]
    code, _, err = run(
        tree, "setup", "--smarthost", "smtp.gmail.com:587", "--tls", "starttls",
        "--user", LOGIN, "--auth", "oauthbearer", "--oauth-provider", "microsoft",
        "--oauth-client-id", CLIENT_ID, *settings,
    )  # fmt: skip
    assert code == 0, err
    assert "auth oauthbearer" in (tree / msmtprc.CONFIG.lstrip("/")).read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--password-file", "/x"], "exclude each other"),
        (["--oauth-setting", "token_url=http://example.org/token"], "not an https URL"),
        (["--oauth-setting", "colour=blue"], "unknown --oauth-setting 'colour'"),
        (["--oauth-tenant", "a b"], "malformed --oauth-tenant"),
        (["--oauth-provider", "google"], "--oauth-tenant is Microsoft's"),
    ],
)
def test_setup_auth_refuses_bad_options_before_asking(
    tree: Path, endpoint: TokenEndpoint, extra: list[str], message: str
) -> None:
    code, _, err = oauth_setup(tree, endpoint, *extra)
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert endpoint.requests == []


def test_google_needs_its_client_secret_file(tree: Path) -> None:
    code, _, err = run(tree, "setup", "--smarthost", "smtp.gmail.com:465", "--tls", "implicit",
                       "--user", LOGIN, "--auth", "xoauth2", "--oauth-provider", "google",
                       "--oauth-client-id", CLIENT_ID)  # fmt: skip
    assert code == 2 and "needs --oauth-client-secret-file" in err


def test_oauth_options_need_auth_and_tls(tree: Path) -> None:
    code, _, err = run(tree, "setup", "--smarthost", "h.example", "--oauth-provider", "google")
    assert code == 2 and "--oauth-provider needs --tls" in err
    code, _, err = run(tree, "setup", "--smarthost", "h.example:587", "--tls", "starttls",
                       "--user", LOGIN, "--auth", "xoauth2")  # fmt: skip
    assert code == 2 and "--auth xoauth2 needs --oauth-provider" in err


def test_setup_for_google_runs_the_loopback_flow_and_refreshes_with_the_secret(
    tree: Path, endpoint: TokenEndpoint
) -> None:
    endpoint.client_secret = CLIENT_SECRET
    (tree / "secret").write_text(CLIENT_SECRET + "\n")
    printed = io.StringIO()

    def browser() -> None:  # reads what setup printed, as the administrator would
        while not [ln for ln in printed.getvalue().splitlines() if ln.startswith("http")]:
            time.sleep(0.01)
        url = next(ln for ln in printed.getvalue().splitlines() if ln.startswith("http"))
        with urllib.request.urlopen(url, timeout=10) as page:  # noqa: S310 - 127.0.0.1
            page.read()

    thread = threading.Thread(target=browser, daemon=True)
    thread.start()
    settings = [arg for item in endpoint.settings() for arg in ("--oauth-setting", item)]
    with contextlib.redirect_stdout(printed):
        code = cli.main([
            "--root", str(tree), "setup", "--smarthost", "smtp.gmail.com:465", "--tls",
            "implicit", "--user", "me@gmail.com", "--auth", "oauthbearer", "--oauth-provider",
            "google", "--oauth-client-id", CLIENT_ID, "--oauth-client-secret-file",
            str(tree / "secret"), *settings,
        ])  # fmt: skip
    thread.join(5)
    assert code == 0, printed.getvalue()
    rc = (tree / msmtprc.CONFIG.lstrip("/")).read_text()
    assert "auth oauthbearer\n" in rc and 'from "me@gmail.com"' in rc
    assert CLIENT_SECRET not in rc and CLIENT_SECRET not in printed.getvalue()
    grant = json.loads((tree / submission_state.STATE_DIR / oauth.GRANT).read_text())
    assert grant["client_secret"] == CLIENT_SECRET
    later = time.time() + 7200
    assert endpoint.valid(oauth.access_token(tree, now=lambda: later - 3600 - 60))
    refresh = [form for _, form in endpoint.requests if form.get("grant_type") == "refresh_token"]
    assert len(refresh) == 1 and "scope" not in refresh[0]  # Google keeps the grant's scope


def test_token_is_cached_then_refreshed_when_expired(tree: Path, endpoint: TokenEndpoint) -> None:
    endpoint.rotate = True
    assert oauth_setup(tree, endpoint)[0] == 0
    first = oauth.access_token(tree)
    assert endpoint.valid(first) and endpoint.grants("refresh_token") == 0  # setup's own token
    assert oauth.access_token(tree) == first
    # An hour later (the token is near its end): one refresh, a new token, the rotated
    # refresh token kept instead of the old one.
    later = time.time() + 3600 - 60
    second = oauth.access_token(tree, now=lambda: later)
    assert second != first and endpoint.grants("refresh_token") == 1
    refresh = next(
        form for _, form in endpoint.requests if form.get("grant_type") == "refresh_token"
    )
    assert refresh["scope"] == "https://outlook.office.com/SMTP.Send offline_access"
    grant = json.loads((tree / submission_state.STATE_DIR / oauth.GRANT).read_text())
    assert grant["refresh_token"] in endpoint.refresh_tokens
    code, out, _ = run(tree, "oauth-token")
    assert code == 0 and out == second + "\n"


def test_an_expired_access_token_is_refreshed_before_msmtp_runs(
    tree: Path, endpoint: TokenEndpoint
) -> None:
    assert oauth_setup(tree, endpoint)[0] == 0
    cache = tree / submission_state.STATE_DIR / oauth.ACCESS
    cache.write_text(json.dumps({"access_token": "stale", "expires_at": int(time.time()) - 5}))
    token = oauth.access_token(tree)
    assert token != "stale" and endpoint.valid(token) and endpoint.grants("refresh_token") == 1  # noqa: S105


def _fake_msmtp(tmp: Path) -> Path:
    script = tmp / "msmtp"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.stdin.read()\n")
    script.chmod(0o755)
    return script


def test_a_revoked_grant_is_a_deferral_that_names_the_command(
    tree: Path, endpoint: TokenEndpoint, tmp_path: Path
) -> None:
    assert oauth_setup(tree, endpoint)[0] == 0
    endpoint.revoke()
    endpoint.expire_access_tokens()
    cache = tree / submission_state.STATE_DIR / oauth.ACCESS
    cache.write_text(json.dumps({"access_token": "old", "expires_at": 0}))
    message = tmp_path / "message"
    message.write_bytes(b"Subject: hi\n\nbody\n")
    with message.open("rb") as fd:
        out = submission.relay(
            ["qmail-remote", "example.org", "root@laptop.example.net", "you@example.org"],
            root=str(tree), config=str(tree / msmtprc.CONFIG.lstrip("/")),
            msmtp=str(_fake_msmtp(tmp_path)), message=fd.fileno(),
        )  # fmt: skip
    assert out.startswith("Z") and out.endswith("\0") and out.count("\0") == 1
    assert "invalid_grant" in out and oauth.REAUTHORIZE in out
    # status and verify say it too, with the same command.
    code, text, _ = run(tree, "status")
    assert code == 1 and "the OAuth grant is no longer valid" in text and oauth.REAUTHORIZE in text
    found = verify.check(tree)
    assert any(oauth.REAUTHORIZE in f.fix for f in found if f.severity == findings.ERROR)
    attention = status.check(System(tree))["attention"]
    assert isinstance(attention, list) and any(oauth.REAUTHORIZE in a["fix"] for a in attention)
    # oauth-token (msmtp's passwordeval) fails in one line, as msmtp will show it.
    code, _, err = run(tree, "oauth-token")
    assert code == 1 and len(err.splitlines()) == 1 and oauth.REAUTHORIZE in err
    # Re-authorising clears it.
    endpoint.revoked = False
    code, out_text, err = run(tree, "oauth-authorize")
    assert code == 0, err
    assert "QSS-1234" in out_text and submission_state.read(tree) is None
    assert endpoint.valid(oauth.access_token(tree))


def test_token_endpoint_down_is_a_one_line_temporary_error(tree: Path) -> None:
    with TokenEndpoint() as endpoint:
        assert oauth_setup(tree, endpoint)[0] == 0
    (tree / submission_state.STATE_DIR / oauth.ACCESS).unlink()
    with pytest.raises(HelperError) as caught:
        oauth.access_token(tree)
    assert "cannot reach" in str(caught.value) and "\n" not in str(caught.value)
    assert submission_state.read(tree) is None  # not the administrator's to fix


# --- the sender ------------------------------------------------------------------------------


LOCAL = {"laptop.example.net"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"Subject: x\n\n", b"Subject: x\nFrom: <me@example.net>\n\n"),
        (
            b"From: root@laptop.example.net\nSubject: x\n\n",
            b'From: "root@laptop.example.net" <me@example.net>\nSubject: x\n\n',
        ),
        (b"From: Cron Daemon <root>\n\n", b"From: Cron Daemon <me@example.net>\n\n"),
        (
            b"From: MAILER-DAEMON@laptop.example.net\n\n",
            b'From: "MAILER-DAEMON@laptop.example.net" <me@example.net>\n\n',
        ),
        (b"From: Someone <someone@example.org>\n\n", None),
        (
            b"from:\n  root@laptop.example.net\n\n",
            b'From: "root@laptop.example.net" <me@example.net>\n\n',
        ),
    ],
)
def test_a_missing_or_local_from_becomes_the_login(header: bytes, expected: bytes | None) -> None:
    assert sender.rewrite_header(header, LOGIN, LOCAL) == expected


def test_the_queue_file_is_passed_on_or_rewritten_whole(tmp_path: Path) -> None:
    body = b"x" * 200_000 + b"\nend\n"
    kept = tmp_path / "kept"
    kept.write_bytes(b"From: a@example.org\n\n" + body)
    with kept.open("rb") as f:
        fd = sender.message_for_msmtp(f.fileno(), LOGIN, LOCAL)
        assert fd == f.fileno() and os.read(fd, 30) == b"From: a@example.org\n\n" + body[:9]
    local = tmp_path / "local"
    local.write_bytes(b"From: root@laptop.example.net\n\n" + body)
    with local.open("rb") as f:
        fd = sender.message_for_msmtp(f.fileno(), LOGIN, LOCAL)
        with os.fdopen(fd, "rb") as out:
            assert out.read() == b'From: "root@laptop.example.net" <me@example.net>\n\n' + body


# --- the real msmtp against a local provider -------------------------------------------------

needs_msmtp = pytest.mark.skipif(
    shutil.which("msmtp") is None, reason="msmtp is not installed (apt-get install msmtp)"
)


def _deliver(tree: Path, tmp: Path, sender_address: str, data: bytes) -> str:
    message = tmp / "message"
    message.write_bytes(data)
    with message.open("rb") as fd:
        return submission.relay(
            ["qmail-remote", "example.org", sender_address, "you@example.org"],
            root=str(tree), config=str(tree / "msmtprc"), msmtp=str(shutil.which("msmtp")),
            message=fd.fileno(),
        )  # fmt: skip


def _local_msmtprc(
    tree: Path, port: int, mechanism: str, *, trust: str | None = None, envelope: bool = True
) -> None:
    """setup's msmtprc pointed at the loopback server: with `trust`, STARTTLS as setup wrote it
    (the certificate checked against that file), else in clear; passwordeval runs this
    checkout's helper."""
    rc = (tree / msmtprc.CONFIG.lstrip("/")).read_text()
    # msmtp runs passwordeval with the shell: quoted, for a checkout in a path with a space.
    cli = [sys.executable, "-m", "qmail_send_systemd.cli", "--root", str(tree)]
    helper = shlex.join(["env", f"PYTHONPATH={SRC}", *cli])
    replaced = {
        "host": "host 127.0.0.1",
        "port": f"port {port}",
        "auth": f"auth {mechanism}",
        "passwordeval": f'passwordeval "{helper} oauth-token"',
        "tls_trust_file": f"tls_trust_file {trust}",
    }
    lines = []
    for line in rc.splitlines():
        key = line.split(" ", 1)[0]
        if trust is None and key in ("tls", "tls_starttls", "tls_trust_file", "tls_certcheck"):
            continue
        if key == "from" and not envelope:
            continue
        lines.append(replaced.get(key, line))
    if trust is None:
        lines.insert(lines.index(f"port {port}") + 1, "tls off")
    else:
        assert "tls_starttls on" in lines and "tls_certcheck on" in lines
    (tree / "msmtprc").write_text("\n".join(lines) + "\n")
    (tree / "msmtprc").chmod(0o600)


@needs_msmtp
@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_msmtp_logs_in_with_the_token_and_the_sender_is_the_login(
    tree: Path, endpoint: TokenEndpoint, tmp_path: Path, mechanism: str
) -> None:
    pytest.importorskip("aiosmtpd")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (the server's certificate)")
    assert oauth_setup(tree, endpoint)[0] == 0
    cert, key = make_certificate(str(tmp_path))
    with OAuthSMTP(endpoint, only_sender=LOGIN, tls=(cert, key)) as smtp:
        _local_msmtprc(tree, smtp.port, mechanism, trust=cert)
        # cron's mail: a local From, a local envelope sender; then a bounce (<>).
        out = _deliver(tree, tmp_path, "root@laptop.example.net",
                       b"From: root@laptop.example.net\nSubject: cron\n\nhello\n")  # fmt: skip
        assert out.startswith("r\0K"), out
        out = _deliver(tree, tmp_path, "", b"From: MAILER-DAEMON@laptop.example.net\n\nbounce\n")
        assert out.startswith("r\0K"), out
        # The token expires between two flushes: refreshed, delivered once.
        endpoint.expire_access_tokens()
        cache = tree / submission_state.STATE_DIR / oauth.ACCESS
        cache.write_text(json.dumps({"access_token": "gone", "expires_at": 0}))
        out = _deliver(tree, tmp_path, "#@[]", b"Subject: double bounce\n\nx\n")
        assert out.startswith("r\0K"), out
    assert smtp.auth == [mechanism.upper()] * 3 and smtp.secure == [True] * 3
    assert [m["from"] for m in smtp.messages] == [LOGIN] * 3
    assert b'From: "root@laptop.example.net" <me@example.net>' in smtp.messages[0]["data"]
    assert b"From: <me@example.net>" in smtp.messages[2]["data"]
    assert endpoint.grants("refresh_token") == 1


@needs_msmtp
def test_a_refused_sender_is_deferred_and_reported_not_bounced(
    tree: Path, endpoint: TokenEndpoint, tmp_path: Path
) -> None:
    pytest.importorskip("aiosmtpd")
    assert oauth_setup(tree, endpoint)[0] == 0
    with OAuthSMTP(endpoint, only_sender="other@example.net") as smtp:
        _local_msmtprc(tree, smtp.port, "xoauth2")
        out = _deliver(tree, tmp_path, "", b"Subject: bounce\n\nx\n")
    assert out.startswith("Z") and SENDER_REFUSED in out and "--envelope-sender" in out, out
    assert smtp.messages == []
    code, text, _ = run(tree, "status")
    assert code == 1 and "refuses the envelope sender" in text and "553 5.7.1" in text
    assert any("--envelope-sender" in f.fix for f in verify.check(tree))


@needs_msmtp
def test_a_password_where_basic_auth_is_off_says_to_use_oauth(
    tree: Path, endpoint: TokenEndpoint, tmp_path: Path
) -> None:
    pytest.importorskip("aiosmtpd")
    (tree / "pw").write_text("secret\n")
    code, _, err = run(
        tree, "setup", "--smarthost", "smtp.office365.com:587", "--tls", "starttls",
        "--user", LOGIN, "--password-file", str(tree / "pw"),
    )  # fmt: skip
    assert code == 0, err
    with OAuthSMTP(endpoint, basic_auth_off=True) as smtp:
        rc = (tree / msmtprc.CONFIG.lstrip("/")).read_text().splitlines()
        keep = [line for line in rc if not line.startswith(("tls", "host", "port", "auth"))]
        keep += ["host 127.0.0.1", f"port {smtp.port}", "tls off", "auth plain"]
        (tree / "msmtprc").write_text("\n".join(keep) + "\n")
        (tree / "msmtprc").chmod(0o600)
        out = _deliver(tree, tmp_path, "root@laptop.example.net", b"Subject: x\n\ny\n")
    assert out.startswith("Z") and BASIC_AUTH_OFF in out and "--auth xoauth2" in out, out
    problem = submission_state.read(tree)
    assert problem is not None and "5.7.30" in problem["problem"]


# --- the documented commands -----------------------------------------------------------------


def _documented_setups() -> list[list[str]]:
    text = (Path(__file__).resolve().parent.parent / "docs/submission.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).strip()  # noqa: PLW2901
            if line.startswith("qmail-send-systemd setup"):  # as root: no sudo
                commands.append(shlex.split(line)[1:])
    return commands


def test_each_documented_provider_command_is_accepted() -> None:
    commands = _documented_setups()
    providers = [c[c.index("--smarthost") + 1] for c in commands if "--smarthost" in c]
    assert {"smtp.office365.com:587", "smtp.gmail.com:465", "smtp.fastmail.com:465"} <= set(
        providers
    )
    for argv in commands:
        args = cli.build_parser().parse_args(argv)
        relay._check_tls_options(args)  # every usage rule setup applies before it reads files
        if args.auth not in (None, "password"):
            assert oauth_setup_mod.settings(args)["token_url"].startswith("https://")
