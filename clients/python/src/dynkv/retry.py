"""When to retry, and how long to wait: the client's retry policy.

Retrying is only safe when a second attempt cannot do something the first
did not intend:

- A read can always be retried.
- A write whose request never left the client (the connection could not
  be opened) can be retried.
- A write that may have reached a node (the connection broke after it was
  sent, the answer timed out, the node answered 503) is retried only when
  it carries an ``Idempotency-Key``: the coordinator then recognises the
  retry and applies nothing new (crates/quorum/src/idempotency.rs). Every
  write this client sends carries one unless the caller turns that off.
- Any other answer (4xx, 500) is final: the same request would fail the
  same way, or its effect is unknown.

Waits between attempts are "full jitter" exponential backoff (AWS
architecture blog, "Exponential Backoff And Jitter"): attempt ``k`` waits a
uniform draw in ``[0, min(cap, base * 2**k))``, which spreads the retries
of many clients that failed together. :meth:`Backoff.delay` takes the
random draw as an argument, so the schedule is tested without randomness.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "retryable_status"]


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff."""

    #: The ceiling of the first wait, in seconds.
    base: float = 0.02
    #: No wait is longer than this, in seconds.
    cap: float = 1.0

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt ``attempt`` (0-based)."""
        return min(self.cap, self.base * (2 ** min(attempt, 62)))

    def delay(self, attempt: int, draw: float | None = None) -> float:
        """The wait after failed attempt ``attempt``: ``draw`` (in
        ``[0, 1)``, a fresh random number when omitted) of the ceiling."""
        if draw is None:
            draw = random.random()
        if not 0.0 <= draw < 1.0:
            raise ValueError(f"draw must be in [0, 1), got {draw}")
        return draw * self.ceiling(attempt)


def retryable_status(status: int, code: str | None, is_write: bool, idempotent: bool) -> bool:
    """Whether an HTTP answer may be retried on another attempt.

    503 means the node could not gather its quorum in time, is overloaded,
    or could not serve a read-your-writes floor yet: nothing was done
    (overloaded), or a retry is harmless for a read, or deduplicated for a
    write with an idempotency key. 408 (the body was not read in time)
    stored nothing. Every other status is final.
    """
    if status == 408:
        return True
    if status == 503:
        if not is_write:
            return True
        return idempotent or code == "overloaded"
    return False
