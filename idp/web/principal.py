"""flask-login's current user: a live IdP session and its user (the web layer's view of auth.sessions)."""

from __future__ import annotations

from flask_login import UserMixin
from werkzeug.exceptions import Unauthorized

from ..auth.sessions import SessionView
from ..extensions import db
from ..models import IdpSession, User


class Principal(UserMixin):
    """What flask-login calls the current user: a live IdP session and its user.

    `view` is a plain snapshot read without the ORM (the SSO path needs nothing else); the ORM
    rows `session` and `user` are loaded on first use by the pages that change them (logout,
    second factor, account, admin).
    """

    def __init__(self, view: SessionView, session: IdpSession | None = None) -> None:
        self.view = view
        self._session = session

    @classmethod
    def of(cls, session: IdpSession) -> Principal:
        return cls(SessionView.of(session), session)

    def get_id(self) -> str:  # the session id, not the user id: ending the session logs the browser out
        return self.view.id

    @property
    def is_active(self) -> bool:
        return not self.view.user.disabled

    @property
    def is_admin(self) -> bool:
        return self.view.user.is_admin

    @property
    def session(self) -> IdpSession:
        if self._session is None:
            row = db.session.get(IdpSession, self.view.id)
            if row is None:  # removed since the request started (user deleted): treat as logged out
                raise Unauthorized("the session has ended")
            self._session = row
        return self._session

    @property
    def user(self) -> User:
        return self.session.user
