"""The exceptions the client raises.

Every error answer of a dynkv node is JSON ``{"error": "<sentence>",
"code": "<slug>"}``; :class:`DynkvError` keeps the status, the slug and
the sentence, and the subclasses name the cases an application handles
differently.
"""

from __future__ import annotations

__all__ = [
    "DynkvError",
    "QuorumNotMet",
    "AuthError",
    "Unavailable",
    "ConflictError",
]


class DynkvError(Exception):
    """An error answer from a node (or, for the subclasses without a
    status, from the client itself)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 node: str | None = None):
        super().__init__(message)
        self.message = message
        #: HTTP status of the answer, when a node answered.
        self.status = status
        #: The error's slug (``bad_parameter``, ``quorum_not_met``, ...).
        self.code = code
        #: The node that answered.
        self.node = node

    def __str__(self) -> str:
        where = f" from {self.node}" if self.node else ""
        if self.status is None:
            return self.message
        code = f" {self.code}" if self.code else ""
        return f"{self.status}{code}{where}: {self.message}"


class QuorumNotMet(DynkvError):
    """503: fewer than R (or W) replicas answered in time. For a write the
    value may still be on some replicas, as in Dynamo."""

    def __init__(self, message: str, status: int, code: str, node: str | None,
                 needed: int | None, acked: int | None):
        super().__init__(message, status, code, node)
        #: How many replicas the request needed, and how many answered.
        self.needed = needed
        self.acked = acked


class AuthError(DynkvError):
    """401 (no or wrong credentials) or 403 (no grant for the operation)."""


class Unavailable(DynkvError):
    """No node could be reached, or every attempt failed in a way that may
    be retried; ``attempts`` lists ``(node, what happened)``."""

    def __init__(self, message: str, attempts: list[tuple[str, str]]):
        super().__init__(message)
        self.attempts = attempts


class ConflictError(DynkvError):
    """``modify`` gave up: every write it made met a concurrent write."""
