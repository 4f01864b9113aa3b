"""Who an ID token is about: the OIDC `sub` of a user (subject type "public", OIDC Core 8).

Opaque and stable: a random value stored on first use (the persistent-ID table, under one IdP-wide key rather
than an app's entity ID), so it never changes with a username or an email and reveals neither. The same user has
the same `sub` at every OIDC app; per-app (pairwise) SAML persistent NameIDs are unaffected.
"""

from __future__ import annotations

from sqlalchemy import select

from ..auth.sessions import UserView
from ..extensions import db
from ..models import PersistentId, User
from .saml_subject import persistent_id

# The persistent-ID "entity" under which the public OIDC subject is kept (not a URL any SP could have).
PUBLIC_SUBJECT_KEY = "urn:idp:oidc:subject:public"


def subject_for(user: User | UserView) -> str:
    """The user's `sub`; created (in the caller's unit of work) on first use."""
    return persistent_id(user, PUBLIC_SUBJECT_KEY)


def user_for_subject(sub: str) -> User | None:
    """The user whose `sub` this is (None: unknown, or never issued)."""
    if not sub or len(sub) > 64:
        return None
    return db.session.scalar(select(User).join(PersistentId, PersistentId.user_id == User.id)
                             .where(PersistentId.app_entity_id == PUBLIC_SUBJECT_KEY, PersistentId.value == sub))
