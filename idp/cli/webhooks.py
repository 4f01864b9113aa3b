"""`idp webhooks`: subscribe HTTPS endpoints to notification types, test them, read their delivery log."""

from __future__ import annotations

import json
import sys

import click

from idp.notifications import catalog
from idp.services import webhooks as wh

from ._common import fail, unit_of_work


@click.group("webhooks", help="Webhook endpoints: signed CloudEvents POSTed for the event types they subscribe to.")
def webhooks_group() -> None:
    pass


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _as_json(fmt: str, as_json: bool) -> bool:
    return as_json or fmt == "json"


def _read_secret() -> str:
    secret = sys.stdin.readline().strip()
    if not secret:
        fail("--secret-stdin: standard input holds no secret (whsec_<base64 of 24-64 random bytes>)")
    return secret


@webhooks_group.command("add")
@click.argument("url")
@click.option("--event", "events", multiple=True, required=True, metavar="TYPE",
              help="A notification type to deliver (repeat, or separate with commas); `idp webhooks types` lists them.")
@click.option("--app", "app", metavar="SLUG", help="Only notices about this app (default: org-wide).")
@click.option("--outcome", "outcomes", multiple=True, metavar="OUTCOME",
              help="Only notices with this outcome (success, denied, error; repeat).")
@click.option("--reason", "reasons", multiple=True, metavar="CODE", help="Only notices with this reason code (repeat).")
@click.option("--description", default="", help="What the endpoint is for (shown in lists).")
@click.option("--secret-stdin", is_flag=True, help="Read the signing secret (whsec_...) from standard input "
                                                     "instead of generating one.")
@unit_of_work
def webhooks_add(url: str, events: tuple[str, ...], app: str | None, outcomes: tuple[str, ...],
                 reasons: tuple[str, ...], description: str, secret_stdin: bool) -> None:
    """Subscribe URL (https://) to event types. The signing secret is printed once on standard output (it is
    stored sealed and never shown again)."""
    secret = _read_secret() if secret_stdin else None
    row, secret = wh.add_endpoint(url, _split(events), app_slug=app, outcomes=_split(outcomes),
                                  reasons=_split(reasons), description=description, secret=secret)
    if not secret_stdin:
        click.echo(secret)
    scope = f"app {app}" if app else "org-wide"
    click.echo(f"webhook endpoint {row.id} added ({scope}: {', '.join(row.event_types)})."
               + ("" if secret_stdin else " The signing secret above is shown only now: give it to the receiver."),
               err=True)


@webhooks_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@unit_of_work
def webhooks_list(fmt: str, as_json: bool) -> None:
    """Every endpoint: id, status, URL, types, app, failure streak, last delivery."""
    rows = wh.list_endpoints()
    last = wh.last_deliveries([r.id for r in rows])
    out = []
    for r in rows:
        d = wh.endpoint_dict(r)
        d["last_delivery"] = wh.delivery_dict(last[r.id]) if r.id in last else None
        out.append(d)
    if _as_json(fmt, as_json):
        click.echo(json.dumps(out, indent=2))
        return
    if not out:
        click.echo("no webhook endpoints (add one with `idp webhooks add URL --event TYPE`)")
        return
    click.echo("ID\tSTATUS\tURL\tEVENTS\tAPP\tSTREAK\tLAST DELIVERY")
    for d in out:
        status = "enabled" if d["enabled"] else f"disabled ({d['disabled_reason']})"
        ld = d["last_delivery"]
        last_text = "-" if ld is None else (f"{ld['at'][:16].replace('T', ' ')} "
                                            f"{'ok' if ld['ok'] else 'failed'} {ld['status_code'] or ''}".rstrip())
        click.echo(f"{d['id']}\t{status}\t{d['url']}\t{','.join(d['events'])}\t{d['app'] or '*'}\t"
                   f"{d['failure_streak']}\t{last_text}")


@webhooks_group.command("types")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def webhooks_types(fmt: str, as_json: bool) -> None:
    """The notification types an endpoint can subscribe to."""
    types = {t: what for t, what in catalog.TYPES.items() if t != catalog.TEST_TYPE}
    if _as_json(fmt, as_json):
        click.echo(json.dumps(types, indent=2))
        return
    width = max(len(t) for t in types)
    for t, what in types.items():
        click.echo(f"{t.ljust(width)}  {what}")


@webhooks_group.command("test")
@click.argument("endpoint_id", type=click.IntRange(1), metavar="ID")
@unit_of_work
def webhooks_test(endpoint_id: int) -> None:
    """Send a signed `webhook.test` event to endpoint ID now and show the answer (logged in its deliveries).
    Exit code 1 when the endpoint did not answer 2xx."""
    row, result = wh.send_test(endpoint_id)
    if result.ok:
        click.echo(f"delivered: HTTP {result.status_code} in {result.duration_ms} ms (id {row.notice_id})")
        return
    click.echo(f"failed: {result.summary()} ({result.duration_ms} ms, id {row.notice_id})", err=True)
    sys.exit(1)


@webhooks_group.command("remove")
@click.argument("endpoint_id", type=click.IntRange(1), metavar="ID")
@unit_of_work
def webhooks_remove(endpoint_id: int) -> None:
    """Remove endpoint ID and its delivery log (its pending deliveries are dropped)."""
    row = wh.remove_endpoint(endpoint_id)
    click.echo(f"webhook endpoint {endpoint_id} removed ({row.url})")


@webhooks_group.command("enable")
@click.argument("endpoint_id", type=click.IntRange(1), metavar="ID")
@click.option("--retry-dead", is_flag=True,
              help="Also retry the endpoint's dead deliveries (those queued while it was disabled).")
@unit_of_work
def webhooks_enable(endpoint_id: int, retry_dead: bool) -> None:
    """Enable endpoint ID again (after it was disabled by hand or for failing); its failure streak restarts."""
    wh.set_enabled(endpoint_id, True)
    click.echo(f"webhook endpoint {endpoint_id} enabled")
    if retry_dead:
        ids = wh.retry_dead_deliveries(endpoint_id)
        click.echo(f"{len(ids)} dead deliver{'y' if len(ids) == 1 else 'ies'} pending again")


@webhooks_group.command("disable")
@click.argument("endpoint_id", type=click.IntRange(1), metavar="ID")
@unit_of_work
def webhooks_disable(endpoint_id: int) -> None:
    """Disable endpoint ID: nothing is sent to it (deliveries already queued are logged as skipped and go dead:
    `idp webhooks enable ID --retry-dead` sends them later)."""
    wh.set_enabled(endpoint_id, False)
    click.echo(f"webhook endpoint {endpoint_id} disabled")


@webhooks_group.command("rotate-secret")
@click.argument("endpoint_id", type=click.IntRange(1), metavar="ID")
@click.option("--overlap-hours", type=click.FloatRange(0, 720), default=24, show_default=True,
              help="How long deliveries are signed with both the old and the new secret.")
@click.option("--secret-stdin", is_flag=True, help="Read the new secret (whsec_...) from standard input.")
@unit_of_work
def webhooks_rotate_secret(endpoint_id: int, overlap_hours: float, secret_stdin: bool) -> None:
    """A new signing secret for endpoint ID, printed once; during the overlap every delivery carries both
    signatures (space-separated in webhook-signature), so the receiver can switch without losing any."""
    given = _read_secret() if secret_stdin else None
    _, secret = wh.rotate_secret(endpoint_id, overlap_hours=overlap_hours, secret=given)
    if not secret_stdin:
        click.echo(secret)
    click.echo(f"webhook endpoint {endpoint_id}: new secret; the old one also signs for {overlap_hours:g} h.",
               err=True)


@webhooks_group.command("deliveries")
@click.argument("endpoint_id", type=click.IntRange(1), metavar="ID")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@unit_of_work
def webhooks_deliveries(endpoint_id: int, limit: int, fmt: str, as_json: bool) -> None:
    """The delivery log of endpoint ID, newest first: every attempt with its HTTP status or error."""
    rows = [wh.delivery_dict(d) for d in wh.list_deliveries(endpoint_id, limit=limit)]
    if _as_json(fmt, as_json):
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no deliveries yet")
        return
    click.echo("AT\tTYPE\tID\tATTEMPT\tRESULT\tSTATUS\tMS\tERROR")
    for d in rows:
        click.echo(f"{d['at'][:19].replace('T', ' ')}\t{d['type']}\t{d['notice_id']}\t{d['attempt']}\t"
                   f"{'ok' if d['ok'] else 'failed'}\t{d['status_code'] or '-'}\t{d['duration_ms'] or '-'}\t"
                   f"{d['error'] or ''}")
