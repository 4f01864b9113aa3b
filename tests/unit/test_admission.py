"""Admission control decisions (idp.admission) with an injected clock, and the request classification."""

from __future__ import annotations

import threading

import pytest

from idp.admission import Admission, ShedLog, WorkClass
from idp.web.admission import classify


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(budget_s: float = 0.1, sso: int = 1, service_s: float = 0.01, max_waiting: int = 0) -> tuple[Admission, Clock]:
    clock = Clock()
    adm = Admission({WorkClass.SSO: sso, WorkClass.SIGNIN: 1, WorkClass.OTHER: 1}, budget_s, clock=clock,
                    initial_service_s={WorkClass.SSO: service_s, WorkClass.SIGNIN: 0.05}, alpha=0.2,
                    max_waiting=max_waiting)
    return adm, clock


def test_free_slot_is_granted_at_once() -> None:
    adm, _ = make()
    t = adm.admit(WorkClass.SSO)
    assert t is not None and t.granted.is_set()
    assert adm.predicted_wait_s(WorkClass.SSO) == pytest.approx(0.01)


def test_predicted_wait_sheds_past_the_budget() -> None:
    adm, _ = make(budget_s=0.105, sso=2, service_s=0.02)
    granted = [adm.admit(WorkClass.SSO) for _ in range(2)]
    assert all(t is not None and t.granted.is_set() for t in granted)
    queued = []
    # answered after (queued ahead + 1) x 20 ms / 2 + 20 ms <= 105 ms: 8 may queue, the 9th would take 110 ms
    for _ in range(8):
        t = adm.admit(WorkClass.SSO)
        assert t is not None and not t.granted.is_set()
        queued.append(t)
    assert adm.admit(WorkClass.SSO) is None
    view = {v.cls: v for v in adm.snapshot()}[WorkClass.SSO]
    assert (view.executing, view.waiting, view.shed, view.admitted) == (2, 8, 1, 10)


def test_release_hands_the_slot_fifo_and_learns_the_service_time() -> None:
    adm, clock = make(budget_s=1.0, service_s=0.01)
    first = adm.admit(WorkClass.SSO)
    second, third = adm.admit(WorkClass.SSO), adm.admit(WorkClass.SSO)
    assert first and second and third
    clock.now += 0.03       # the first one took 30 ms: the EWMA moves up by alpha x 20 ms (alpha 0.2 here)
    adm.release(first)
    assert second.granted.is_set() and not third.granted.is_set()
    view = {v.cls: v for v in adm.snapshot()}[WorkClass.SSO]
    assert view.service_ms == pytest.approx(14.0)
    assert view.executing == 1 and view.waiting == 1
    adm.release(second)
    adm.release(third)
    view = {v.cls: v for v in adm.snapshot()}[WorkClass.SSO]
    assert view.executing == 0 and view.waiting == 0


def test_one_outlier_moves_the_average_by_a_bounded_step() -> None:
    adm, clock = make(budget_s=1.0, service_s=0.01)
    t = adm.admit(WorkClass.SSO)
    assert t
    clock.now += 5.0        # a cold start: counted as 4 x 10 ms
    adm.release(t)
    assert {v.cls: v for v in adm.snapshot()}[WorkClass.SSO].service_ms == pytest.approx(16.0)


def test_classes_do_not_share_slots() -> None:
    adm, _ = make(budget_s=0.11)
    assert adm.admit(WorkClass.SIGNIN) is not None
    assert adm.admit(WorkClass.SIGNIN) is not None        # answered after 50 ms waiting + 50 ms
    assert adm.admit(WorkClass.SIGNIN) is None            # would take 150 ms
    sso = adm.admit(WorkClass.SSO)
    assert sso is not None and sso.granted.is_set()       # the sign-in burst does not touch SSO


def test_max_waiting_caps_the_queue_over_all_classes() -> None:
    adm, _ = make(budget_s=10.0, max_waiting=2)
    assert adm.admit(WorkClass.SSO) and adm.admit(WorkClass.SIGNIN)   # executing
    assert adm.admit(WorkClass.SSO) and adm.admit(WorkClass.SIGNIN)   # waiting: 2
    assert adm.admit(WorkClass.SSO) is None
    assert adm.admit(WorkClass.OTHER) is not None                     # a free slot needs no waiting


def test_wait_blocks_until_granted_and_withdraws_on_timeout() -> None:
    adm, _ = make(budget_s=1.0)
    first = adm.admit(WorkClass.SSO)
    second = adm.admit(WorkClass.SSO)
    assert first and second
    assert adm.wait(second, 0.01) is False                # withdrawn from the queue
    assert {v.cls: v for v in adm.snapshot()}[WorkClass.SSO].waiting == 0
    third = adm.admit(WorkClass.SSO)
    assert third is not None
    done = threading.Event()

    def waiter() -> None:
        if adm.wait(third, 10.0):
            done.set()

    th = threading.Thread(target=waiter)
    th.start()
    adm.release(first)
    th.join(10.0)
    assert done.is_set()


def test_thread_safety_under_contention() -> None:
    adm = Admission({WorkClass.SSO: 2}, budget_s=5.0)
    errors: list[str] = []

    def worker() -> None:
        for _ in range(200):
            t = adm.admit(WorkClass.SSO)
            if t is None:
                continue
            if not adm.wait(t, 10.0):
                errors.append("timeout")
                continue
            adm.release(t)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60.0)
    view = {v.cls: v for v in adm.snapshot()}[WorkClass.SSO]
    assert not errors and view.executing == 0 and view.waiting == 0
    assert view.admitted + view.shed == 1600


def test_shed_log_drains() -> None:
    log = ShedLog()
    log.add(WorkClass.SSO)
    log.add(WorkClass.SSO)
    log.add(WorkClass.SIGNIN)
    assert log.drain() == {WorkClass.SSO: 2, WorkClass.SIGNIN: 1}
    assert log.drain() == {}


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/healthz", None), ("GET", "/readyz", None), ("GET", "/metrics", None), ("GET", "/static/app.css", None),
    ("POST", "/login", WorkClass.SIGNIN), ("GET", "/login", WorkClass.OTHER), ("POST", "/mfa", WorkClass.SIGNIN),
    ("POST", "/passkeys/login", WorkClass.SIGNIN), ("GET", "/saml/sso", WorkClass.SSO),
    ("POST", "/saml/sso", WorkClass.SSO), ("GET", "/saml/continue/abc", WorkClass.SSO),
    ("GET", "/apps/wiki/sso", WorkClass.SSO), ("GET", "/oauth2/authorize", WorkClass.SSO),
    ("POST", "/oauth2/token", WorkClass.SSO), ("GET", "/saml/metadata", WorkClass.OTHER),
    ("GET", "/account", WorkClass.OTHER), ("GET", "/favicon.ico", WorkClass.OTHER),
    ("POST", "/admin/users/new", WorkClass.SIGNIN), ("POST", "/admin/users/alice/password", WorkClass.SIGNIN),
    ("POST", "/admin/users/alice/groups", WorkClass.OTHER), ("POST", "/api/v1/users", WorkClass.SIGNIN),
    ("PATCH", "/api/v1/users/alice", WorkClass.SIGNIN), ("POST", "/scim/v2/Users", WorkClass.SIGNIN),
    ("GET", "/api/v1/users", WorkClass.OTHER), ("POST", "/oauth2/authorize/consent", WorkClass.SSO),
])
def test_classify(method: str, path: str, expected: WorkClass | None) -> None:
    assert classify(method, path) is expected


def test_a_standing_queue_is_held_to_a_fraction_of_the_budget() -> None:
    """A burst may queue up to the budget; a queue that has not drained for longer than the budget may hold only
    STANDING_FRACTION of it, and draining it once restores the full budget."""
    from idp.admission import STANDING_FRACTION

    assert STANDING_FRACTION == 0.3
    adm, clock = make(budget_s=0.105, service_s=0.01)
    head = adm.admit(WorkClass.SSO)
    queue = [adm.admit(WorkClass.SSO) for _ in range(9)]        # answered within (8 + 1) x 10 ms + 10 <= 105 ms
    assert head is not None and all(t is not None for t in queue)
    assert adm.admit(WorkClass.SSO) is None                     # the 11th would take 110 ms
    refused_at = None
    for cycle in range(20):                                     # closed-loop users: one done, one more arrives
        clock.now += 0.01
        adm.release(head)
        head = queue.pop(0)
        assert head is not None and head.granted.is_set()
        t = adm.admit(WorkClass.SSO)
        if t is None:
            refused_at = cycle
            break
        queue.append(t)
    # the queue had stood 110 ms (> the 105 ms budget) in cycle 10: from then on ~100 ms > 31.5 ms is refused
    assert refused_at == 10
    while queue:                                                # drain it
        clock.now += 0.01
        adm.release(head)
        head = queue.pop(0)
        assert head is not None
    clock.now += 0.01
    adm.release(head)
    assert [(v.executing, v.waiting) for v in adm.snapshot() if v.cls is WorkClass.SSO] == [(0, 0)]
    burst = [adm.admit(WorkClass.SSO) for _ in range(10)]
    assert all(t is not None for t in burst)                    # a new burst: the full budget again


def test_a_short_standing_queue_is_not_refused() -> None:
    """Closed-loop users below overload: a queue that stands for seconds but stays within the fraction."""
    adm, clock = make(budget_s=0.25, service_s=0.003)
    head = adm.admit(WorkClass.SSO)
    queue = [adm.admit(WorkClass.SSO) for _ in range(15)]       # 16 users on this worker
    assert head is not None and all(t is not None for t in queue)
    for _ in range(300):                                        # 0.9 s, standing: (15 + 1) x 3 + 3 = 51 <= 75 ms
        clock.now += 0.003
        adm.release(head)
        head = queue.pop(0)
        assert head is not None
        t = adm.admit(WorkClass.SSO)
        assert t is not None
        queue.append(t)


def _call(mw, method: str, path: str, body: bytes = b"") -> tuple[str, dict]:  # type: ignore[no-untyped-def]
    import io

    seen: dict = {}
    status: list[str] = []
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_LENGTH": str(len(body)) if body else "",
               "wsgi.input": io.BytesIO(body)}
    out = mw(environ, lambda s, h, e=None: status.append(s))
    seen["input"] = environ["wsgi.input"]
    close = getattr(out, "close", None)
    b"".join(out)
    if close:
        close()
    return status[0], seen


def test_middleware_classifies_the_path_the_router_matches_and_buffers_the_body() -> None:
    """`//login` routes to /login (werkzeug strips leading slashes): it is sign-in work, not "other"; the body is
    read before a slot is taken, and the app reads the same bytes."""
    from idp.web.admission import AdmissionMiddleware

    got: list[bytes] = []

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        got.append(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"] or 0)))
        start_response("200 OK", [])
        return [b"ok"]

    adm, _ = make(budget_s=1.0)
    mw = AdmissionMiddleware(app, adm)
    assert _call(mw, "POST", "//login", b"username=a&password=b")[0] == "200 OK"
    assert got == [b"username=a&password=b"]
    views = {v.cls: v for v in adm.snapshot()}
    assert (views[WorkClass.SIGNIN].admitted, views[WorkClass.OTHER].admitted) == (1, 0)
    assert views[WorkClass.SIGNIN].executing == 0                 # released when the server closed the body


def test_the_standing_limit_is_configurable_and_the_budget_turns_it_off() -> None:
    from idp.config import load_settings

    assert load_settings({}).standing_queue_ms is None
    assert load_settings({"IDP_STANDING_QUEUE_MS": "120"}).standing_queue_ms == 120
    clock = Clock()
    adm = Admission({WorkClass.SSO: 1}, 0.105, clock=clock, initial_service_s={WorkClass.SSO: 0.01},
                    standing_s=0.105)
    head = adm.admit(WorkClass.SSO)
    queue = [adm.admit(WorkClass.SSO) for _ in range(9)]
    assert head is not None and all(t is not None for t in queue)
    for _ in range(30):                                         # standing for 300 ms: still the full budget
        clock.now += 0.01
        adm.release(head)
        head = queue.pop(0)
        t = adm.admit(WorkClass.SSO)
        assert head is not None and t is not None
        queue.append(t)
