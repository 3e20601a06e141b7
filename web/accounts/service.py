"""Accounts: password hashing (argon2), API tokens, users and groups, the audit log."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, col, select

from jobs.models import ApiToken, AuditEvent, Group, Membership, PasswordReset, User, utcnow

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "sks_"
RESET_LIFETIME = timedelta(days=1)


class AccountError(ValueError):
    """A request about accounts that cannot be honoured; the message says why."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.exec(select(User).where(User.username == username.strip())).first()
    if user is None:
        _hasher.hash(password or "x")  # same cost whether or not the user exists
        return None
    if not user.is_active or not verify_password(user, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        session.add(user)
    return user


def create_user(
    session: Session, username: str, password: str, *, is_admin: bool = False, full_name: str = ""
) -> User:
    username = username.strip()
    if (
        not username
        or len(username) > 150
        or not username.replace(".", "").replace("-", "").replace("_", "").isalnum()
    ):
        raise AccountError("a username is 1–150 letters, digits, '.', '-' or '_'")
    if session.exec(select(User).where(User.username == username)).first():
        raise AccountError(f"the username {username!r} is taken")
    user = User(
        username=username,
        full_name=full_name.strip(),
        password_hash=hash_password(password),
        is_admin=is_admin,
    )
    session.add(user)
    session.flush()
    return user


def has_users(session: Session) -> bool:
    return session.exec(select(User.id).limit(1)).first() is not None


def create_group(session: Session, name: str) -> Group:
    name = name.strip()
    if not name or len(name) > 150:
        raise AccountError("a group name is 1–150 characters")
    if session.exec(select(Group).where(Group.name == name)).first():
        raise AccountError(f"the group {name!r} exists already")
    group = Group(name=name)
    session.add(group)
    session.flush()
    return group


def user_group_ids(session: Session, user: User) -> list[int]:
    return list(
        session.exec(select(Membership.group_id).where(Membership.user_id == user.id)).all()
    )


def set_membership(session: Session, user_id: int, group_id: int, member: bool) -> None:
    existing = session.get(Membership, (user_id, group_id))
    if member and existing is None:
        session.add(Membership(user_id=user_id, group_id=group_id))
    elif not member and existing is not None:
        session.delete(existing)


# ---------------------------------------------------------------------------- API tokens


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for ``user``; the clear text is returned once and never stored."""
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id, name=name.strip()[:150], token_hash=_digest(clear), prefix=clear[:10]
    )
    session.add(token)
    session.flush()
    return token, clear


def user_for_token(session: Session, clear: str) -> User | None:
    token = session.exec(select(ApiToken).where(ApiToken.token_hash == _digest(clear))).first()
    if token is None or token.revoked:
        return None
    user = session.get(User, token.user_id)
    if user is None or not user.is_active:
        return None
    token.last_used = utcnow()
    session.add(token)
    return user


def user_tokens(session: Session, user: User) -> list[ApiToken]:
    return list(
        session.exec(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(col(ApiToken.id).desc())
        ).all()
    )


def session_stamp(user: User) -> str:
    """Changes whenever the password does: sessions signed in before a change end."""
    return _digest(user.password_hash)[:16]


# ---------------------------------------------------------------------------- password resets


class PasswordResetError(AccountError):
    """A reset link that is unknown, used or expired, or a user that does not exist."""


def create_password_reset(session: Session, username: str, created_by: User | None) -> str:
    """A one-time reset token for ``username`` (valid :data:`RESET_LIFETIME`); clear text once.

    There is no e-mail here: an administrator (or the ``skysift reset-link`` command) hands
    the link to the user.
    """
    user = session.exec(select(User).where(User.username == username.strip())).first()
    if user is None:
        raise PasswordResetError(f"there is no user {username.strip()!r}")
    clear = secrets.token_urlsafe(32)
    session.add(
        PasswordReset(
            user_id=user.id,
            token_hash=_digest(clear),
            created_by=created_by.id if created_by else None,
            expires=utcnow() + RESET_LIFETIME,
        )
    )
    audit(session, created_by, "create_password_reset", f"user:{user.id}")
    session.flush()
    return clear


def pending_reset(session: Session, clear: str) -> PasswordReset:
    """The unused, unexpired reset for a token, else PasswordResetError."""
    reset = session.exec(
        select(PasswordReset).where(PasswordReset.token_hash == _digest(clear))
    ).first()
    if reset is None or reset.used is not None:
        raise PasswordResetError("this reset link is unknown or was used already")
    if reset.expires <= utcnow():
        raise PasswordResetError("this reset link has expired: ask an administrator for a new one")
    return reset


def use_password_reset(session: Session, clear: str, password: str) -> User:
    """Set a new password through a reset token; the token and older sessions stop working."""
    reset = pending_reset(session, clear)
    user = session.get(User, reset.user_id)
    if user is None or not user.is_active:
        raise PasswordResetError("the account of this reset link is disabled")
    user.password_hash = hash_password(password)
    reset.used = utcnow()
    session.add_all([user, reset])
    audit(session, user, "reset_password", f"user:{user.id}")
    return user


# ---------------------------------------------------------------------------- audit


def audit(
    session: Session, user: User | None, action: str, target: str = "", **detail: Any
) -> None:
    """Record an action in the audit log (committed with the caller's transaction)."""
    session.add(
        AuditEvent(
            user_id=user.id if user else None,
            username=user.username if user else "",
            action=action,
            target=target,
            detail=detail,
        )
    )
