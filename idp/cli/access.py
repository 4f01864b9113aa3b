"""`idp access check`: explain the access decision for a user, an app and an address, issuing nothing."""

from __future__ import annotations

import json

import click

from ._common import unit_of_work

_WORDS = {"allow": "ALLOW", "deny": "DENY", "step_up": "STEP-UP (second factor required)",
          "step_up_passkey": "STEP-UP (passkey or security key required)",
          "reauth": "RE-AUTHENTICATE"}


@click.group("access", help="Explain access decisions.")
def access_group() -> None:
    pass


@access_group.command("check", help="Dry run: would USER get into APP from IP, with or without MFA? Issues nothing.")
@click.option("--user", "username", required=True)
@click.option("--app", "slug", required=True)
@click.option("--ip", "ip", default=None)
@click.option("--mfa", is_flag=True, help="Assume the session passed a second factor (a TOTP code).")
@click.option("--passkey", is_flag=True, help="Assume the session signed in with a passkey or security key "
                                              "(multi-factor and phishing-resistant).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@unit_of_work
def access_check(username: str, slug: str, ip: str | None, mfa: bool, passkey: bool, fmt: str) -> None:
    from idp.flows.access import dry_run
    decision = dry_run(username, slug, ip, mfa, passkey)
    if fmt == "json":
        click.echo(json.dumps({"decision": str(decision.effect), "check": decision.check,
                               "reason": str(decision.reason), "explanation": decision.explanation,
                               "inputs": decision.inputs}, indent=2, default=str))
        return
    word = str(decision.effect)
    if word == "step_up" and decision.reason == "phishing_resistant_required":
        word = "step_up_passkey"
    click.echo(f"decision: {_WORDS[word]}")
    click.echo(f"check:    {decision.check}")
    click.echo(f"reason:   {decision.reason}")
    click.echo(f"why:      {decision.explanation}")
    for k, v in decision.inputs.items():
        click.echo(f"  {k}: {v}")
