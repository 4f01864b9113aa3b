"""Admin console: the email notifications section (/admin/notifications/email): SMTP settings with a
write-only password, the From address, who gets the admins' emails, and a test message sent at once."""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, url_for

from idp.extensions import db
from idp.services import ServiceError, mailer, notify_email
from idp.web.admin import bp
from idp.web.admin.forms.base import ConfirmForm, refuse
from idp.web.admin.forms.email import AdminEmailsForm, SmtpSettingsForm, TestEmailForm

SMTP_FIELDS = {"smtp_url": "smtp_url", "smtp_from": "smtp_from", "smtp_password": "smtp_password",
               "email": None}


def _page(status: int = 200, *, smtp_form: SmtpSettingsForm | None = None,
          admins_form: AdminEmailsForm | None = None, test_form: TestEmailForm | None = None) -> Response:
    view = mailer.settings_view()
    stored = mailer.stored_smtp_url()
    if smtp_form is None:
        # the org's URL with its password masked (sent back unchanged, *** keeps the stored password)
        smtp_form = SmtpSettingsForm(formdata=None, data={"smtp_url": mailer.mask_url(stored) or "",
                                                          "smtp_from": view["smtp_from"] or ""})
    if admins_form is None:
        admins_form = AdminEmailsForm(formdata=None, data={"admin_emails": "\n".join(mailer.admin_emails_setting())})
    return Response(render_template(
        "admin/notifications_email.html", section="notifications", view=view, org_url=stored is not None,
        smtp_form=smtp_form, admins_form=admins_form, test_form=test_form or TestEmailForm(formdata=None),
        recipients=mailer.admin_recipients(), clear_form=ConfirmForm(formdata=None)), status=status)


@bp.get("/notifications/email")
def notifications_email() -> Response:
    return _page()


@bp.post("/notifications/email")
def notifications_email_save() -> Response:
    form = SmtpSettingsForm()
    if not form.validate():
        return _page(422, smtp_form=form)
    try:
        config = mailer.set_smtp(form.smtp_url.data, form.smtp_from.data or None,
                                 password=form.smtp_password.data or None)
    except ServiceError as exc:
        refuse(form, exc, SMTP_FIELDS)
        return _page(422, smtp_form=form)
    flash(f"Email settings saved: {config.masked_url}, from {config.from_addr}.", "success")
    return redirect(url_for("admin.notifications_email"), code=303)  # type: ignore[return-value]


@bp.post("/notifications/email/clear")
def notifications_email_clear() -> Response:
    form = ConfirmForm()
    if form.validate() and mailer.clear_smtp():
        flash("The org's email settings were removed" + (" (IDP_SMTP_URL applies)." if mailer.is_configured()
                                                         else "; no email is sent."), "success")
    return redirect(url_for("admin.notifications_email"), code=303)  # type: ignore[return-value]


@bp.post("/notifications/email/admins")
def notifications_email_admins() -> Response:
    form = AdminEmailsForm()
    if not form.validate():
        return _page(422, admins_form=form)
    try:
        values = mailer.set_admin_emails(form.addresses())
    except ServiceError as exc:
        refuse(form, exc)
        return _page(422, admins_form=form)
    flash("Admin emails go to " + (", ".join(values) if values else "every enabled admin user") + ".", "success")
    return redirect(url_for("admin.notifications_email"), code=303)  # type: ignore[return-value]


@bp.post("/notifications/email/test")
def notifications_email_test() -> Response:
    """Send the test message now; a failure is shown next to the address (nothing is stored either way)."""
    form = TestEmailForm()
    if not form.validate():
        return _page(422, test_form=form)
    try:
        config = notify_email.send_test(form.to.data)
    except ServiceError as exc:
        refuse(form, exc, {"to": "to", "smtp_url": None})
        return _page(422, test_form=form)
    except mailer.MailError as exc:
        db.session.rollback()
        form.add_error("to", f"Not sent: {exc}")
        return _page(422, test_form=form)
    flash(f"Test email sent to {form.to.data} through {config.masked_url}.", "success")
    return redirect(url_for("admin.notifications_email"), code=303)  # type: ignore[return-value]
