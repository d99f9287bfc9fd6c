"""Every failure the proxy reports, with the matching HTTP status, in the error shape
of the API family of the request's path (meshcore.api_errors): OpenAI's
{"error": {"message", "type", "code"}}, or Anthropic's on /v1/messages."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from meshcore.api_errors import family_error


class ProxyError(Exception):
    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def response(self, path: str = "/") -> JSONResponse:
        return error_response(path, self.status, self.message, self.type, self.code, self.headers)


class BadRequest(ProxyError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class MethodNotAllowed(ProxyError):
    status, type, code = 405, "invalid_request_error", "method_not_allowed"


class ModelNotFound(ProxyError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class UnsupportedMediaType(ProxyError):
    status, type, code = 415, "invalid_request_error", "unsupported_media_type"


class BodyTooLarge(ProxyError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class ModelUnavailable(ProxyError):
    """The model exists but cannot take requests yet (loading, restarting)."""
    status, type, code = 503, "service_unavailable", "model_not_ready"


class BackendGone(ProxyError):
    status, type, code = 502, "server_error", "backend_unavailable"


def error_response(path: str, status: int, message: str, type_: str, code: str | None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(family_error(path, status, message, type_, code), status_code=status, headers=headers)
