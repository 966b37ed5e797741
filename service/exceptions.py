"""Typed failures of the shell. Expected outcomes are return values, not these."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class for every error raised by :mod:`service`."""

    default_message = "dealwatch service error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message


class SettingsError(ServiceError, ValueError):
    """The settings (environment, ``.env`` or ``defaults.toml``) hold an invalid value."""

    default_message = "invalid settings"


class NotFoundError(ServiceError, LookupError):
    """A requested row does not exist."""

    default_message = "not found"


class ConflictError(ServiceError):
    """The change conflicts with the stored state (duplicate id, stale version...)."""

    default_message = "conflict"


class PreconditionFailedError(ServiceError):
    """An ``If-Match`` precondition did not hold."""

    default_message = "the resource changed since it was read"


class UnsafeURLError(ServiceError, ValueError):
    """A URL points somewhere dealwatch refuses to connect to (SSRF guard)."""

    default_message = "URL is not allowed"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{reason}: {url}")
        self.url = url
        self.reason = reason


class FetchError(ServiceError):
    """A source could not be fetched (network, HTTP status, size or time limits)."""

    default_message = "fetch failed"

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status_code = status_code
        self.retry_after = retry_after


class SourceParseError(ServiceError):
    """A fetched document could not be turned into articles."""

    default_message = "could not parse the document"


class DeliveryError(ServiceError):
    """A delivery attempt failed."""

    default_message = "delivery failed"


class EmailDeliveryError(DeliveryError):
    """An e-mail could not be handed to the SMTP server."""


class WebhookDeliveryError(DeliveryError):
    """A webhook could not be delivered."""
