"""Admission control for one server process (a gunicorn worker): shed at once what cannot be answered in time.

Work comes in classes (sign-in, SSO, other pages). Each class lets `limit` requests execute at once; the rest
wait in a FIFO queue in this process. An arrival that cannot be answered within the latency budget is refused at
once (the caller answers 503), never after waiting: it would be answered after

    (requests queued ahead of it + 1) x the class's service time / limit   (its wait)
    + the class's service time                                             (its own execution)

with the service time an exponentially weighted moving average of how long the class's requests executed. An
arrival that finds a free slot (and nobody queued) is always admitted, however slow its class is.
Requests already admitted keep their place and their latency.

A burst is allowed the whole budget; a standing queue is not. Once a class has had requests waiting without a
break for longer than the budget (overload, not a burst: a queue that never drains adds latency and no
throughput), arrivals are admitted only while they would be answered within STANDING_FRACTION of the budget
(75 ms of the default 250; IDP_STANDING_QUEUE_MS). Admitted requests then keep a latency close to that of normal
load instead of sitting out the whole budget, and more of the excess is refused at once (the CoDel idea, applied
at admission). Closed-loop clients below overload are rarely affected: 16 users per worker at ~3 ms an SSO wait
~50 ms (on PostgreSQL, where an SSO waits for the database, a few percent of such requests were refused in
measurements: raise IDP_STANDING_QUEUE_MS, up to the budget, to trade the overload latency for fewer refusals).

The classes do not share slots, so a burst of password sign-ins (argon2 hashing) cannot take the slots of users
who already have a session (SSO signing), and the argon2 concurrency of a process is its sign-in limit.

Pure logic, no Flask: the clock is injected, every method is thread-safe. idp.web.admission wires it to WSGI.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class WorkClass(StrEnum):
    SIGNIN = "signin"   # password, TOTP, recovery code and passkey sign-in forms (password hashing)
    SSO = "sso"         # issuing SAML responses and OIDC codes / tokens (signing)
    OTHER = "other"     # every other page


SERVICE_FLOOR_S = 0.001        # an EWMA never predicts less than this per request (bounds the queue)
DEFAULT_SERVICE_S = {WorkClass.SIGNIN: 0.05, WorkClass.SSO: 0.01, WorkClass.OTHER: 0.01}   # before any sample
ALPHA = 0.1                    # EWMA weight of the newest sample
OUTLIER_FACTOR = 4.0           # a sample counts as at most this many times the current average
STANDING_FRACTION = 0.3        # of the budget: the answer-time limit once a queue has stood longer than the budget


class Ticket:
    """One admitted request: it may execute once `granted` is set; `release()` it when done."""

    __slots__ = ("cls", "granted", "granted_at", "queued_at")

    def __init__(self, cls: WorkClass, queued_at: float) -> None:
        self.cls = cls
        self.queued_at = queued_at
        self.granted = threading.Event()
        self.granted_at = 0.0


@dataclass
class ClassState:
    limit: int
    service_s: float
    executing: int = 0
    waiting: deque[Ticket] = field(default_factory=deque)
    admitted: int = 0      # totals since start (this process)
    shed: int = 0
    queued_since: float | None = None   # since when requests have waited without a break (None: none waiting)


@dataclass(frozen=True, slots=True)
class ClassView:
    """A snapshot of one class, for metrics and logs."""

    cls: WorkClass
    limit: int
    executing: int
    waiting: int
    service_ms: float
    admitted: int
    shed: int


class Admission:
    """Per-class executing limits, FIFO waiting and the shed decision against `budget_s`.

    `max_waiting` caps the requests waiting over all classes (the server's threads that may block here); 0 = no
    cap. `clock` returns seconds (monotonic).
    """

    def __init__(self, limits: Mapping[WorkClass, int], budget_s: float, *, max_waiting: int = 0,
                 clock: Callable[[], float] = time.monotonic,
                 initial_service_s: Mapping[WorkClass, float] | None = None, alpha: float = ALPHA,
                 standing_s: float | None = None) -> None:
        """`standing_s`: the answer-time limit once a queue has stood longer than the budget (default
        STANDING_FRACTION of the budget; the budget itself turns the rule off)."""
        if budget_s <= 0:
            raise ValueError("budget_s must be > 0")
        initial = {**DEFAULT_SERVICE_S, **(initial_service_s or {})}
        self.budget_s = budget_s
        self.standing_s = min(budget_s, budget_s * STANDING_FRACTION if standing_s is None else standing_s)
        self.max_waiting = max_waiting
        self.alpha = alpha
        self._clock = clock
        self._lock = threading.Lock()
        self._classes = {cls: ClassState(limit=max(1, limits.get(cls, 1)), service_s=initial[cls])
                         for cls in WorkClass}

    def predicted_wait_s(self, cls: WorkClass) -> float:
        """How long an arrival of `cls` now would wait before it executes (0 when a slot is free)."""
        with self._lock:
            return self._predicted(self._classes[cls])

    @staticmethod
    def _predicted(st: ClassState) -> float:
        if st.executing < st.limit and not st.waiting:
            return 0.0
        return (len(st.waiting) + 1) * max(st.service_s, SERVICE_FLOOR_S) / st.limit

    def admit(self, cls: WorkClass) -> Ticket | None:
        """A ticket (granted at once, or queued FIFO), or None: shed, answer 503 now."""
        with self._lock:
            st = self._classes[cls]
            now = self._clock()
            ticket = Ticket(cls, now)
            if st.executing < st.limit and not st.waiting:
                st.executing += 1
                st.admitted += 1
                ticket.granted_at = now
                ticket.granted.set()
                return ticket
            total_waiting = sum(len(c.waiting) for c in self._classes.values())
            answer_s = self._predicted(st) + st.service_s     # waiting, then its own execution
            if answer_s > self._limit_s(st, now) or (self.max_waiting and total_waiting >= self.max_waiting):
                st.shed += 1
                return None
            st.admitted += 1
            if not st.waiting:
                st.queued_since = now
            st.waiting.append(ticket)
            return ticket

    def _limit_s(self, st: ClassState, now: float) -> float:
        """The budget for a burst; STANDING_FRACTION of it once the queue has stood longer than the budget."""
        if st.queued_since is not None and now - st.queued_since > self.budget_s:
            return self.standing_s
        return self.budget_s

    def wait(self, ticket: Ticket, timeout_s: float | None = None) -> bool:
        """Block until the ticket may execute (True); False after `timeout_s` (the ticket is withdrawn)."""
        if ticket.granted.wait(timeout_s):
            return True
        with self._lock:
            if ticket.granted.is_set():   # granted between the timeout and the lock
                return True
            st = self._classes[ticket.cls]
            st.waiting.remove(ticket)
            if not st.waiting:
                st.queued_since = None
            return False

    def release(self, ticket: Ticket) -> None:
        """The request finished: learn its service time and hand its slot to the next waiter of its class."""
        with self._lock:
            st = self._classes[ticket.cls]
            now = self._clock()
            # one slow request (a cold start, a lock wait) moves the average by at most alpha x 3 x itself: a
            # single outlier must not shed a burst of ordinary requests, a lasting slowdown still shows in a few
            sample = min(max(0.0, now - ticket.granted_at), OUTLIER_FACTOR * st.service_s)
            st.service_s += self.alpha * (sample - st.service_s)
            if st.waiting:
                nxt = st.waiting.popleft()
                nxt.granted_at = now
                nxt.granted.set()    # the slot passes on: executing stays the same
                if not st.waiting:
                    st.queued_since = None
            else:
                st.executing -= 1

    def count_shed(self, cls: WorkClass) -> None:
        """A request admitted to the queue that gave up waiting (see wait): counted as shed."""
        with self._lock:
            self._classes[cls].shed += 1

    def snapshot(self) -> list[ClassView]:
        with self._lock:
            return [ClassView(cls, st.limit, st.executing, len(st.waiting), round(st.service_s * 1000, 2),
                              st.admitted, st.shed) for cls, st in self._classes.items()]


class ShedLog:
    """Shed requests per class since the last summary; a reporter drains it at most every few seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[WorkClass, int] = {}

    def add(self, cls: WorkClass) -> None:
        with self._lock:
            self._counts[cls] = self._counts.get(cls, 0) + 1

    def drain(self) -> dict[WorkClass, int]:
        """The counts since the last drain (reset)."""
        with self._lock:
            counts, self._counts = self._counts, {}
            return counts
