"""Accessors for per-app singletons (settings, key store, password hasher) and the request's client."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from flask import current_app, request
from flask_login import current_user

from ..auth.passwords import Passwords
from ..certs.keystore import KeyStore
from ..config import Settings
from ..flows.authorize import Client
from ..flows.step_up import passed_second_factor_recently, record_step_up_required, step_up_missing
from .clientip import client_ip


def settings() -> Settings:
    return cast(Settings, current_app.extensions["idp.settings"])


def keystore() -> KeyStore:
    return cast(KeyStore, current_app.extensions["idp.keystore"])


def passwords() -> Passwords:
    return cast(Passwords, current_app.extensions["idp.passwords"])


def current_client() -> Client:
    ip = client_ip(request.remote_addr, request.headers.get("X-Forwarded-For"), settings().trusted_proxies)
    return Client(ip=ip, user_agent=request.headers.get("User-Agent"))


def step_up_max_age() -> timedelta:
    return timedelta(seconds=settings().step_up_max_age_s)


def recent_second_factor() -> bool:
    """Whether this request's signed-in session passed a second factor within IDP_STEP_UP_MAX_AGE: what every
    account security change needs (flows.step_up)."""
    return passed_second_factor_recently(current_user.view if current_user.is_authenticated else None,
                                         step_up_max_age())


def record_step_up_refusal(change: str) -> int:
    """The signed-in user's `change` was refused for want of a recent second factor: the event id."""
    return record_step_up_required(current_user.user, change, current_client(),
                                   step_up_missing(current_user.view, step_up_max_age()))
