"""`idp notify`: email notifications (the SMTP settings themselves are `idp org set --smtp-url --from`)."""

from __future__ import annotations

import click

from idp.services import mailer, notify_email

from ._common import fail, unit_of_work


@click.group("notify", help="Notifications sent by email.")
def notify_group() -> None:
    pass


@notify_group.command("test", help="Send a test email now through the configured SMTP server (not through the "
                                   "outbox) and say what went wrong if it fails.")
@click.option("--to", "to", required=True, metavar="ADDRESS", help="The address to send the test email to.")
@unit_of_work
def notify_test(to: str) -> None:
    try:
        config = notify_email.send_test(to)
    except mailer.MailError as exc:
        fail(f"the test email was not sent: {exc}")
    click.echo(f"test email sent to {to} through {config.masked_url} (from {config.from_addr})")
