"""A provider on 127.0.0.1 for the OAuth 2.0 route: a token endpoint and an SMTP server.

No real provider is reachable from the tests, so this stands in for Microsoft's identity
platform and Google's OAuth server, and for their submission servers (docs/submission.md):

- `TokenEndpoint`: RFC 8628's device authorization endpoint (`/devicecode`, approved after a
  set number of polls, as if the administrator entered the code), the authorization endpoint
  of the loopback flow (`/authorize`: redirects to the loopback redirect_uri with a code, as a
  browser would come back), and the token endpoint (`/token`: device_code, authorization_code
  with PKCE S256, refresh_token). Access tokens expire after `expires_in` seconds; `revoke()`
  makes every refresh token answer `invalid_grant`; `rotate` hands out a new refresh token
  with each refresh, as Microsoft does. Every request is recorded.
- `OAuthSMTP`: aiosmtpd (Debian's python3-aiosmtpd or PyPI's) with AUTH XOAUTH2 and
  OAUTHBEARER checking the endpoint's live access tokens; `only_sender` refuses any other
  envelope sender with 553 5.7.1 (what most providers do); `basic_auth_off` answers a password
  login as Microsoft 365 does once basic authentication is off (550 5.7.30). Accepted messages
  are kept in `messages`.

Both are threads in the test's process, listening on 127.0.0.1 at a free port, and stop on
leaving their `with` block.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CLIENT_ID = "qss-test-client"
CLIENT_SECRET = "qss-test-secret"  # noqa: S105 - a throwaway for the loopback flow's client
BASIC_AUTH_OFF = "550 5.7.30 Basic authentication is not supported for Client Submission"
SENDER_REFUSED = "553 5.7.1 Sender address rejected: not owned by user"


@dataclass
class _Code:
    challenge: str
    redirect_uri: str


@dataclass
class TokenEndpoint:
    """The provider's OAuth side. Use as a context manager; `url` is its base."""

    expires_in: int = 3600
    approve_after: int = 1  # device flow: polls answered authorization_pending first
    rotate: bool = False
    client_secret: str | None = None  # required by the token endpoint when set (Google)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    access: dict[str, float] = field(default_factory=dict)  # token -> expiry (time.time())
    refresh_tokens: set[str] = field(default_factory=set)
    revoked: bool = False
    polls: int = 0
    _codes: dict[str, _Code] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "use TokenEndpoint as a context manager"
        return f"http://127.0.0.1:{self._server.server_port}"

    def settings(self) -> list[str]:
        """setup's --oauth-setting options that point the helper here."""
        return [
            f"device_url={self.url}/devicecode",
            f"authorize_url={self.url}/authorize",
            f"token_url={self.url}/token",
        ]

    def revoke(self) -> None:
        with self._lock:
            self.revoked = True

    def valid(self, token: str) -> bool:
        with self._lock:
            return self.access.get(token, 0) > time.time()

    def expire_access_tokens(self) -> None:
        with self._lock:
            for token in self.access:
                self.access[token] = 0

    def grants(self, kind: str) -> int:
        return sum(1 for path, form in self.requests if form.get("grant_type") == kind)

    def __enter__(self) -> TokenEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query))
                endpoint.requests.append((parts.path, query))
                if parts.path != "/authorize":
                    self._answer(404, {"error": "not_found"})
                    return
                location = endpoint._authorize(query)
                self.send_response(302)
                self.send_header("Location", location)
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                endpoint.requests.append((self.path, form))
                if self.path == "/devicecode":
                    status, answer = endpoint._device(form)
                elif self.path == "/token":
                    status, answer = endpoint._token(form)
                else:
                    status, answer = 404, {"error": "not_found"}
                self._answer(status, answer)

            def _answer(self, status: int, answer: dict[str, Any]) -> None:
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # --- the grants ---------------------------------------------------------------------

    def _issue(self, with_refresh: bool = True) -> dict[str, Any]:
        token = "at-" + secrets.token_urlsafe(12)
        answer: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": token,
            "expires_in": self.expires_in,
        }
        with self._lock:
            self.access[token] = time.time() + self.expires_in
            if with_refresh:
                refresh = "rt-" + secrets.token_urlsafe(12)
                self.refresh_tokens.add(refresh)
                answer["refresh_token"] = refresh
        return answer

    def _client_ok(self, form: dict[str, str]) -> bool:
        if form.get("client_id") != CLIENT_ID:
            return False
        return self.client_secret is None or form.get("client_secret") == self.client_secret

    def _device(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != CLIENT_ID:
            return 400, {"error": "invalid_client", "error_description": "unknown client"}
        return 200, {
            "device_code": "dc-" + secrets.token_urlsafe(8),
            "user_code": "QSS-1234",
            "verification_uri": f"{self.url}/device",
            "expires_in": 900,
            "interval": 1,
        }

    def _authorize(self, query: dict[str, str]) -> str:
        redirect = query.get("redirect_uri", "")
        state = query.get("state", "")
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
            return (
                redirect
                + "?"
                + urllib.parse.urlencode({"error": "invalid_request", "state": state})
            )
        code = "code-" + secrets.token_urlsafe(8)
        self._codes[code] = _Code(query.get("code_challenge", ""), redirect)
        return redirect + "?" + urllib.parse.urlencode({"code": code, "state": state})

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if not self._client_ok(form):
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000218: bad client",
            }
        kind = form.get("grant_type")
        if kind == "urn:ietf:params:oauth:grant-type:device_code":
            self.polls += 1
            if self.polls <= self.approve_after:
                return 400, {"error": "authorization_pending"}
            return 200, self._issue()
        if kind == "authorization_code":
            code = self._codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "").encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
            if (
                code is None
                or code.redirect_uri != form.get("redirect_uri")
                or (digest.decode() != code.challenge)
            ):
                return 400, {"error": "invalid_grant", "error_description": "bad code"}
            return 200, self._issue()
        if kind == "refresh_token":
            refresh = form.get("refresh_token", "")
            if self.revoked or refresh not in self.refresh_tokens:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "AADSTS50173: The provided grant has expired due to "
                    "it being revoked, a fresh auth token is needed.",
                }
            answer = self._issue(with_refresh=self.rotate)
            if self.rotate:
                with self._lock:
                    self.refresh_tokens.discard(refresh)
            return 200, answer
        return 400, {"error": "unsupported_grant_type"}


# --- the SMTP side ---------------------------------------------------------------------------


def make_certificate(directory: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (openssl), as msmtp's trust file and the
    server's: (certificate, key)."""
    import os
    import subprocess

    cert, key = os.path.join(directory, "server.pem"), os.path.join(directory, "server.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _bearer(text: str) -> str:
    """The token of an XOAUTH2 or OAUTHBEARER initial response (\\x01-separated fields)."""
    for part in text.split("\x01"):
        if part.lower().startswith("auth=bearer "):
            return part[len("auth=Bearer ") :]
    return ""


class OAuthSMTP:
    """aiosmtpd with XOAUTH2 and OAUTHBEARER against `tokens`; a context manager."""

    def __init__(
        self,
        tokens: TokenEndpoint,
        *,
        only_sender: str | None = None,
        basic_auth_off: bool = False,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.tokens, self.only_sender, self.basic_auth_off = tokens, only_sender, basic_auth_off
        self.tls = tls  # (certificate, key): STARTTLS required before AUTH and MAIL
        self.messages: list[dict[str, Any]] = []
        self.auth: list[str] = []  # the mechanism of each successful login
        self.secure: list[bool] = []  # whether TLS was up for it
        self.port = 0
        self._controller: Any = None

    def __enter__(self) -> OAuthSMTP:
        import socket

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        server = self

        class Handler:
            async def auth_XOAUTH2(self, smtp: Any, args: list[str]) -> Any:
                return await self._bearer(smtp, args, "XOAUTH2")

            async def auth_OAUTHBEARER(self, smtp: Any, args: list[str]) -> Any:
                return await self._bearer(smtp, args, "OAUTHBEARER")

            async def _bearer(self, smtp: Any, args: list[str], mechanism: str) -> Any:
                if len(args) > 1:
                    blob = base64.b64decode(args[1]).decode("utf-8", "replace")
                else:
                    answer = await smtp.challenge_auth("", encode_to_b64=False)
                    blob = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else ""
                if server.tokens.valid(_bearer(blob)):
                    server.auth.append(mechanism)
                    server.secure.append(smtp.session.ssl is not None)
                    return AuthResult(success=True)
                return AuthResult(success=False, handled=False)

            async def handle_MAIL(
                self, smtp: Any, session: Any, envelope: Any, address: str, options: list[str]
            ) -> str:
                if server.only_sender is not None and address != server.only_sender:
                    return SENDER_REFUSED
                envelope.mail_from = address
                envelope.mail_options.extend(options)
                return "250 OK"

            async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
                server.messages.append(
                    {
                        "from": envelope.mail_from,
                        "to": list(envelope.rcpt_tos),
                        "data": envelope.content,
                    }
                )
                return "250 OK queued"

        def authenticator(*args: Any) -> Any:
            message = BASIC_AUTH_OFF if server.basic_auth_off else None
            return AuthResult(success=False, handled=False, message=message)

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        secure: dict[str, Any] = {"auth_require_tls": False}  # in clear on the loopback
        if self.tls is not None:
            import ssl

            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
            secure = {"tls_context": context, "require_starttls": True}
        self._controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            auth_required=True,
            authenticator=authenticator,
            **secure,
        )
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
