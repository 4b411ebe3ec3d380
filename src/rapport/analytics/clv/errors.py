"""Why a CLV model can refuse to answer, as errors a caller can tell apart.

A model fitted to too little data, or one whose optimiser gave up, yields parameters that
look like numbers but mean nothing; scoring customers with them would write garbage onto
every card. These errors stop that before anything is predicted or stored.
"""

from __future__ import annotations


class ClvError(ValueError):
    """A CLV model cannot be fitted or used on this data."""


class NotEnoughData(ClvError):
    """Too few customers, or too few who came back, to identify the model's parameters."""


class DidNotConverge(ClvError):
    """The maximum-likelihood search stopped without reaching a maximum.

    ``params`` holds the last point reached, for diagnosis only.
    """

    def __init__(self, model: str, reason: str, params: dict[str, float]) -> None:
        self.model = model
        self.reason = reason
        self.params = params
        shown = ", ".join(f"{k}={v:.4g}" for k, v in params.items())
        super().__init__(f"the {model} fit did not converge: {reason} (last point: {shown})")


class UnusableModel(ClvError):
    """The fitted parameters describe a population without a finite mean (e.g. q <= 1)."""
