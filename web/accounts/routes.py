"""Sign-in, first set-up, profile (password, API tokens), and administration."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import Body
from litestar.response import Redirect, Template
from sqlmodel import col, select

from jobs.db import session_scope
from jobs.models import ApiToken, AuditEvent, Group, Membership, User
from web.accounts import service
from web.accounts.auth import session_data

FormData = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]


def _safe_next(target: str | None) -> str:
    """Only same-site paths are followed after sign-in (no open redirects)."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/tasks/"


@get("/login", name="login.form")
async def login_form(request: Request, next: str = "/tasks/") -> Template | Redirect:
    with session_scope() as session:
        if not service.has_users(session):
            return Redirect("/setup")
    return Template("accounts/login.html", context={"next": _safe_next(next), "error": None})


@post("/login", name="login.submit", status_code=200)
async def login_submit(request: Request, data: FormData) -> Template | Redirect:
    with session_scope() as session:
        user = service.authenticate(
            session, str(data.get("username", "")), str(data.get("password", ""))
        )
        if user is None:
            return Template(
                "accounts/login.html",
                context={
                    "next": _safe_next(data.get("next")),
                    "error": "Unknown user name or wrong password.",
                },
                status_code=401,
            )
        service.audit(session, user, "login")
        request.set_session(session_data(user))
    return Redirect(_safe_next(data.get("next")), status_code=303)


@post("/logout", name="logout")
async def logout(request: Request) -> Redirect:
    request.clear_session()
    return Redirect("/login", status_code=303)


@get("/setup", name="setup.form")
async def setup_form() -> Template | Redirect:
    with session_scope() as session:
        if service.has_users(session):
            return Redirect("/login")
    return Template("accounts/setup.html", context={"error": None})


@post("/setup", name="setup.submit", status_code=200)
async def setup_submit(request: Request, data: FormData) -> Template | Redirect:
    """Create the first (admin) account; refused once any account exists."""
    with session_scope() as session:
        if service.has_users(session):
            return Redirect("/login", status_code=303)
        try:
            if data.get("password") != data.get("password2"):
                raise service.AccountError("the two passwords differ")
            user = service.create_user(
                session, str(data.get("username", "")), str(data.get("password", "")), is_admin=True
            )
        except service.AccountError as exc:
            return Template("accounts/setup.html", context={"error": str(exc)}, status_code=400)
        service.audit(session, user, "create_user", f"user:{user.id}", admin=True, first=True)
        request.set_session(session_data(user))
    return Redirect("/tasks/", status_code=303)


@get("/reset/{token:str}", name="reset.form")
async def reset_form(token: str) -> Template:
    with session_scope() as session:
        try:
            reset = service.pending_reset(session, token)
            user = session.get(User, reset.user_id)
            context = {"token": token, "username": user.username, "error": None}
        except service.PasswordResetError as exc:
            context = {"token": None, "username": None, "error": str(exc)}
    return Template(
        "accounts/reset.html", context=context, status_code=200 if context["token"] else 404
    )


@post("/reset/{token:str}", name="reset.submit", status_code=200)
async def reset_submit(request: Request, token: str, data: FormData) -> Template | Redirect:
    with session_scope() as session:
        username = None
        try:
            username = session.get(User, service.pending_reset(session, token).user_id).username
            if data.get("password") != data.get("password2"):
                raise service.AccountError("the two new passwords differ")
            user = service.use_password_reset(session, token, str(data.get("password", "")))
        except service.PasswordResetError as exc:
            context = {"token": None, "username": None, "error": str(exc)}
            return Template("accounts/reset.html", context=context, status_code=404)
        except service.AccountError as exc:
            context = {"token": token, "username": username, "error": str(exc)}
            return Template("accounts/reset.html", context=context, status_code=400)
        request.set_session(session_data(user))
    return Redirect("/tasks/", status_code=303)


class ProfileController(Controller):
    path = "/profile"

    def _context(self, session, user: User, **extra) -> dict[str, Any]:
        groups = session.exec(
            select(Group)
            .join(Membership, Membership.group_id == Group.id)
            .where(Membership.user_id == user.id)
        ).all()
        return {
            "user": user,
            "tokens": service.user_tokens(session, user),
            "groups": groups,
            "new_token": None,
            "message": None,
            "error": None,
            **extra,
        }

    @get("/", name="profile")
    async def profile(self, request: Request) -> Template:
        with session_scope() as session:
            return Template("accounts/profile.html", context=self._context(session, request.user))

    @post("/password", name="profile.password", status_code=200)
    async def change_password(self, request: Request, data: FormData) -> Template:
        with session_scope() as session:
            user = session.get(User, request.user.id)
            context: dict[str, Any] = {}
            if not service.verify_password(user, str(data.get("current", ""))):
                context["error"] = "The current password is wrong."
            elif data.get("password") != data.get("password2"):
                context["error"] = "The two new passwords differ."
            else:
                try:
                    user.password_hash = service.hash_password(str(data.get("password", "")))
                    session.add(user)
                    service.audit(session, user, "change_password", f"user:{user.id}")
                    request.set_session(session_data(user))  # other sessions end
                    context["message"] = "Password changed."
                except service.AccountError as exc:
                    context["error"] = str(exc)
            return Template(
                "accounts/profile.html",
                context=self._context(session, user, **context),
                status_code=400 if "error" in context else 200,
            )

    @post("/tokens", name="profile.tokens.create", status_code=200)
    async def create_token(self, request: Request, data: FormData) -> Template:
        with session_scope() as session:
            token, clear = service.create_token(
                session, request.user, str(data.get("name", "")) or "API token"
            )
            service.audit(session, request.user, "create_token", f"token:{token.id}")
            return Template(
                "accounts/profile.html",
                context=self._context(session, request.user, new_token=clear),
            )

    @post("/tokens/{token_id:int}/revoke", name="profile.tokens.revoke")
    async def revoke_token(self, request: Request, token_id: int) -> Redirect:
        with session_scope() as session:
            token = session.get(ApiToken, token_id)
            if token is None or token.user_id != request.user.id:
                raise NotFoundException("no such token")
            token.revoked = True
            session.add(token)
            service.audit(session, request.user, "revoke_token", f"token:{token.id}")
        return Redirect("/profile/", status_code=303)


def require_admin(request: Request) -> None:
    if not request.user.is_admin:
        raise PermissionDeniedException("only administrators may do this")


class AdminController(Controller):
    path = "/admin"

    def _context(self, session, **extra) -> dict[str, Any]:
        users = session.exec(select(User).order_by(User.username)).all()
        groups = session.exec(select(Group).order_by(Group.name)).all()
        memberships = {(m.user_id, m.group_id) for m in session.exec(select(Membership)).all()}
        return {
            "users": users,
            "groups": groups,
            "memberships": memberships,
            "message": None,
            "error": None,
            **extra,
        }

    @get("/", name="admin")
    async def overview(self, request: Request) -> Template:
        require_admin(request)
        with session_scope() as session:
            return Template("accounts/admin.html", context=self._context(session))

    @post("/users", name="admin.users.create", status_code=200)
    async def create_user(self, request: Request, data: FormData) -> Template:
        require_admin(request)
        with session_scope() as session:
            try:
                user = service.create_user(
                    session,
                    str(data.get("username", "")),
                    str(data.get("password", "")),
                    is_admin=data.get("is_admin") == "on",
                    full_name=str(data.get("full_name", "")),
                )
                service.audit(
                    session,
                    request.user,
                    "create_user",
                    f"user:{user.id}",
                    username=user.username,
                    admin=user.is_admin,
                )
                context = self._context(session, message=f"User {user.username} created.")
                status = 200
            except service.AccountError as exc:
                session.rollback()
                context, status = self._context(session, error=str(exc)), 400
            return Template("accounts/admin.html", context=context, status_code=status)

    @post("/users/{user_id:int}/reset", name="admin.users.reset", status_code=200)
    async def reset_link(self, request: Request, user_id: int) -> Template:
        """A one-time password reset link, shown once for the administrator to hand over."""
        require_admin(request)
        with session_scope() as session:
            user = session.get(User, user_id)
            if user is None:
                raise NotFoundException("no such user")
            token = service.create_password_reset(session, user.username, request.user)
            link = f"{str(request.base_url).rstrip('/')}/reset/{token}"
            context = self._context(session, reset_link=link, reset_user=user.username)
            return Template("accounts/admin.html", context=context)

    @post("/groups", name="admin.groups.create", status_code=200)
    async def create_group(self, request: Request, data: FormData) -> Template:
        require_admin(request)
        with session_scope() as session:
            try:
                group = service.create_group(session, str(data.get("name", "")))
                service.audit(
                    session, request.user, "create_group", f"group:{group.id}", name=group.name
                )
                context, status = (
                    self._context(session, message=f"Group {group.name} created."),
                    200,
                )
            except service.AccountError as exc:
                session.rollback()
                context, status = self._context(session, error=str(exc)), 400
            return Template("accounts/admin.html", context=context, status_code=status)

    @post("/memberships", name="admin.memberships")
    async def set_membership(self, request: Request, data: FormData) -> Redirect:
        require_admin(request)
        with session_scope() as session:
            user = session.get(User, int(data.get("user_id", 0) or 0))
            group = session.get(Group, int(data.get("group_id", 0) or 0))
            if user is None or group is None:
                raise NotFoundException("no such user or group")
            member = data.get("member") == "on"
            service.set_membership(session, user.id, group.id, member)
            service.audit(
                session,
                request.user,
                "add_member" if member else "remove_member",
                f"group:{group.id}",
                member=user.username,
            )
        return Redirect("/admin/", status_code=303)

    @get("/audit", name="admin.audit")
    async def audit_log(self, request: Request, page: int = 1, action: str = "") -> Template:
        require_admin(request)
        per_page = 100
        with session_scope() as session:
            query = select(AuditEvent).order_by(col(AuditEvent.id).desc())
            if action:
                query = query.where(AuditEvent.action == action)
            events = session.exec(query.offset((max(page, 1) - 1) * per_page).limit(per_page)).all()
        return Template(
            "accounts/audit.html",
            context={
                "events": events,
                "page": max(page, 1),
                "action": action,
                "more": len(events) == per_page,
            },
        )
