"""Short-lived server-side state referenced by an unguessable token (parked SSO requests, logout chains)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import delete

from .extensions import db
from .models import PendingRequest, utcnow

TTL = timedelta(minutes=30)


def put(data: dict[str, Any]) -> str:
    token = secrets.token_urlsafe(24)
    now = utcnow()
    db.session.add(PendingRequest(id=token, data=data, created_at=now))
    db.session.commit()
    return token


def get(token: str | None, kind: str, *, consume: bool) -> dict[str, Any] | None:
    if not token or len(token) > 64:
        return None
    row = db.session.get(PendingRequest, token)
    if row is None or row.data.get("kind") != kind:
        return None
    if utcnow() - row.created_at > TTL:
        db.session.delete(row)
        db.session.commit()
        return None
    data = dict(row.data)
    if consume:
        db.session.delete(row)
        db.session.commit()
    return data


def replace(token: str, data: dict[str, Any]) -> None:
    row = db.session.get(PendingRequest, token)
    if row is not None:
        row.data = data
        db.session.commit()


def purge_expired() -> None:
    db.session.execute(delete(PendingRequest).where(PendingRequest.created_at < utcnow() - TTL))
    db.session.commit()
