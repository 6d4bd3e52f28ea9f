"""One typed error tree. The edge renders any `WidgetError` as DESIGN.md's error body or `error` frame."""

from __future__ import annotations

from typing import Any, ClassVar


class WidgetError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    type: ClassVar[str] = "internal"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code is not None:
            self.code = code  # type: ignore[misc]

    def frame(self, **extra: Any) -> dict[str, Any]:
        """The error as a frame of the widget protocol (and an SSE `error` event)."""
        frame: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message,
                                 "retryable": self.retryable}
        if self.details:
            frame["details"] = self.details
        return {**frame, **extra}

    def body(self, request_id: str) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "type": self.type,
                "request_id": request_id,
                "details": self.details,
            }
        }


class InvalidRequest(WidgetError):
    status_code = 400
    code = "request.invalid"
    type = "invalid_request"


class PayloadTooLarge(InvalidRequest):
    status_code = 413
    code = "request.too_large"


class AuthError(WidgetError):
    status_code = 401
    code = "auth.invalid_key"
    type = "auth"


class UnknownKey(AuthError):
    code = "auth.unknown_key"  # well-formed, but no active key has it


class TokenInvalid(AuthError):
    code = "auth.invalid_token"


class TokenExpired(TokenInvalid):
    code = "auth.token_expired"


class OriginNotAllowed(WidgetError):
    status_code = 403
    code = "auth.origin_not_allowed"
    type = "auth"


class MetricsForbidden(WidgetError):
    """`/metrics` without its token, from another machine."""

    status_code = 403
    code = "metrics.forbidden"
    type = "auth"


class Forbidden(WidgetError):
    """A console user whose role may not do this."""

    status_code = 403
    code = "console.forbidden"
    type = "permission_denied"


class CsrfFailed(Forbidden):
    """A console change without its CSRF token (or with another session's)."""

    code = "console.csrf"


class SignedOut(AuthError):
    """A console change after the session has ended."""

    code = "console.signed_out"


class NotFound(WidgetError):
    status_code = 404
    code = "not_found"
    type = "not_found"


class PersonaNotFound(NotFound):
    code = "persona.not_found"


class ConversationNotFound(NotFound):
    code = "conversation.not_found"


class TenantNotFound(NotFound):
    code = "tenant.not_found"


class Conflict(WidgetError):
    status_code = 409
    code = "conflict"
    type = "conflict"


class SlugTaken(Conflict):
    code = "persona.slug_taken"


class RateLimited(WidgetError):
    status_code = 429
    code = "rate_limited"
    type = "rate_limit"
    retryable = True


class QuotaExceeded(RateLimited):
    code = "quota.exceeded"  # a key's monthly quota, until its reset


class GenerationFailed(WidgetError):
    status_code = 500
    code = "persona.generation_failed"
    type = "internal"


class ProviderError(WidgetError):
    status_code = 502
    code = "provider.error"
    type = "provider"
    retryable = True


class ProviderTimeout(ProviderError):
    status_code = 504
    code = "provider.timeout"


class UpstreamRefused(ProviderError):
    """The persona's provider settings are not allowed on this server (a model, an endpoint): nothing is called."""

    status_code = 422
    code = "provider.refused"
    retryable = False


class PolicyError(WidgetError):
    status_code = 422
    code = "policy.invalid"
    type = "policy"


class PolicyNotFound(NotFound):
    code = "policy.not_found"


class WebhookNotFound(NotFound):
    code = "webhook.not_found"


class PersonaInvalid(InvalidRequest):
    """A well-formed persona whose values are refused (a bad slug, topic id, URL, a number out of range)."""

    status_code = 422
    code = "persona.invalid"


class WebhookInvalid(InvalidRequest):
    """A well-formed body whose values are refused (the URL, the event types)."""

    status_code = 422
    code = "webhook.invalid"


class StorageUnavailable(WidgetError):
    status_code = 503
    code = "storage.unavailable"
    retryable = True


class TopicsUnavailable(WidgetError):
    """Topic boundaries were asked for, but the embedding model they need is not installed on this server."""

    status_code = 503
    code = "topics.unavailable"


class UpgradeRequired(InvalidRequest):
    """A plain HTTP request to a WebSocket endpoint."""

    status_code = 426
    code = "request.upgrade_required"


class ContentFiltered(InvalidRequest):
    """The OpenAI-compatible endpoint's answer to a visitor's message the guardrails refused: the same request
    would be refused again, so it is not to be retried."""

    code = "content_filter"


class IdempotencyKeyInvalid(InvalidRequest):
    code = "idempotency.invalid_key"


class IdempotencyKeyReused(InvalidRequest):
    status_code = 422
    code = "idempotency.key_reused"


class IdempotencyInFlight(Conflict):
    code = "idempotency.in_flight"
    retryable = True


class NotAcceptable(InvalidRequest):
    status_code = 406
    code = "request.not_acceptable"
