"""Run the checks in their fixed order; the first that decides wins; a crashing check denies (fail closed)."""

from __future__ import annotations

import logging

from ..reasons import Reason
from .checks import CHECKS
from .model import AccessContext, Decision, Effect

log = logging.getLogger("idp.policy")


def evaluate(ctx: AccessContext) -> Decision:
    """The decision for one user, app and request. Used by SSO, IdP-initiated launches, the launcher and the dry run."""
    for name, check in CHECKS:
        try:
            decision = check(ctx)
        except Exception as exc:  # noqa: BLE001 - any failure of a check must deny, never allow
            log.exception("policy check %s failed for app %s", name, ctx.app_slug)
            return Decision(Effect.DENY, name, Reason.POLICY_ERROR,
                            f"the {name} check failed: {exc.__class__.__name__}", error=True)
        if decision is not None:
            return decision
    return Decision(Effect.DENY, "engine", Reason.POLICY_ERROR, "no check allowed the request", error=True)
