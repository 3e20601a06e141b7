"""Who is asking: a logged-in session (pages) or an API token (robots), checked on every
request except the few public paths.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import DefineMiddleware
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)

from jobs.db import session_scope
from jobs.models import User
from web.accounts.service import session_stamp, user_for_token

# Paths anyone may reach: signing in, first set-up, static files, the API description,
# and embed links (which carry their own revocable token).
PUBLIC_PATHS = ["^/login", "^/setup", "^/reset/", "^/static/", "^/api/schema", "^/embed/"]
SESSION_USER_KEY = "user_id"
SESSION_STAMP_KEY = "stamp"
SAFE = ("GET", "HEAD", "OPTIONS")


class AuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        with session_scope() as session:
            if header.lower().startswith("bearer "):
                user = user_for_token(session, header[7:].strip())
                if user is None:
                    raise NotAuthorizedException("the API token is invalid or revoked")
                return AuthenticationResult(user=user, auth="token")
            data = connection.scope.get("session") or {}
            user_id = data.get(SESSION_USER_KEY)
            user = session.get(User, user_id) if user_id else None
            if user is None or not user.is_active:
                raise NotAuthorizedException("sign in to use SkySift")
            if data.get(SESSION_STAMP_KEY) != session_stamp(user):
                raise NotAuthorizedException("the password changed since you signed in")
            if connection.url.path.startswith("/api/") and connection.scope["method"] not in SAFE:
                # The API skips CSRF checks, so a browser session may only read through it.
                raise NotAuthorizedException("changes through the API need an API token")
            return AuthenticationResult(user=user, auth="session")


def session_data(user: User) -> dict:
    """What a signed-in browser session holds."""
    return {SESSION_USER_KEY: user.id, SESSION_STAMP_KEY: session_stamp(user)}


def auth_middleware() -> DefineMiddleware:
    return DefineMiddleware(AuthMiddleware, exclude=PUBLIC_PATHS)
