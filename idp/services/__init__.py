"""Use-case services shared by the CLI, the admin forms and the web flows."""


class ServiceError(ValueError):
    """A request to a service was refused; the message is shown to the admin as-is."""
