"""What keeps a dispatcher polite to a provider: a token bucket and a circuit breaker.

Both work by deciding how many rows the dispatcher may *claim*, never by holding rows it
already claimed: a message the limits hold back stays ``queued``, untouched, and costs no
attempt. Both read the injected clock, so tests move time instead of sleeping.

They live in the dispatcher's process: with several workers, each has its own bucket (so
the provider sees up to workers × rate) and its own breaker.
"""

from __future__ import annotations

import math
from typing import Literal

from rapport.clock import Clock

State = Literal["closed", "open", "half_open"]


class TokenBucket:
    """``rate`` messages per second on average, bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: float | None, clock: Clock) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (leave it unset for no limit)")
        self.rate = rate
        self.capacity = float(burst) if burst is not None else max(1.0, rate)
        if self.capacity < 1:
            raise ValueError("burst must be at least 1 message")
        self.clock = clock
        self.tokens = self.capacity
        self._at = clock.now()

    def _refill(self) -> None:
        now = self.clock.now()
        elapsed = (now - self._at).total_seconds()
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self._at = now

    def available(self) -> int:
        """Whole messages that may go now."""
        self._refill()
        return math.floor(self.tokens + 1e-9)

    def take(self, n: int) -> None:
        self._refill()
        self.tokens -= n

    def wait_seconds(self) -> float:
        """How long until one more message may go (0 when one may go now)."""
        self._refill()
        return max(0.0, (1 - self.tokens) / self.rate)


class CircuitBreaker:
    """Stops sending to a backend that keeps failing, then probes it with one message.

    After ``failures`` consecutive failed results the breaker opens for ``open_seconds``:
    nothing of that channel is claimed, so queued rows wait instead of burning their
    attempts against a provider that is down. Then it is half-open: one message is let
    through; success closes it, failure opens it again for another period.
    """

    def __init__(self, failures: int, open_seconds: float, clock: Clock) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        if open_seconds <= 0:
            raise ValueError("open_seconds must be positive")
        self.threshold = failures
        self.open_seconds = open_seconds
        self.clock = clock
        self.state: State = "closed"
        self.consecutive = 0
        self._opened_at = clock.now()

    def allowance(self, batch: int) -> int:
        """How many messages may be claimed now: all, one probe, or none."""
        if self.state == "open":
            if (self.clock.now() - self._opened_at).total_seconds() < self.open_seconds:
                return 0
            self.state = "half_open"
        return 1 if self.state == "half_open" else batch

    def record(self, ok: bool) -> None:
        """One result from the backend: ``ok`` for sent or rejected (the backend works)."""
        if ok:
            self.consecutive = 0
            self.state = "closed"
            return
        self.consecutive += 1
        if self.state == "half_open" or self.consecutive >= self.threshold:
            self.state = "open"
            self._opened_at = self.clock.now()

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        if self.state != "open":
            return 0.0
        left = self.open_seconds - (self.clock.now() - self._opened_at).total_seconds()
        return max(0.0, left)
