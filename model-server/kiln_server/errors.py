"""The one error type the server raises for a request, with the HTTP status it maps to.

Every failure a client can cause or see is an ``InferenceError``; the HTTP layer renders it
in one place as ``{"error": "..."}`` with its status code.
"""

from __future__ import annotations


class InferenceError(Exception):
    """A request failure with the HTTP status code that reports it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"InferenceError({self.status}, {self.message!r})"


def bad_request(message: str) -> InferenceError:
    return InferenceError(400, message)


def not_found(message: str) -> InferenceError:
    return InferenceError(404, message)


def unavailable(message: str) -> InferenceError:
    return InferenceError(503, message)
