"""OAuth 2.0 for the submission route: a grant obtained once, access tokens for msmtp.

`setup --tls ... --auth xoauth2|oauthbearer --oauth-provider microsoft|google` obtains a grant
(a refresh token) before it writes anything, with the flow each provider offers a command-line
tool: Microsoft's identity platform, the device authorization grant (RFC 8628: a URL and a code
to enter in any browser); Google, the installed-app flow with a loopback redirect (RFC 8252:
the browser comes back to a one-shot HTTP listener on 127.0.0.1, with PKCE). msmtp then logs in
with `auth xoauth2` (or `oauthbearer`) and `passwordeval "qmail-send-systemd oauth-token"`,
which prints an access token: the cached one while it is valid, else a new one from the refresh
grant (RFC 6749, section 6).

Files (docs/submission.md):
- /etc/qmail-send-systemd/oauth.conf (root, 0644): provider, client id, tenant, scope and the
  endpoints, public data; any endpoint may be overridden there (`setup --oauth-setting`).
- /var/lib/qmail-send-systemd/submission/oauth-grant (qmailr, 0600): the refresh token (and
  Google's client secret), the route's secret like a password: one copy, never backed up,
  gone with the package's purge. It is there, not in /etc, because a provider may hand out a
  new refresh token with each access token, and the unit keeps /etc read-only.
- .../submission/oauth-access (qmailr, 0600): the current access token and its expiry.

An expired or revoked grant (`invalid_grant`) is a deferral, never a bounce: our qmail-remote
asks for the token before msmtp runs, and reports `Z` with the one command that re-authorises
(`sudo qmail-send-systemd oauth-authorize`), which `status` and `verify` show too
(submission_state.py). Stdlib only; every failure is a HelperError: one line and its fix.
"""

from __future__ import annotations

import json
import os
import time

from qmail_send_systemd import submission_state
from qmail_send_systemd.errors import HelperError, UsageError
from qmail_send_systemd.msmtprc import read_config
from qmail_send_systemd.password_file import read_password

TYPE_CHECKING = False  # not typing's: see start.py
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

CONF = "/etc/qmail-send-systemd/oauth.conf"
GRANT = "oauth-grant"  # in submission_state.STATE_DIR
ACCESS = "oauth-access"
LOCK = "oauth.lock"
HELPER = "/usr/sbin/qmail-send-systemd"
REAUTHORIZE = "sudo qmail-send-systemd oauth-authorize"
MECHANISMS = ("xoauth2", "oauthbearer")
# An access token this close to its expiry is renewed first: a delivery may take a while.
MARGIN = 120
HTTP_TIMEOUT = 30
FLOW_TIMEOUT = 900  # seconds an administrator has to authorise in the browser
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")

PROVIDERS: dict[str, dict[str, str]] = {
    # Microsoft identity platform, v2.0 endpoints; SMTP.Send is Exchange Online's scope for
    # SMTP AUTH, offline_access the one that yields a refresh token.
    "microsoft": {
        "flow": "device",
        "tenant": "organizations",
        "device_url": "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode",
        "token_url": "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        "scope": "https://outlook.office.com/SMTP.Send offline_access",
    },
    # Google: the installed-app flow (a "Desktop app" OAuth client); https://mail.google.com/
    # is the one scope Gmail's SMTP accepts.
    "google": {
        "flow": "loopback",
        "authorize_url": "https://accounts.google.com/o/oauth2/v2/auth",
        "token_url": "https://oauth2.googleapis.com/token",
        "scope": "https://mail.google.com/",
    },
}
SETTINGS = (
    "provider",
    "flow",
    "client_id",
    "tenant",
    "scope",
    "device_url",
    "authorize_url",
    "token_url",
    "login_hint",
)
OVERRIDABLE = ("scope", "device_url", "authorize_url", "token_url")
FLOWS = ("device", "loopback")


class GrantError(HelperError):
    """The grant itself is no longer good (expired, revoked, its client gone): only the
    administrator can renew it. Mail waits meanwhile."""

    def __init__(self, message: str) -> None:
        super().__init__(message, f"`{REAUTHORIZE}`, then `sudo qmail-send-systemd flush`")


# --- settings --------------------------------------------------------------------------------


def _is_url(url: str) -> bool:
    """https, or plain http to this machine only (a test's or a local proxy's endpoint)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname or not all(c.isprintable() and not c.isspace() for c in url):
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def settings_for(
    provider: str, client_id: str, tenant: str | None, overrides: Mapping[str, str], user: str
) -> dict[str, str]:
    """oauth.conf's settings from setup's options; raise UsageError on anything malformed."""
    if provider not in PROVIDERS:
        raise UsageError(f"unknown --oauth-provider {provider!r}", "microsoft or google")
    if not client_id or not all(c.isprintable() and not c.isspace() for c in client_id):
        raise UsageError(
            f"malformed --oauth-client-id {client_id!r}",
            "the application (client) ID of the app you registered with the provider",
        )
    values = dict(PROVIDERS[provider])
    if tenant is not None:
        if provider != "microsoft":
            raise UsageError("--oauth-tenant is Microsoft's", "leave it out for Google")
        if not tenant or not all(c.isalnum() or c in ".-" for c in tenant):
            raise UsageError(
                f"malformed --oauth-tenant {tenant!r}",
                "the directory (tenant) ID or domain, e.g. contoso.onmicrosoft.com",
            )
        values["tenant"] = tenant
    for key, value in overrides.items():
        if key not in OVERRIDABLE:
            raise UsageError(f"unknown --oauth-setting {key!r}", "one of " + ", ".join(OVERRIDABLE))
        values[key] = value
    for key in ("device_url", "authorize_url", "token_url"):
        if key in values:
            values[key] = values[key].replace("{tenant}", values.get("tenant", ""))
            if not _is_url(values[key]):
                raise UsageError(
                    f"--oauth-setting {key}={values[key]!r} is not an https URL",
                    "give https://..., or http:// to 127.0.0.1 for a local endpoint",
                )
    if not values["scope"].strip() or not values["scope"].isprintable():
        raise UsageError("--oauth-setting scope= is empty", "give the provider's SMTP scope")
    values.update(provider=provider, client_id=client_id, login_hint=user)
    return values


def render_conf(settings: Mapping[str, str]) -> bytes:
    lines = [
        "# Written by `qmail-send-systemd setup --auth` (docs/submission.md): how the helper",
        "# obtains and renews the OAuth 2.0 access token msmtp logs in with. No secret here:",
        "# the refresh token is in /var/lib/qmail-send-systemd/submission/oauth-grant.",
    ]
    lines += [f'{key} "{settings[key]}"' for key in SETTINGS if settings.get(key)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def read_conf(root: str | Path) -> dict[str, str]:

    file = os.path.join(str(root), CONF.lstrip("/"))
    try:
        conf = read_config(file)
    except OSError as exc:
        raise HelperError(
            f"cannot read {file}: {exc.strerror}",
            "run `qmail-send-systemd setup ... --auth xoauth2 --oauth-provider ...`",
        ) from exc
    missing = [key for key in ("flow", "client_id", "token_url", "scope") if not conf.get(key)]
    if missing or conf["flow"] not in FLOWS:
        raise HelperError(
            f"{file} lacks {', '.join(missing) or 'a known flow'}", "rerun setup with --auth"
        )
    return conf


def msmtp_auth_lines(mechanism: str, helper: str = HELPER) -> list[str]:
    """msmtprc's login with a token: no password in the file, a fresh token at each login."""
    return [f"auth {mechanism}", f'passwordeval "{helper} oauth-token"']


# --- HTTP ------------------------------------------------------------------------------------


def _json(body: bytes) -> dict[str, object] | None:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def post(url: str, fields: Mapping[str, str]) -> dict[str, object]:
    """POST a form, return the JSON object; an OAuth error answer (400 + `error`) is returned
    too, for the caller to judge. Anything else is a one-line HelperError."""
    import urllib.error
    import urllib.parse
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - settings_for allows https (and loopback)
        url,
        data=urllib.parse.urlencode(dict(fields)).encode("ascii"),
        headers={"Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as exc:
        answer = _json(exc.read())
        if answer is not None and isinstance(answer.get("error"), str):
            return answer
        raise HelperError(
            f"{url} answered HTTP {exc.code} {exc.reason}", "check the endpoint in " + CONF
        ) from exc
    except urllib.error.URLError as exc:
        raise HelperError(
            f"cannot reach {url}: {exc.reason}", "check the network; mail waits in the queue"
        ) from exc
    except OSError as exc:
        raise HelperError(
            f"cannot reach {url}: {exc}", "check the network; mail waits in the queue"
        ) from exc
    answer = _json(body)
    if answer is None:
        raise HelperError(f"{url} did not answer a JSON object", "check the endpoint in " + CONF)
    return answer


def _described(answer: Mapping[str, object]) -> str:
    error = str(answer.get("error"))
    text = str(answer.get("error_description") or "").strip().splitlines()
    return f"{error}: {text[0]}" if text else error


def _need(answer: Mapping[str, object], key: str, url: str) -> str:
    value = answer.get(key)
    if not isinstance(value, str) or not value:
        raise HelperError(f"{url} answered without {key}", "check the endpoint in " + CONF)
    return value


def _seconds(answer: Mapping[str, object], key: str, default: int) -> int:
    value = answer.get(key, default)
    try:
        return max(1, int(str(value)))
    except ValueError:
        return default


# --- obtaining the grant ---------------------------------------------------------------------


def _client(conf: Mapping[str, str], client_secret: str) -> dict[str, str]:
    fields = {"client_id": conf["client_id"]}
    if client_secret:
        fields["client_secret"] = client_secret
    return fields


def _grant_from(answer: Mapping[str, object], url: str, client_secret: str) -> dict[str, str]:
    if "error" in answer:
        raise HelperError(
            f"the provider refused the authorisation: {_described(answer)}",
            "check the client ID, the tenant and the app's permissions, then run again",
        )
    refresh = answer.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        raise HelperError(
            f"{url} gave no refresh token",
            "the scope must allow offline use (Microsoft: offline_access; Google: access_type"
            "=offline, which setup asks for)",
        )
    grant = {"refresh_token": refresh}
    if client_secret:
        grant["client_secret"] = client_secret
    access = answer.get("access_token")
    if isinstance(access, str) and access:
        grant["access_token"] = access
        grant["expires_in"] = str(_seconds(answer, "expires_in", 3600))
    return grant


def device_flow(
    conf: Mapping[str, str],
    client_secret: str,
    out: Callable[[str], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, str]:
    """RFC 8628: ask for a user code, show where to enter it, poll the token endpoint."""
    url = conf["device_url"]
    answer = post(url, {**_client(conf, client_secret), "scope": conf["scope"]})
    if "error" in answer:
        raise HelperError(
            f"{url} refused the device authorisation: {_described(answer)}",
            "check the client ID and the tenant, and that the app allows public client flows",
        )
    device_code = _need(answer, "device_code", url)
    user_code = _need(answer, "user_code", url)
    # RFC 8628 says verification_uri; Google's device endpoint says verification_url.
    where = answer.get("verification_uri") or answer.get("verification_url")
    if not isinstance(where, str) or not where:
        raise HelperError(f"{url} answered without verification_uri", "check " + CONF)
    interval = _seconds(answer, "interval", 5)
    deadline = clock() + min(_seconds(answer, "expires_in", FLOW_TIMEOUT), FLOW_TIMEOUT)
    out(f"To authorise, open {where} in any browser and enter the code {user_code}")
    complete = answer.get("verification_uri_complete")
    if isinstance(complete, str) and complete:
        out(f"(or open {complete})")
    out("Waiting for the authorisation ...")
    token_url = conf["token_url"]
    fields = {
        **_client(conf, client_secret),
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": device_code,
    }
    while True:
        if clock() >= deadline:
            raise HelperError("the code expired before it was entered", "run the command again")
        sleep(interval)
        answer = post(token_url, fields)
        error = answer.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5  # RFC 8628, 3.5
            continue
        if error == "expired_token":
            raise HelperError("the code expired before it was entered", "run the command again")
        if error in ("access_denied", "authorization_declined"):
            raise HelperError("the authorisation was declined in the browser", "run it again")
        return _grant_from(answer, token_url, client_secret)


def _pkce() -> tuple[str, str]:
    import base64
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(48)  # 64 characters of [A-Za-z0-9_-] (RFC 7636: 43..128)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def loopback_flow(
    conf: Mapping[str, str],
    client_secret: str,
    out: Callable[[str], None],
    *,
    port: int = 0,
    timeout: float = FLOW_TIMEOUT,
) -> dict[str, str]:
    """RFC 8252's loopback redirect with PKCE (Google's installed-app flow): show the URL,
    take the one redirect that carries our state, exchange its code."""
    import http.server
    import secrets
    import urllib.parse

    verifier, challenge = _pkce()
    state = secrets.token_urlsafe(16)
    got: dict[str, str] = {}

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            ours = query.get("state") == state
            if ours:
                got.update(query)
            text = (
                "qmail-send-systemd: authorisation received; you may close this page.\n"
                if ours and "code" in query
                else "qmail-send-systemd: this is not the answer it waits for.\n"
            )
            self.send_response(200 if ours else 400)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write(text.encode())

        def log_message(self, format: str, *args: object) -> None:
            pass  # the code must not reach a terminal's scrollback or a log

    try:
        server = http.server.HTTPServer(("127.0.0.1", port), Redirect)
    except OSError as exc:
        raise HelperError(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror}", "free the port or pick another"
        ) from exc
    with server:
        redirect = f"http://127.0.0.1:{server.server_port}/"
        fields = {
            "response_type": "code",
            "client_id": conf["client_id"],
            "redirect_uri": redirect,
            "scope": conf["scope"],
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "access_type": "offline",  # Google: a refresh token
            "prompt": "consent",  # Google: a refresh token even when consented before
        }
        if conf.get("login_hint"):
            fields["login_hint"] = conf["login_hint"]
        url = conf["authorize_url"] + "?" + urllib.parse.urlencode(fields)
        out("To authorise, open this URL in a browser on this machine:")
        out(url)
        out(
            f"(on another machine: first `ssh -L {server.server_port}:127.0.0.1:"
            f"{server.server_port}` to this one)"
        )
        out(f"Waiting for the browser to come back to {redirect} ...")
        deadline = time.monotonic() + timeout
        while not got:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HelperError("no answer came back from the browser", "run it again")
            server.timeout = left
            server.handle_request()
    if "error" in got:
        raise HelperError(
            f"the authorisation was refused: {got['error']}", "run it again and allow access"
        )
    if not got.get("code"):
        raise HelperError("the browser came back without a code", "run it again")
    token_url = conf["token_url"]
    answer = post(
        token_url,
        {
            **_client(conf, client_secret),
            "grant_type": "authorization_code",
            "code": got["code"],
            "redirect_uri": redirect,
            "code_verifier": verifier,
        },
    )
    return _grant_from(answer, token_url, client_secret)


def obtain(
    conf: Mapping[str, str], client_secret: str, out: Callable[[str], None], *, port: int = 0
) -> dict[str, str]:
    """A new grant, by the provider's flow (port: the loopback flow's, 0 for any)."""
    if conf["flow"] == "device":
        return device_flow(conf, client_secret, out)
    return loopback_flow(conf, client_secret, out, port=port)


# --- the grant's files -----------------------------------------------------------------------


def _read_json(file: str) -> dict[str, str] | None:
    try:
        with open(file, encoding="utf-8") as f:
            value = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def grant_bytes(grant: Mapping[str, str]) -> bytes:
    keep = {k: grant[k] for k in ("refresh_token", "client_secret") if grant.get(k)}
    return (json.dumps(keep, sort_keys=True) + "\n").encode("utf-8")


def access_bytes(token: str, expires_at: float) -> bytes:
    return (json.dumps({"access_token": token, "expires_at": int(expires_at)}) + "\n").encode()


def read_grant(root: str | Path) -> dict[str, str]:
    file = submission_state.path(root, GRANT)
    try:
        grant = _read_json(file)
    except OSError as exc:
        raise HelperError(
            f"cannot read {file}: {exc.strerror}", "run as qmailr or root (msmtp runs as qmailr)"
        ) from exc
    if grant is None:
        raise GrantError(f"there is no OAuth grant ({file} is missing)")
    if not grant.get("refresh_token"):
        raise GrantError(f"{file} holds no refresh token")
    return grant


def refresh(conf: Mapping[str, str], grant: Mapping[str, str]) -> dict[str, object]:
    """RFC 6749, 6: a new access token (and maybe a new refresh token) for the grant."""
    url = conf["token_url"]
    answer = post(
        url,
        {
            **_client(conf, grant.get("client_secret", "")),
            "grant_type": "refresh_token",
            "refresh_token": grant["refresh_token"],
            # Microsoft's v2.0 endpoint wants the scope again; Google's takes the grant's.
            **({"scope": conf["scope"]} if conf.get("flow") == "device" else {}),
        },
    )
    error = answer.get("error")
    if error in ("invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope"):
        raise GrantError(f"the OAuth grant is no longer valid ({_described(answer)})")
    if error is not None:
        raise HelperError(
            f"{url} refused to renew the access token: {_described(answer)}",
            "mail waits in the queue; it is retried",
        )
    return answer


def access_token(root: str | Path, *, now: Callable[[], float] = time.time) -> str:
    """A valid access token: the cached one, else a refreshed one (cached for the next
    deliveries; concurrent qmail-remotes wait for one refresh). A GrantError is also recorded
    for `status` and `verify`."""
    import fcntl

    conf = read_conf(root)
    cache = submission_state.path(root, ACCESS)

    def cached() -> str | None:
        try:
            entry = _read_json(cache) or {}
        except OSError:
            return None
        token, expires = entry.get("access_token", ""), entry.get("expires_at", "")
        return token if token and expires.isdigit() and int(expires) > now() + MARGIN else None

    token = cached()
    if token is not None:
        return token
    try:
        lock = os.open(submission_state.path(root, LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        if os.geteuid() == 0:  # root trying the command: the lock stays qmailr's
            st = os.stat(submission_state.path(root, ""))
            os.fchown(lock, st.st_uid, st.st_gid)
    except OSError as exc:
        raise HelperError(
            f"cannot open {submission_state.path(root, LOCK)}: {exc.strerror}",
            "run as qmailr or root; rerun setup to repair the directory",
        ) from exc
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        token = cached()  # another delivery may have refreshed it meanwhile
        if token is not None:
            return token
        try:
            grant = read_grant(root)
            answer = refresh(conf, grant)
        except GrantError as exc:
            submission_state.record(root, "oauth", exc.message, exc.fix)
            raise
        token = _need(answer, "access_token", conf["token_url"])
        expires_at = now() + _seconds(answer, "expires_in", 3600)
        new_refresh = answer.get("refresh_token")
        if isinstance(new_refresh, str) and new_refresh and new_refresh != grant["refresh_token"]:
            # Rotated: the old one may stop working at once. One copy, replaced atomically.
            submission_state.write_private(
                submission_state.path(root, GRANT),
                grant_bytes({**grant, "refresh_token": new_refresh}),
            )
        submission_state.write_private(cache, access_bytes(token, expires_at))
        submission_state.clear(root, "oauth")
        return token
    finally:
        os.close(lock)


def authorize(root: Path, out: Callable[[str], None] = print) -> int:
    """`oauth-authorize`: a new grant with the settings setup wrote, replacing the old one."""
    conf = read_conf(root)
    try:
        old = read_grant(root)
    except GrantError:
        old = {}
    if conf.get("provider") == "google" and not old.get("client_secret"):
        raise HelperError(
            "Google's client secret is not kept any more",
            "rerun setup with --oauth-client-secret-file",
        )
    grant = obtain(conf, old.get("client_secret", ""), out)
    store(root, grant)
    out("authorised: `sudo qmail-send-systemd flush` sends the waiting mail now")
    return 0


def store(root: Path, grant: Mapping[str, str]) -> None:
    """The new grant, and its first access token; the problem it solves is gone."""
    submission_state.write_private(submission_state.path(root, GRANT), grant_bytes(grant))
    cache = submission_state.path(root, ACCESS)
    if grant.get("access_token"):
        expires_at = time.time() + int(grant.get("expires_in", "3600"))
        submission_state.write_private(cache, access_bytes(grant["access_token"], expires_at))
    elif os.path.lexists(cache):
        os.unlink(cache)
    submission_state.clear(root, "oauth")


def print_token(root: Path) -> int:
    """`oauth-token`, msmtp's passwordeval: the token alone on stdout."""
    import sys

    sys.stdout.write(access_token(root) + "\n")
    return 0


def read_secret(path: str) -> str:

    try:
        return read_password(path)
    except UsageError as exc:
        raise UsageError(exc.message.replace("password", "client secret"), exc.fix) from exc
