"""Who the assertion is about: the NameID an app gets for a user, and the SessionIndex that single logout uses.

Persistent IDs are pairwise and stored on first use (they survive restarts and secret changes);
the session-participant row records which apps got an assertion in an IdP session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy import bindparam, insert, select, update

from ..auth.sessions import SessionView, UserView
from ..errors import AccessDenied
from ..extensions import db
from ..models import PersistentId, SessionParticipant, User, utcnow
from ..prepared import Prepared
from ..reasons import Reason
from ..saml.constants import (
    NAMEID_EMAIL,
    NAMEID_FORMATS,
    NAMEID_PERSISTENT,
    NAMEID_TRANSIENT,
    NAMEID_UNSPECIFIED,
    STATUS_INVALID_NAMEID_POLICY,
    STATUS_REQUESTER,
)
from ..services.apps import AppConfig
from ..services.users import user_fields


def name_id_for(app: AppConfig, user: User | UserView, requested_format: str | None,
                value: str | None = None) -> tuple[str, str]:
    """(format URI, value): the admin's choice is authoritative. A NameIDPolicy format is honoured only when it is
    the app's configured format, unspecified, or in the app's allow-list; anything else is InvalidNameIDPolicy.
    `value` is the app's NameID value source evaluated (--nameid-value, e.g. a Federation ID): it is the NameID
    of every format but transient (always a fresh random value)."""
    fmt = app.nameid_format_uri
    if requested_format and requested_format != NAMEID_UNSPECIFIED and requested_format != fmt:
        if requested_format not in NAMEID_FORMATS.values() or not app.allows_nameid_format(requested_format):
            raise AccessDenied(f"NameID format {requested_format[:100]} is not allowed for this app",
                               reason=Reason.UNSUPPORTED_NAMEID_FORMAT, saml_status=STATUS_REQUESTER,
                               saml_sub_status=STATUS_INVALID_NAMEID_POLICY)
        fmt = requested_format
    if value is not None and fmt != NAMEID_TRANSIENT:
        return fmt, value
    if fmt == NAMEID_EMAIL:
        return fmt, user.email
    if fmt == NAMEID_PERSISTENT:
        return fmt, persistent_id(user, app.saml.entity_id)
    if fmt == NAMEID_TRANSIENT:
        return fmt, "_" + secrets.token_hex(16)
    value = str(user_fields(user)[app.settings.nameid_field])
    return fmt, value


def stored_persistent_id(user_id: int, entity_id: str) -> str | None:
    """The user's pairwise ID at `entity_id` if one was issued (persistent_id creates it)."""
    return db.session.scalar(select(PersistentId.value).where(PersistentId.user_id == user_id,
                                                             PersistentId.app_entity_id == entity_id))


def persistent_id(user: User | UserView, entity_id: str) -> str:
    """Pairwise, opaque, stable: stored on first use so it survives restarts and secret changes."""
    row = db.session.scalar(select(PersistentId).where(PersistentId.user_id == user.id,
                                                       PersistentId.app_entity_id == entity_id))
    if row is not None:
        return row.value
    seed = hmac.new(secrets.token_bytes(32), f"{user.id}|{entity_id}".encode(), hashlib.sha256).digest()
    value = base64.b32encode(seed[:20]).decode("ascii").lower()
    db.session.add(PersistentId(user_id=user.id, app_entity_id=entity_id, value=value))
    db.session.flush()
    return value


_PARTICIPANT = Prepared(select(SessionParticipant.id, SessionParticipant.session_index, SessionParticipant.name_id)
                        .where(SessionParticipant.session_id == bindparam("sid"),
                               SessionParticipant.app_id == bindparam("aid"),
                               SessionParticipant.protocol == bindparam("proto")))
_PARTICIPANT_INSERT = Prepared(insert(SessionParticipant).values(
    session_id=bindparam("sid"), app_id=bindparam("aid"), name_id=bindparam("nid"), name_id_format=bindparam("fmt"),
    session_index=bindparam("idx"), created_at=bindparam("now"), protocol=bindparam("proto")))
_PARTICIPANT_UPDATE = Prepared(update(SessionParticipant).where(SessionParticipant.id == bindparam("pid"))
                               .values(name_id=bindparam("nid"), name_id_format=bindparam("fmt")))


def session_index_for(session: SessionView, app: AppConfig, name_id: str, fmt: str) -> str:
    """Record that `app` got an assertion in this session (for single logout); returns its SessionIndex.

    Prepared statements, not the ORM: this runs on every SSO. A second SSO into the same app keeps
    the SessionIndex and takes the latest NameID (transient IDs change every time).
    """
    row = _PARTICIPANT.first({"sid": session.id, "aid": app.id, "proto": "saml"})
    if row is None:
        index = "_" + secrets.token_hex(16)
        _PARTICIPANT_INSERT.run({"sid": session.id, "aid": app.id, "nid": name_id, "fmt": fmt, "idx": index,
                                 "now": utcnow(), "proto": "saml"})
        return index
    participant_id, index, current_name_id = row
    if current_name_id != name_id:
        _PARTICIPANT_UPDATE.run({"pid": participant_id, "nid": name_id, "fmt": fmt})
    return str(index)
