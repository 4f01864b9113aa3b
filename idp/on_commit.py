"""Side effects held in a session until its transaction commits (metrics, log lines, syslog messages of the event
and audit rows it wrote), and dropped with the part of it that rolls back.

SQLAlchemy fires `after_commit` also when a SAVEPOINT is released and `after_rollback` also when one is rolled
back, so neither tells a savepoint from the transaction. Each held item is tagged with the transaction it was
written in (the innermost savepoint, else the transaction); a rollback drops only the items of the savepoint it
undid (and of savepoints inside it), a release keeps them for the outer commit, and only the commit of the
outermost transaction hands them out.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, SessionTransaction, scoped_session

Entry = tuple[SessionTransaction | None, Any]
AnySession = Session | scoped_session[Any]


def scope(session: AnySession) -> SessionTransaction | None:
    """The transaction whose rollback would undo what is written now (None: none begun yet, the coming one)."""
    own = session() if isinstance(session, scoped_session) else session
    return own.get_nested_transaction() or own.get_transaction()


def hold(session: AnySession, key: str, item: Any) -> None:
    """Keep `item` under `key` until the commit (take) or the rollback of what it was written in (discard)."""
    session.info.setdefault(key, []).append((scope(session), item))


def take(session: Session, key: str) -> list[Entry]:
    """The held items (with their tags), forgotten by the session."""
    return list(session.info.pop(key, None) or ())


def is_outermost_commit(session: Session) -> bool:
    """In an after_commit listener: True for the transaction's commit, False for a savepoint's release."""
    return session.get_nested_transaction() is None


def _undone(previous: SessionTransaction) -> SessionTransaction:
    """What a rollback of `previous` undid: the nearest savepoint or the transaction itself (a flush's inner
    transaction rolls back up to there)."""
    t = previous
    while t.parent is not None and not t.nested:
        t = t.parent
    return t


def _inside(tag: SessionTransaction | None, undone: SessionTransaction) -> bool:
    if undone.parent is None:
        return True                     # the whole transaction rolled back
    t = tag
    while t is not None:
        if t is undone:
            return True
        t = t.parent
    return False


def discard(session: Session, key: str, previous: SessionTransaction) -> None:
    """In an after_soft_rollback listener: forget the items written in what the rollback undid."""
    entries: list[Entry] | None = session.info.get(key)
    if not entries:
        return
    undone = _undone(previous)
    kept = [e for e in entries if not _inside(e[0], undone)]
    if kept:
        session.info[key] = kept
    else:
        session.info.pop(key, None)
