"""Webhooks: admins subscribe HTTPS endpoints to notification types (org-wide or for one app, with outcome and
reason filters); notices are delivered as signed CloudEvents through the outbox. Importing this package
registers the bus subscriber, the outbox handler and the delivery log's pruning.

endpoints: the endpoints and the cached subscriptions; signing: Standard Webhooks signatures; delivery: the
subscriber, the payload, the POST, the delivery log and automatic disabling.
"""

from __future__ import annotations

from .delivery import KIND, SUBSCRIBER, Attempt, build_event, retry_dead_deliveries, send_test
from .endpoints import (
    add_endpoint,
    delivery_dict,
    endpoint_dict,
    get_endpoint,
    last_deliveries,
    list_deliveries,
    list_endpoints,
    masked_url,
    remove_endpoint,
    rotate_secret,
    set_enabled,
)

__all__ = ["KIND", "SUBSCRIBER", "Attempt", "add_endpoint", "build_event", "delivery_dict", "endpoint_dict",
           "get_endpoint", "last_deliveries", "list_deliveries", "list_endpoints", "masked_url", "remove_endpoint",
           "retry_dead_deliveries", "rotate_secret", "send_test", "set_enabled"]
