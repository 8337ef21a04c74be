"""Poisson request pacing shared by every user of a Locust process.

Send times are drawn up front from one seeded stream of exponential gaps, so the arrival process does
not depend on how many users there are; a user that picks up a send time late (all users were busy)
records how late it was, and the run record shows it.
"""

from __future__ import annotations

import random


class PoissonPacer:
    """Hands out send times of a Poisson process at RATE requests per second, from the first call on."""

    def __init__(self, rate: float, seed: int = 0) -> None:
        if rate <= 0:
            raise ValueError(f"request rate must be above 0, got {rate}")
        self.rate = rate
        self._rng = random.Random(seed)
        self._start: float | None = None
        self._offset = 0.0

    def next_send_time(self, now: float) -> float:
        """The send time of the next request; the first is NOW."""
        if self._start is None:
            self._start = now
        send_at = self._start + self._offset
        self._offset += self._rng.expovariate(self.rate)
        return send_at
