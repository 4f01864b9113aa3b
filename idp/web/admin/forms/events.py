"""The event log's filter: a GET form (no CSRF token: it changes nothing) whose values also shape the exports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.datastructures import MultiDict
from wtforms import Field
from wtforms.validators import ValidationError

from idp.events import EventFilter
from idp.reasons import Outcome, Reason
from idp.web.admin.forms.base import AdminForm, TextField

FILTER_FIELDS = ("app", "user", "outcome", "reason", "protocol", "since", "until")
PROTOCOLS = ("saml", "oidc", "scim")
OUTCOMES = tuple(o.value for o in Outcome)
REASONS = tuple(sorted(r.value for r in Reason))


def parse_time(text: str, *, end: bool) -> datetime:
    """HTML date (YYYY-MM-DD) or datetime-local (YYYY-MM-DDTHH:MM[:SS]) as UTC; a date `until` includes that day."""
    try:
        value = datetime.fromisoformat(text)
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if end and ":" not in text:   # a whole day
            value += timedelta(days=1)
    except (ValueError, OverflowError):
        raise ValidationError("Use a date like 2026-11-28 or 2026-11-28T14:30 (UTC).") from None
    return value


class EventFilterForm(AdminForm):
    class Meta:
        csrf = False

    app = TextField(limit=150)
    user = TextField(limit=150)
    outcome = TextField(limit=150)
    reason = TextField(limit=150)
    protocol = TextField(limit=10)
    since = TextField(limit=150)
    until = TextField(limit=150)

    def __init__(self, args: MultiDict[str, str], **kwargs: Any) -> None:
        super().__init__(formdata=args, **kwargs)
        self.times: dict[str, datetime | None] = {"since": None, "until": None}

    def validate_outcome(self, field: Field) -> None:
        if field.data and field.data not in OUTCOMES:
            raise ValidationError(f"Choose one of {', '.join(OUTCOMES)}.")

    def validate_reason(self, field: Field) -> None:
        if field.data and field.data not in REASONS:
            raise ValidationError("Choose a reason from the list.")

    def validate_protocol(self, field: Field) -> None:
        if field.data and field.data not in PROTOCOLS:
            raise ValidationError(f"Choose one of {', '.join(PROTOCOLS)}.")

    def validate_since(self, field: Field) -> None:
        if field.data:
            self.times["since"] = parse_time(field.data, end=False)

    def validate_until(self, field: Field) -> None:
        if field.data:
            until = self.times["until"] = parse_time(field.data, end=True)
            since = self.times["since"]
            if since and until <= since:
                raise ValidationError("“To” must be after “From”.")

    @property
    def active(self) -> dict[str, str]:
        """The non-empty filter values, for links that keep the filter (pages, exports)."""
        return {name: self[name].data for name in FILTER_FIELDS if self[name].data}

    @property
    def shown(self) -> dict[str, str]:
        """since/until as datetime-local values, once parsed."""
        return {name: value.strftime("%Y-%m-%dT%H:%M" + (":%S" if value.second else ""))
                for name, value in self.times.items() if value is not None}

    @property
    def filter(self) -> EventFilter:
        """The filter to query with (after validate())."""
        return EventFilter(app_slug=self.app.data or None, username=self.user.data or None,
                           outcome=self.outcome.data or None, reason=self.reason.data or None,
                           protocol=self.protocol.data or None, since=self.times["since"], until=self.times["until"])
