"""Use-case services shared by the CLI, the admin forms and the web flows."""

from __future__ import annotations


class ServiceError(ValueError):
    """A request to a service was refused; the message is shown to the admin as-is.

    `field` names the input the refusal is about (the service's own parameter name, such as "slug",
    "metadata" or "ip_ranges"), so a form can show the message next to that field; None when the
    refusal is about the request as a whole.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
