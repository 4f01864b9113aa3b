"""Accessors for per-app singletons (settings, key store, password hasher) and the request's client."""

from __future__ import annotations

from typing import cast

from flask import current_app, request

from ..auth.passwords import Passwords
from ..certs.keystore import KeyStore
from ..config import Settings
from ..flows.authorize import Client
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
