"""The API server's error vocabulary: one exception type that renders as a `kind: Status`.

Every failure the emulator reports goes through `ApiError`, so codes, reasons and message
wording are decided here and match what a real kube-apiserver answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REASON_BY_CODE = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
}


@dataclass
class Cause:
    """One entry of `details.causes`: a problem with one field."""

    reason: str
    message: str
    field: str

    def as_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


@dataclass
class ApiError(Exception):
    """A failed request, carrying exactly the Status object the client will receive."""

    code: int
    message: str
    reason: str = ""
    details: dict[str, Any] | None = None
    causes: list[Cause] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.reason:
            self.reason = REASON_BY_CODE.get(self.code, "InternalError")
        Exception.__init__(self, self.message)

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        details = dict(self.details) if self.details is not None else None
        if self.causes:
            details = details if details is not None else {}
            details["causes"] = [cause.as_dict() for cause in self.causes]
        if details is not None:
            body["details"] = details
        body["code"] = self.code
        return body


def qualified_resource(plural: str, group: str) -> str:
    """`widgets.ref.example.dev`, or just `pods` for the core group."""
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        f'{qualified_resource(plural, group)} "{name}" not found',
        details={"name": name, "group": group, "kind": plural} if group else _core(name, plural),
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'{qualified_resource(plural, group)} "{name}" already exists',
        reason="AlreadyExists",
        details={"name": name, "group": group, "kind": plural} if group else _core(name, plural),
    )


def conflict(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        f"Operation cannot be fulfilled on {qualified_resource(plural, group)} "
        f'"{name}": the object has been modified; please apply your changes to the latest '
        "version and try again",
        details={"name": name, "group": group, "kind": plural} if group else _core(name, plural),
    )


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> ApiError:
    """422 with one cause per problem, worded as the API server joins them."""
    qualified_kind = f"{kind}.{group}" if group else kind
    rendered = [f"{cause.field}: {cause.message}" for cause in causes]
    summary = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details: dict[str, Any] = {"name": name, "group": group, "kind": kind}
    if not group:
        details = {"name": name, "kind": kind}
    return ApiError(
        422,
        f'{qualified_kind} "{name}" is invalid: {summary}',
        details=details,
        causes=causes,
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def expired(message: str) -> ApiError:
    return ApiError(410, message, reason="Expired")


def _core(name: str, plural: str) -> dict[str, Any]:
    return {"name": name, "kind": plural}
