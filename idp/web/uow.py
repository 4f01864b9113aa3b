"""Each web request's scope: it owns its unit of work (flows and services write, the request commits)
and starts with no audit actor left over from the previous request on the same worker thread.

Views that must make their writes durable before the response leaves (an SSO event before the
assertion, a parked request before the redirect) call `commit()` themselves; every other request
is committed once by the `after_request` hook. A database failure at that commit becomes the same
503 page as any other outage, and the response that was about to go out is dropped.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request

from .. import audit
from ..extensions import db
from .responses import unavailable_page


def commit() -> None:
    db.session.commit()


def rollback() -> None:
    db.session.rollback()


def init_app(app: Flask) -> None:
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    @app.before_request
    def _fresh_request_scope() -> None:
        audit.reset_actor()   # views that know the user name the actor again (admin, account)

    @app.teardown_request
    def _end_request_scope(_exc: BaseException | None) -> None:
        audit.reset_actor()

    @app.after_request
    def _commit_unit_of_work(resp: Response) -> Response:
        if resp.status_code >= 500:
            db.session.rollback()
            return resp
        try:
            db.session.commit()
        except (DBAPIError, PoolTimeoutError) as exc:
            logging.getLogger("idp").error("commit failed on %s %s: %s", request.method, request.path,
                                           exc.__class__.__name__)
            db.session.rollback()
            return unavailable_page()
        return resp
