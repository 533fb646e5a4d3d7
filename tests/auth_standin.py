"""A loopback stand-in for Supabase's auth server (GoTrue), for the fleet page's sign-in tests.

Supabase's auth service cannot run here, so this answers exactly the requests
``@supabase/ssr`` and ``@supabase/supabase-js`` (auth-js) make for the fleet
page, read from their source in cloud/nextjs/node_modules/@supabase/auth-js
(GoTrueClient.js, GoTrueAdminApi.js, lib/fetch.js):

* ``POST /auth/v1/token?grant_type=password|refresh_token|pkce`` -> a session
* ``GET  /auth/v1/user`` (Bearer access token) -> the user
* ``POST /auth/v1/otp`` -> records the magic link in :attr:`AuthStandIn.mailbox`
* ``GET  /auth/v1/verify?token=..&type=magiclink&redirect_to=..`` -> 303 to ``redirect_to?code=..``
* ``POST /auth/v1/logout`` -> the session ends (its tokens stop working)
* ``POST /auth/v1/invite`` (service-role key only) -> a user, the invite in the mailbox

and, for the browser scripts, ``GET /mailbox?to=EMAIL``: the mail sent to EMAIL
(as the Inbucket of Supabase's local stack), not part of the auth API.

Tokens are shaped as the real service's: an HS256 JWT access token with sub,
email, aud and role "authenticated", exp, session_id; a session JSON with
access_token, token_type, expires_in, expires_at, refresh_token and user.
Errors carry GoTrue's ``{"code", "error_code", "msg"}``. Every request is kept
in :attr:`AuthStandIn.seen` (method, path, X-Client-Info), so a test can show
the app reached it only through the libraries. Binds 127.0.0.1, port 0.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

ACCESS_TOKEN_SECONDS = 3600


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign_jwt(claims: dict[str, Any], secret: str) -> str:
    """An HS256 JWT of ``claims``, as GoTrue signs its access tokens."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(signature)}"


def read_jwt(token: str, secret: str) -> dict[str, Any] | None:
    """The claims of a JWT this stand-in signed and that has not expired, else None."""
    try:
        header, body, signature = token.split(".")
        expected = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_b64url(expected), signature):
            return None
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, TypeError):
        return None
    if not isinstance(claims, dict) or claims.get("exp", 0) < time.time():
        return None
    return claims


@dataclass
class User:
    id: str
    email: str
    password: str | None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "aud": "authenticated",
            "role": "authenticated",
            "email": self.email,
            "email_confirmed_at": self.created_at,
            "phone": "",
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {},
            "identities": [],
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "is_anonymous": False,
        }


class AuthStandIn:
    """The stand-in server; ``url`` is what NEXT_PUBLIC_SUPABASE_URL points at."""

    def __init__(self) -> None:
        self.jwt_secret = secrets.token_urlsafe(32)
        now = int(time.time())
        self.anon_key = sign_jwt(
            {"iss": "supabase", "role": "anon", "iat": now, "exp": now + 10**8}, self.jwt_secret
        )
        self.service_key = sign_jwt(
            {"iss": "supabase", "role": "service_role", "iat": now, "exp": now + 10**8},
            self.jwt_secret,
        )
        self.users: dict[str, User] = {}  # by lower-case email
        self.sessions: dict[str, str] = {}  # session id -> user id, while signed in
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> session id
        self.auth_codes: dict[str, tuple[str, str]] = {}  # code -> (user id, code challenge)
        self.pending_links: dict[
            str, tuple[str, str]
        ] = {}  # email token -> (user id, code challenge)
        self.mailbox: list[dict[str, str]] = []  # {"to", "kind", "link"}
        self.seen: list[dict[str, str]] = []  # {"method", "path", "client"} of every request
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> AuthStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def add_user(self, email: str, password: str | None = None) -> User:
        """A Supabase user of the project (signed up, email confirmed)."""
        with self.lock:
            user = User(str(uuid.uuid4()), email.lower(), password)
            self.users[user.email] = user
            return user

    def session_cookies(self, email: str, lifetime: int = ACCESS_TOKEN_SECONDS) -> dict[str, str]:
        """The cookies @supabase/ssr keeps for a new session of ``email`` (for tests that use requests).

        Its format: ``sb-<first label of the project's host>-auth-token`` =
        ``base64-`` + base64url(session JSON), cut into ``.0``, ``.1``... chunks
        over 3180 characters (@supabase/ssr's cookies.js and utils/chunker.js).
        ``lifetime``: seconds the access token is good for (short: the app must refresh it).
        """
        with self.lock:
            session = self._session(self.users[email.lower()], lifetime=lifetime)
        name = f"sb-{urlsplit(self.url).hostname.split('.')[0]}-auth-token"  # type: ignore[union-attr]
        value = "base64-" + _b64url(json.dumps(session).encode())
        if len(value) <= 3180:
            return {name: value}
        return {
            f"{name}.{i}": value[at : at + 3180] for i, at in enumerate(range(0, len(value), 3180))
        }

    def mail_to(self, email: str) -> list[dict[str, str]]:
        with self.lock:
            return [m for m in self.mailbox if m["to"] == email.lower()]

    # -- tokens ------------------------------------------------------------

    def _session(
        self, user: User, session_id: str | None = None, lifetime: int = ACCESS_TOKEN_SECONDS
    ) -> dict[str, Any]:
        session_id = session_id or str(uuid.uuid4())
        now = int(time.time())
        access = sign_jwt(
            {
                "iss": f"{self.url}/auth/v1",
                "sub": user.id,
                "aud": "authenticated",
                "role": "authenticated",
                "email": user.email,
                "phone": "",
                "app_metadata": {"provider": "email", "providers": ["email"]},
                "user_metadata": {},
                "aal": "aal1",
                "amr": [{"method": "password", "timestamp": now}],
                "session_id": session_id,
                "is_anonymous": False,
                "iat": now,
                "exp": now + lifetime,
            },
            self.jwt_secret,
        )
        refresh = secrets.token_urlsafe(16)
        self.sessions[session_id] = user.id
        self.refresh_tokens[refresh] = session_id
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": lifetime,
            "expires_at": now + lifetime,
            "refresh_token": refresh,
            "user": user.json(),
        }

    def _user_by_id(self, user_id: str) -> User | None:
        return next((u for u in self.users.values() if u.id == user_id), None)

    def _bearer_user(self, authorization: str | None) -> tuple[User, str] | None:
        token = (authorization or "").removeprefix("Bearer ").strip()
        claims = read_jwt(token, self.jwt_secret)
        if claims is None or claims.get("role") != "authenticated":
            return None
        session_id = str(claims.get("session_id", ""))
        user = self._user_by_id(self.sessions.get(session_id, ""))
        return (user, session_id) if user is not None else None

    # -- HTTP ----------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
                pass

            def _answer(
                self, status: int, body: Any = None, headers: dict[str, str] | None = None
            ) -> None:
                raw = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Supabase-Api-Version", "2024-01-01")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _error(self, status: int, error_code: str, msg: str) -> None:
                self._answer(status, {"code": status, "error_code": error_code, "msg": msg})

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    return {}
                return body if isinstance(body, dict) else {}

            def _route(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if (method, parts.path) == ("GET", "/mailbox"):
                    # the test's inbox (Supabase's local stack has Inbucket for this): not auth's API
                    self._answer(200, standin.mail_to(query.get("to", "")))
                    return
                with standin.lock:
                    standin.seen.append(
                        {
                            "method": method,
                            "path": parts.path,
                            "query": parts.query,
                            "client": self.headers.get("X-Client-Info", ""),
                        }
                    )
                public = parts.path == "/auth/v1/verify"  # the emailed link, opened by a browser
                if not public and self.headers.get("apikey") not in (
                    standin.anon_key,
                    standin.service_key,
                ):
                    self._error(401, "no_api_key", "No API key found in request")
                    return
                route = (method, parts.path)
                body = self._body() if method == "POST" else {}
                with standin.lock:
                    if route == ("POST", "/auth/v1/token"):
                        self._token(query.get("grant_type", ""), body)
                    elif route == ("GET", "/auth/v1/user"):
                        found = standin._bearer_user(self.headers.get("Authorization"))
                        if found is None:
                            self._error(
                                403, "bad_jwt", "invalid JWT: unable to parse or verify signature"
                            )
                        else:
                            self._answer(200, found[0].json())
                    elif route == ("POST", "/auth/v1/otp"):
                        self._otp(body, query.get("redirect_to", ""))
                    elif route == ("GET", "/auth/v1/verify"):
                        self._verify(query)
                    elif route == ("POST", "/auth/v1/logout"):
                        found = standin._bearer_user(self.headers.get("Authorization"))
                        if found is not None:
                            standin.sessions.pop(found[1], None)
                        self._answer(204)
                    elif route == ("POST", "/auth/v1/invite"):
                        self._invite(body, query.get("redirect_to", ""))
                    else:
                        self._error(
                            404, "not_found", f"the stand-in does not answer {method} {parts.path}"
                        )

            def _token(self, grant: str, body: dict[str, Any]) -> None:
                if grant == "password":
                    user = standin.users.get(str(body.get("email", "")).lower())
                    if (
                        user is None
                        or user.password is None
                        or user.password != body.get("password")
                    ):
                        self._error(400, "invalid_credentials", "Invalid login credentials")
                        return
                    self._answer(200, standin._session(user))
                elif grant == "refresh_token":
                    session_id = standin.refresh_tokens.pop(str(body.get("refresh_token", "")), "")
                    user = standin._user_by_id(standin.sessions.get(session_id, ""))
                    if user is None:
                        self._error(
                            400,
                            "refresh_token_not_found",
                            "Invalid Refresh Token: Refresh Token Not Found",
                        )
                        return
                    self._answer(200, standin._session(user, session_id))
                elif grant == "pkce":
                    user_id, challenge = standin.auth_codes.pop(
                        str(body.get("auth_code", "")), ("", "")
                    )
                    verifier = str(body.get("code_verifier", ""))
                    made = _b64url(hashlib.sha256(verifier.encode()).digest())
                    user = standin._user_by_id(user_id)
                    if user is None or not hmac.compare_digest(made, challenge):
                        self._error(
                            403,
                            "flow_state_not_found",
                            "invalid flow state, no valid flow state found",
                        )
                        return
                    self._answer(200, standin._session(user))
                else:
                    self._error(400, "validation_failed", f"unsupported_grant_type {grant}")

            def _otp(self, body: dict[str, Any], redirect_to: str) -> None:
                email = str(body.get("email", "")).lower()
                user = standin.users.get(email)
                if user is None and body.get("create_user") is False:
                    self._error(422, "otp_disabled", "Signups not allowed for otp")
                    return
                if user is None:
                    user = User(str(uuid.uuid4()), email, None)
                    standin.users[email] = user
                challenge = str(body.get("code_challenge") or "")
                if body.get("code_challenge_method") not in ("s256", "S256") or not challenge:
                    self._error(400, "validation_failed", "PKCE flow only in this stand-in")
                    return
                token = "pkce_" + secrets.token_hex(16)
                standin.pending_links[token] = (user.id, challenge)
                link = f"{standin.url}/auth/v1/verify?" + urlencode(
                    {"token": token, "type": "magiclink", "redirect_to": redirect_to}
                )
                standin.mailbox.append({"to": email, "kind": "magiclink", "link": link})
                self._answer(200, {})

            def _verify(self, query: dict[str, str]) -> None:
                found = standin.pending_links.pop(query.get("token", ""), None)
                redirect_to = query.get("redirect_to", "")
                if found is None or not redirect_to:
                    self._error(403, "otp_expired", "Email link is invalid or has expired")
                    return
                code = str(uuid.uuid4())
                standin.auth_codes[code] = found
                joiner = "&" if "?" in redirect_to else "?"
                self._answer(303, None, {"Location": f"{redirect_to}{joiner}code={code}"})

            def _invite(self, body: dict[str, Any], redirect_to: str) -> None:
                if self.headers.get("Authorization") != f"Bearer {standin.service_key}":
                    self._error(403, "not_admin", "User not allowed")
                    return
                email = str(body.get("email", "")).lower()
                if email in standin.users:
                    self._error(
                        422,
                        "email_exists",
                        "A user with this email address has already been registered",
                    )
                    return
                user = User(str(uuid.uuid4()), email, None)
                standin.users[email] = user
                standin.mailbox.append({"to": email, "kind": "invite", "link": redirect_to})
                self._answer(200, user.json())

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._route("GET")

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self._route("POST")

        return Handler
