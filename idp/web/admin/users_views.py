"""Admin console: users (list, create, edit, enable/disable, password and MFA reset) and groups (create,
members, delete)."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from idp import audit
from idp.auth import passkeys, totp, totp_guard
from idp.auth.enrolment_links import MAX_VALID_HOURS, PATH
from idp.auth.factors import list_factors
from idp.certs.keystore import KeyStoreError
from idp.extensions import db
from idp.flows.enrolment import record_factor_removed, record_reset, record_unsuspended
from idp.flows.session_end import end_remotely
from idp.models import Group, IdpSession, User, UserField
from idp.services import ServiceError, accounts, notify_email, user_sessions
from idp.services import users as users_svc
from idp.services.users import find_user
from idp.web.admin import bp, page_number
from idp.web.admin.forms.base import ConfirmForm, refuse
from idp.web.admin.forms.users import (
    EnrolmentLinkForm,
    GroupForm,
    MemberForm,
    NewUserForm,
    PasswordForm,
    UserForm,
    UserStatusForm,
)
from idp.web.context import current_client, keystore, passwords, settings
from idp.web.uow import commit

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


# ---------------------------------------------------------------- users

@bp.get("/users")
def users() -> str:
    query = (request.args.get("q") or "").strip()[:150]
    page = page_number()
    rows, more = accounts.search_users(query, limit=USERS_PER_PAGE, offset=(page - 1) * USERS_PER_PAGE)
    return render_template("admin/users_list.html", section="users", users=rows, q=query, page=page, more=more,
                           mfa=lambda u: u.mfa_enrolled)


@bp.route("/users/new", methods=["GET", "POST"])
def users_new() -> Response:
    form = NewUserForm()
    groups = accounts.group_names()
    if not form.validate_on_submit():
        return _page(200 if request.method == "GET" else 422, "admin/users_new.html", section="users", form=form,
                     groups=groups)
    username = form.username.data
    try:
        accounts.create_user(username, form.user_input(), form.password.data, form.password_confirm.data,
                             passwords())
    except ServiceError as exc:
        refuse(form, exc)
        return _page(422, "admin/users_new.html", section="users", form=form, groups=groups)
    flash(f"User {username} created.", "success")
    return redirect(url_for("admin.user_edit", username=username), code=303)  # type: ignore[return-value]


def _edit_page(user: User, status: int = 200, *, form: UserForm | None = None,
               pw_form: PasswordForm | None = None, link_form: EnrolmentLinkForm | None = None,
               field_errors: dict[str, str] | None = None, field_values: dict[str, str] | None = None) -> Response:
    return _page(status, "admin/users_edit.html", section="users", user=user, groups=accounts.group_names(),
                 mfa_enrolled=totp.is_enrolled(user), mfa_suspended=totp_guard.is_suspended(user),
                 passkeys=passkeys.passkeys_of(user), factors=list_factors(user),
                 is_self=user.id == current_user.user.id,
                 form=form or UserForm.from_user(user), pw_form=pw_form or PasswordForm(formdata=None),
                 link_form=link_form or EnrolmentLinkForm(formdata=None), max_link_hours=MAX_VALID_HOURS,
                 custom_fields=_field_inputs(user, field_values), field_errors=field_errors or {},
                 sessions=user_sessions.live_sessions(user))


def _field_inputs(user: User, posted: dict[str, str] | None) -> list[tuple[UserField, str]]:
    """Each user field with the text its input shows: what was posted (after a refusal) or the stored value
    (format_value; "true"/"false" for a bool)."""
    from idp.services import user_fields as fields_svc
    values = user.custom_fields or {}
    rows = []
    for f in fields_svc.list_fields():
        if posted is not None:
            text = posted.get(f.name, "")
            if f.type == "bool":
                text = "true" if text == "1" else "false"
        else:
            text = fields_svc.format_value(f.type, values.get(f.name))
        rows.append((f, text))
    return rows


@bp.route("/users/<username>", methods=["GET", "POST"])
def user_edit(username: str) -> Response:
    user = _user_or_404(username)
    if request.method == "GET":
        return _edit_page(user)
    form = UserForm()
    try:
        if form.validate():
            accounts.update_user(user, form.user_input())
    except ServiceError as exc:
        refuse(form, exc)
    if form.messages:
        return _edit_page(_user_or_404(username), 422, form=form)
    flash(f"Changes to {user.username} saved.", "success")
    return redirect(url_for("admin.user_edit", username=user.username), code=303)  # type: ignore[return-value]


@bp.post("/users/<username>/status")
def user_status(username: str) -> Response:
    user = _user_or_404(username)
    form = UserStatusForm()
    if not form.validate():
        abort(400)
    try:
        accounts.set_disabled(user, form.disabled.data == "1")
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Not changed: {exc}.", "error")
        return _edit_page(_user_or_404(username), 409)
    flash(f"{username} is now {'disabled' if form.disabled.data == '1' else 'enabled'}.", "success")
    return redirect(url_for("admin.user_edit", username=username), code=303)  # type: ignore[return-value]


@bp.post("/users/<username>/password")
def user_password(username: str) -> Response:
    user = _user_or_404(username)
    form = PasswordForm()
    keep = current_user.session.id if user.id == current_user.user.id else None
    try:
        if form.validate():
            accounts.reset_password(user, form.password.data, form.password_confirm.data, passwords(),
                                    keep_session=keep)
    except ServiceError as exc:
        refuse(form, exc)
    if form.messages:
        return _edit_page(_user_or_404(username), 422, pw_form=form)
    flash(f"New password set for {username}; their sessions were ended.", "success")
    return redirect(url_for("admin.user_edit", username=username), code=303)  # type: ignore[return-value]


@bp.route("/users/<username>/mfa-reset", methods=["GET", "POST"])
def user_mfa_reset(username: str) -> Response | str:
    user = _user_or_404(username)
    if not ConfirmForm().validate_on_submit():
        return render_template("admin/users_mfa_reset.html", section="users", user=user,
                               enrolled=totp.is_enrolled(user), passkeys=passkeys.passkeys_of(user))
    keep = current_user.session.id if user.id == current_user.user.id else None
    accounts.reset_mfa(user, keep_session=keep)
    record_reset(user, current_client(), {"by": "admin"})
    flash(f"The second factor of {username} was removed and their sessions were ended; they enrol again when a "
          "policy asks for it.", "success")
    return redirect(url_for("admin.user_edit", username=username), code=303)  # type: ignore[return-value]


@bp.route("/users/<username>/passkeys/<int:passkey_id>/remove", methods=["GET", "POST"])
def user_passkey_remove(username: str, passkey_id: int) -> Response:
    """Confirmation page, then remove one passkey (audited); the user's sessions end (a factor change)."""
    user = _user_or_404(username)
    row = passkeys.find_own(user, passkey_id)
    if row is None:
        abort(404)
    if not ConfirmForm().validate_on_submit():
        return _page(200, "admin/users_passkey_remove.html", section="users", user=user, passkey=row)
    keep = current_user.session.id if user.id == current_user.user.id else None
    removed = accounts.remove_passkey(user, passkey_id, keep_session=keep)
    record_factor_removed(user, current_client(), "passkey", removed.name, "admin")
    flash(f"Passkey “{removed.name}” of {username} removed; their sessions were ended.", "success")
    return redirect(url_for("admin.user_edit", username=username), code=303)  # type: ignore[return-value]


@bp.post("/users/<username>/enrolment-link")
def user_enrolment_link(username: str) -> Response:
    """Issue a one-time enrolment link and show it once (older unused links of the user stop working)."""
    user = _user_or_404(username)
    form = EnrolmentLinkForm()
    if not form.validate_on_submit():
        abort(400)
    hours = form.hours()
    if hours is None:
        return _edit_page(user, 422, link_form=form)
    try:
        token = accounts.issue_enrolment_link(user, hours)
        if form.email.data:
            address = notify_email.send_enrolment_link(user, settings().url(PATH + token), hours)
            flash(f"An enrolment link for {username} (valid for {hours} hours, once) is being emailed to "
                  f"{address}.", "success")
            return redirect(url_for("admin.user_edit", username=username), code=303)  # type: ignore[return-value]
    except ServiceError as exc:
        if exc.field == "valid_hours":
            refuse(form, exc)
            return _edit_page(_user_or_404(username), 422, link_form=form)
        db.session.rollback()
        flash(f"No link issued: {exc}.", "error")
        return _edit_page(_user_or_404(username), 409)
    return _page(200, "admin/users_enrolment_link.html", section="users", user=user,
                 link=settings().url(PATH + token), valid_hours=hours)


@bp.post("/users/<username>/mfa-unsuspend")
def user_mfa_unsuspend(username: str) -> Response:
    user = _user_or_404(username)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if totp_guard.unsuspend(user):
        record_unsuspended(user, current_client(), "admin")
        flash(f"The authenticator of {username} works again.", "success")
    return redirect(url_for("admin.user_edit", username=username), code=303)  # type: ignore[return-value]


@bp.post("/users/<username>/sessions/<handle>/end")
def user_session_end(username: str, handle: str) -> Response:
    """End one of the user's sessions (audited; a `logout` event with initiated_by admin)."""
    user = _user_or_404(username)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        target = user_sessions.find_live_session(user, handle)
    except ServiceError:
        flash("That session has already ended.", "error")
        return redirect(url_for("admin.user_edit", username=username, _anchor="sessions"), code=303)  # type: ignore[return-value]
    return _end_sessions(user, [target])


@bp.post("/users/<username>/sessions/end-all")
def user_sessions_end_all(username: str) -> Response:
    """End every session of the user (audited; one `logout` event per session)."""
    user = _user_or_404(username)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    return _end_sessions(user, user_sessions.all_live_sessions(user))


def _end_sessions(user: User, targets: list[IdpSession]) -> Response:
    try:
        keys = keystore().current()
    except KeyStoreError:
        flash("Ending sessions is unavailable while the signing key is: try again in a minute.", "error")
        return redirect(url_for("admin.user_edit", username=user.username, _anchor="sessions"), code=303)  # type: ignore[return-value]
    live = [t for t in targets if t.ended_at is None]
    # audited with the sessions' end (end_remotely commits that before the back-channel exchanges)
    audit.record("user.sessions_end", "user", user.username,
                 after={"sessions": [user_sessions.handle_of(t.id) for t in live], "ended": len(live)})
    ended = end_remotely(live, settings(), keys, current_client(), initiated_by="admin", checkpoint=commit)
    flash(f"{ended} session(s) of {user.username} ended.", "success")
    return redirect(url_for("admin.user_edit", username=user.username, _anchor="sessions"), code=303)  # type: ignore[return-value]


# ---------------------------------------------------------------- groups

def _groups_page(status: int = 200, form: GroupForm | None = None) -> Response:
    return _page(status, "admin/groups_list.html", section="groups", groups=accounts.groups_with_counts(),
                 form=form or GroupForm(formdata=None))


@bp.get("/groups")
def groups() -> Response:
    return _groups_page()


@bp.post("/groups/new")
def groups_new() -> Response:
    form = GroupForm()
    try:
        group = accounts.create_group(form.name.data) if form.validate() else None
    except ServiceError as exc:
        refuse(form, exc)
        group = None
    if group is None:
        return _groups_page(422, form)
    flash(f"Group {group.name} created.", "success")
    return redirect(url_for("admin.group_detail", name=group.name), code=303)  # type: ignore[return-value]


def _group_page(group: Group, status: int = 200, form: MemberForm | None = None) -> Response:
    return _page(status, "admin/groups_detail.html", section="groups", group=group,
                 members=accounts.members(group), form=form or MemberForm(formdata=None))


@bp.get("/groups/<name>")
def group_detail(name: str) -> Response:
    return _group_page(_group_or_404(name))


@bp.post("/groups/<name>/members")
def group_add_member(name: str) -> Response:
    group = _group_or_404(name)
    form = MemberForm()
    try:
        user = accounts.add_member(group, form.username.data) if form.validate() else None
    except ServiceError as exc:
        refuse(form, exc)
        user = None
    if user is None:
        return _group_page(_group_or_404(name), 422, form)
    flash(f"{user.username} added to {group.name}.", "success")
    return redirect(url_for("admin.group_detail", name=group.name), code=303)  # type: ignore[return-value]


@bp.post("/groups/<name>/members/remove")
def group_remove_member(name: str) -> Response:
    group = _group_or_404(name)
    form = MemberForm()
    if not form.validate():
        abort(400)
    try:
        accounts.remove_member(group, form.username.data)
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Not changed: {exc}.", "error")
        return _group_page(_group_or_404(name), 409)
    flash(f"{form.username.data} removed from {group.name}.", "success")
    return redirect(url_for("admin.group_detail", name=group.name), code=303)  # type: ignore[return-value]


@bp.route("/groups/<name>/delete", methods=["GET", "POST"])
def group_delete(name: str) -> Response:
    """Confirmation page, then delete. Refused (409) while an app's access policy names the group."""
    group = _group_or_404(name)
    if not ConfirmForm().validate_on_submit():
        return _page(200, "admin/group_delete.html", section="groups", group=group,
                     members=accounts.members(group), used=users_svc.apps_using_group(group.name))
    try:
        members = users_svc.remove_group(group.name)
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Not deleted: {exc}.", "error")
        group = _group_or_404(name)
        return _page(409, "admin/group_delete.html", section="groups", group=group,
                     members=accounts.members(group), used=users_svc.apps_using_group(group.name))
    flash(f"Group {name} deleted ({len(members)} membership{'' if len(members) == 1 else 's'} ended).", "success")
    return redirect(url_for("admin.groups"), code=303)  # type: ignore[return-value]
