"""Differential-privacy noise with keyed, deterministic draws, and the ε ledger.

The draw for (contract, view, window, group, measure) is
``HMAC-SHA256(noise_key, canonical JSON of those five)`` → two 53-bit uniforms in (0, 1] →
inverse-CDF sampling. Re-releasing a window (after a crash, on another worker) therefore gives
the *same* noise: an observer never sees two independent draws to average out. Python's
``random`` and OpenDP's samplers are not used because neither offers keyed, reproducible draws.

* ``geometric`` (two-sided geometric = discrete Laplace): ``P(X=x) ∝ exp(-ε|x|/Δ)``, sampled
  as the difference of two geometric variables ``⌊ln u / ln p⌋`` with ``p = exp(-ε/Δ)``.
* ``laplace``: ``(Δ/ε)·(ln u₁ − ln u₂)``. Floating-point Laplace has known leaks
  (Mironov 2012); prefer ``geometric`` for counts.

Noisy values are clamped at 0; counts (count, distinct_subjects, distinct) are integers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from policies.base import MeasureValue
from policies.spec import MeasureSpec, NoiseSpec

_TWO53 = float(2**53)
INTEGER_KINDS = ("count", "distinct_subjects", "distinct")


def uniforms(
    key: bytes, contract: str, view: str, window_start: int, group: Mapping[str, Any], measure: str
) -> tuple[float, float]:
    """Two uniforms in (0, 1], a pure function of the key and the cell being released."""
    label = json.dumps(
        [contract, view, window_start, sorted(group.items()), measure],
        separators=(",", ":"),
        default=str,
    )
    digest = hmac.digest(key, label.encode(), hashlib.sha256)
    a = int.from_bytes(digest[:8], "big") >> 11
    b = int.from_bytes(digest[8:16], "big") >> 11
    return (a + 1) / _TWO53, (b + 1) / _TWO53


def geometric(u1: float, u2: float, epsilon: float, sensitivity: float) -> int:
    """Two-sided geometric noise of scale ``sensitivity / epsilon`` by inverse CDF."""
    log_p = -epsilon / sensitivity  # ln p, p = exp(-ε/Δ)
    return math.floor(math.log(u1) / log_p) - math.floor(math.log(u2) / log_p)


def laplace(u1: float, u2: float, epsilon: float, sensitivity: float) -> float:
    """Laplace noise of scale ``sensitivity / epsilon`` (difference of two exponentials)."""
    return (sensitivity / epsilon) * (math.log(u1) - math.log(u2))


def noisy_measures(
    measures: Mapping[str, MeasureValue],
    specs: tuple[MeasureSpec, ...],
    noise: NoiseSpec,
    key: bytes,
    contract: str,
    view: str,
    window_start: int,
    group: Mapping[str, Any],
) -> dict[str, MeasureValue]:
    """The measures with noise added to count/sum/distinct values, clamped at 0."""
    out = dict(measures)
    for spec in specs:
        value = measures[spec.name]
        if not isinstance(value, int | float):
            continue
        u1, u2 = uniforms(key, contract, view, window_start, group, spec.name)
        if noise.mechanism == "geometric":
            drawn: float = geometric(u1, u2, noise.epsilon, noise.sensitivity)
        else:
            drawn = laplace(u1, u2, noise.epsilon, noise.sensitivity)
        released = max(0.0, value + drawn)
        out[spec.name] = int(round(released)) if spec.kind in INTEGER_KINDS else released
    return out


def _exact(x: float) -> Fraction:
    # Decimal reading of the contract's number: 0.1 × 10 windows is exactly 1.0, not 1.0000001.
    return Fraction(repr(x))


class EpsilonLedger:
    """ε spent per period; refuses a window that would exceed the budget.

    Each window of a view costs ``epsilon`` once (charging it again is free: re-release).
    Groups of one window are disjoint, so they compose in parallel and cost ε together.
    Periods more than one behind the newest are forgotten and refuse further charges.
    """

    def __init__(self, epsilon: float, budget: float, period_ms: int) -> None:
        self.epsilon, self.budget, self.period_ms = epsilon, budget, period_ms
        self.max_windows = int(_exact(budget) // _exact(epsilon)) if epsilon > 0 else 0
        self.charged: dict[int, set[int]] = {}
        self.floor: int | None = None

    def period_of(self, window_start: int) -> int:
        """Index of the budget period containing a window start."""
        return window_start // self.period_ms

    def spent(self, period: int) -> float:
        """ε spent in a period."""
        return float(len(self.charged.get(period, ())) * _exact(self.epsilon))

    def charge(self, window_start: int) -> bool:
        """Charge a window; False (and nothing charged) if the budget would be exceeded."""
        period = self.period_of(window_start)
        if self.floor is not None and period < self.floor:
            return False
        windows = self.charged.setdefault(period, set())
        if window_start in windows:
            return True
        if len(windows) + 1 > self.max_windows:
            return False
        windows.add(window_start)
        self._forget_old(period)
        return True

    def _forget_old(self, period: int) -> None:
        newest = max(self.charged)
        if period == newest and newest - 1 > (self.floor or -(2**63)):
            self.floor = newest - 1
            for old in [p for p in self.charged if p < self.floor]:
                del self.charged[old]

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state."""
        return {
            "floor": self.floor,
            "charged": {str(p): sorted(ws) for p, ws in self.charged.items()},
        }

    def load(self, data: dict[str, Any]) -> None:
        """Restore state written by ``to_dict``."""
        self.floor = data["floor"]
        self.charged = {int(p): set(ws) for p, ws in data["charged"].items()}
