"""Admin console: users (list, create, edit, enable/disable, password and MFA reset) and groups (create,
members, delete)."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from idp.auth import totp
from idp.extensions import db
from idp.models import Group, User
from idp.services import ServiceError, accounts
from idp.services import users as users_svc
from idp.services.users import find_user
from idp.web.admin import bp, page_number
from idp.web.context import passwords

USERS_PER_PAGE = 50


def _page(status: int, template: str, **kw: object) -> Response:
    return Response(render_template(template, **kw), status=status)


def _user_or_404(username: str) -> User:
    user = find_user(username)
    if user is None:
        abort(404)
    return user


def _group_or_404(name: str) -> Group:
    group = users_svc.find_group(name)
    if group is None:
        abort(404)
    return group


def _text(name: str, limit: int = 400) -> str:
    return (request.form.get(name) or "").strip()[:limit]


def _user_input() -> accounts.UserInput:
    return accounts.UserInput(
        email=_text("email"), first_name=_text("first_name", 200), last_name=_text("last_name", 200),
        groups=tuple(sorted({g for g in request.form.getlist("groups") if g})),
        is_admin=request.form.get("is_admin") == "1",
    )


# ---------------------------------------------------------------- users

@bp.get("/users")
def users() -> str:
    query = (request.args.get("q") or "").strip()[:150]
    page = page_number()
    rows, more = accounts.search_users(query, limit=USERS_PER_PAGE, offset=(page - 1) * USERS_PER_PAGE)
    return render_template("admin/users_list.html", section="users", users=rows, q=query, page=page, more=more,
                           mfa=totp.is_enrolled)


@bp.route("/users/new", methods=["GET", "POST"])
def users_new() -> Response | str:
    groups = accounts.group_names()
    if request.method == "GET":
        return render_template("admin/users_new.html", section="users", form=None, errors={}, groups=groups)
    username = _text("username", 200)
    data = _user_input()
    try:
        accounts.create_user(username, data, request.form.get("password") or "",
                             request.form.get("password_confirm") or "", passwords())
    except accounts.FormErrors as exc:
        return _page(422, "admin/users_new.html", section="users", form={"username": username, "data": data},
                     errors=exc.errors, groups=groups)
    flash(f"User {username} created.", "success")
    return redirect(url_for("admin.user_edit", username=username), code=303)  # type: ignore[return-value]


def _edit_page(user: User, status: int = 200, **kw: object) -> Response:
    defaults: dict[str, object] = {"form": None, "errors": {}, "pw_errors": {}}
    defaults.update(kw)
    return _page(status, "admin/users_edit.html", section="users", user=user, groups=accounts.group_names(),
                 mfa_enrolled=totp.is_enrolled(user), is_self=user.id == current_user.user.id, **defaults)


@bp.route("/users/<username>", methods=["GET", "POST"])
def user_edit(username: str) -> Response:
    user = _user_or_404(username)
    if request.method == "GET":
        return _edit_page(user)
    data = _user_input()
    try:
        accounts.update_user(user, data)
    except accounts.FormErrors as exc:
        return _edit_page(_user_or_404(username), 422, form=data, errors=exc.errors)
    flash(f"Changes to {user.username} saved.", "success")
    return redirect(url_for("admin.user_edit", username=user.username), code=303)  # type: ignore[return-value]


@bp.post("/users/<username>/status")
def user_status(username: str) -> Response:
    user = _user_or_404(username)
    wanted = request.form.get("disabled")
    if wanted not in ("0", "1"):
        abort(400)
    try:
        accounts.set_disabled(user, wanted == "1")
    except ServiceError as exc:
        flash(f"Not changed: {exc}.", "error")
        return _edit_page(_user_or_404(username), 409)
    flash(f"{username} is now {'disabled' if wanted == '1' else 'enabled'}.", "success")
    return redirect(url_for("admin.user_edit", username=username), code=303)  # type: ignore[return-value]


@bp.post("/users/<username>/password")
def user_password(username: str) -> Response:
    user = _user_or_404(username)
    keep = current_user.session.id if user.id == current_user.user.id else None
    try:
        accounts.reset_password(user, request.form.get("password") or "", request.form.get("password_confirm") or "",
                                passwords(), keep_session=keep)
    except accounts.FormErrors as exc:
        return _edit_page(user, 422, pw_errors=exc.errors)
    flash(f"New password set for {username}; their sessions were ended.", "success")
    return redirect(url_for("admin.user_edit", username=username), code=303)  # type: ignore[return-value]


@bp.route("/users/<username>/mfa-reset", methods=["GET", "POST"])
def user_mfa_reset(username: str) -> Response | str:
    user = _user_or_404(username)
    if request.method == "GET":
        return render_template("admin/users_mfa_reset.html", section="users", user=user,
                               enrolled=totp.is_enrolled(user))
    accounts.reset_mfa(user)
    flash(f"The second factor of {username} was removed; they enrol again when a policy asks for it.", "success")
    return redirect(url_for("admin.user_edit", username=username), code=303)  # type: ignore[return-value]


# ---------------------------------------------------------------- groups

@bp.get("/groups")
def groups() -> str:
    return render_template("admin/groups_list.html", section="groups", groups=accounts.groups_with_counts(),
                           name="", errors={})


@bp.post("/groups/new")
def groups_new() -> Response:
    name = _text("name", 200)
    try:
        group = accounts.create_group(name)
    except accounts.FormErrors as exc:
        return _page(422, "admin/groups_list.html", section="groups", groups=accounts.groups_with_counts(),
                     name=name, errors=exc.errors)
    flash(f"Group {group.name} created.", "success")
    return redirect(url_for("admin.group_detail", name=group.name), code=303)  # type: ignore[return-value]


def _group_page(group: Group, status: int = 200, **kw: object) -> Response:
    defaults: dict[str, object] = {"username": "", "errors": {}}
    defaults.update(kw)
    return _page(status, "admin/groups_detail.html", section="groups", group=group,
                 members=accounts.members(group), **defaults)


@bp.get("/groups/<name>")
def group_detail(name: str) -> Response:
    return _group_page(_group_or_404(name))


@bp.post("/groups/<name>/members")
def group_add_member(name: str) -> Response:
    group = _group_or_404(name)
    username = _text("username", 200)
    try:
        user = accounts.add_member(group, username)
    except accounts.FormErrors as exc:
        return _group_page(group, 422, username=username, errors=exc.errors)
    flash(f"{user.username} added to {group.name}.", "success")
    return redirect(url_for("admin.group_detail", name=group.name), code=303)  # type: ignore[return-value]


@bp.post("/groups/<name>/members/remove")
def group_remove_member(name: str) -> Response:
    group = _group_or_404(name)
    username = _text("username", 200)
    try:
        accounts.remove_member(group, username)
    except ServiceError as exc:
        flash(f"Not changed: {exc}.", "error")
        return _group_page(group, 409)
    flash(f"{username} removed from {group.name}.", "success")
    return redirect(url_for("admin.group_detail", name=group.name), code=303)  # type: ignore[return-value]


@bp.route("/groups/<name>/delete", methods=["GET", "POST"])
def group_delete(name: str) -> Response:
    """Confirmation page, then delete. Refused (409) while an app's access policy names the group."""
    group = _group_or_404(name)
    if request.method == "GET":
        return _page(200, "admin/group_delete.html", section="groups", group=group,
                     members=accounts.members(group), used=users_svc.apps_using_group(group.name))
    try:
        members = users_svc.remove_group(group.name)
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Not deleted: {exc}.", "error")
        return _page(409, "admin/group_delete.html", section="groups", group=group,
                     members=accounts.members(group), used=users_svc.apps_using_group(group.name))
    flash(f"Group {name} deleted ({len(members)} membership{'' if len(members) == 1 else 's'} ended).", "success")
    return redirect(url_for("admin.groups"), code=303)  # type: ignore[return-value]

