"""Notifications: what leaves the IdP when something happens (webhooks, email, later more).

Every recorded event (events.record_event) and every audited admin change (audit.record) is offered to the
bus as a notice of a catalogued type (catalog.py): `sso.success`, `user.created`, `key.rotated`... Subscribers
(services.webhooks, services.notify_email) say which types they want and enqueue their deliveries in the
outbox, in the same unit of work as the change, so nothing is sent for a change that rolled back and nothing is
lost for one that committed. Nothing here talks to the network: the worker delivers.
"""
