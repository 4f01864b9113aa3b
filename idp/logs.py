"""Logging for the production server: SSO events as JSON lines on stdout, everything else on stderr."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: int = logging.INFO) -> None:
    events = logging.getLogger("idp.events")
    if not any(getattr(h, "_idp", False) for h in events.handlers):
        out = logging.StreamHandler(sys.stdout)
        out.setFormatter(logging.Formatter("%(message)s"))
        out._idp = True  # type: ignore[attr-defined]
        events.addHandler(out)
        events.setLevel(level)
        events.propagate = False
    root = logging.getLogger("idp")
    if not any(getattr(h, "_idp", False) for h in root.handlers):
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        err._idp = True  # type: ignore[attr-defined]
        root.addHandler(err)
        root.setLevel(level)
