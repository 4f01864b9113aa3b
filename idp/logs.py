"""Logging for the production server: SSO events as JSON lines on stdout, everything else on stderr."""

from __future__ import annotations

import logging
import sys
from typing import TextIO


def configure_logging(level: int = logging.INFO) -> None:
    # SSO events: one JSON line each on stdout, not repeated by the operator handler below
    _attach_once("idp.events", sys.stdout, "%(message)s", level).propagate = False
    _attach_once("idp", sys.stderr, "%(asctime)s %(levelname)s %(name)s: %(message)s", level)


def _attach_once(name: str, stream: TextIO, fmt: str, level: int) -> logging.Logger:
    """Give logger `name` one handler of ours (calling this again, e.g. per worker, adds none)."""
    logger = logging.getLogger(name)
    if not any(getattr(h, "_idp", False) for h in logger.handlers):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(fmt))
        handler._idp = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(level)
    return logger
