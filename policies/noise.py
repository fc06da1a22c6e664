"""Differential-privacy noise: an exact discrete-Laplace sampler on keyed bits, and the ε ledger.

*Randomness.* The noise of one cell (contract, view, window, group, measure) reads its own
deterministic bit stream: the blocks ``HMAC-SHA256(noise_key, label ‖ counter)`` for counter
0, 1, 2… (8 bytes, big-endian), read most significant bit first, where ``label`` is the
canonical JSON of those five. Re-releasing a window (after a crash, on another worker) gives
the *same* noise: an observer never sees two independent draws to average out. Python's
``random`` and OpenDP's samplers are not used because neither offers keyed, reproducible draws.

*Sampling* is exact: from the bits on, only integers and ``Fraction`` (no floating point, so
the support and the tails are those of the distribution; cf. Mironov 2012). Canonne, Kamath &
Steinke 2020, "The Discrete Gaussian for Differential Privacy", Algorithms 1 and 2:

* ``uniform(n)``: ⌈log2 n⌉ bits, drawn again until the value is below ``n``;
* ``Bernoulli(exp(-γ))`` for rational γ ≥ 0: for γ ≤ 1, draw ``Bernoulli(γ/K)`` for
  K = 1, 2… until one fails, and answer "K is odd"; for γ > 1, ⌊γ⌋ draws of ``exp(-1)`` then
  one of ``exp(-(γ - ⌊γ⌋))``;
* discrete Laplace of scale ``t/s``, ``P(Y=y) ∝ exp(-s|y|/t)``: U uniform in [0, t) kept with
  probability ``exp(-U/t)``, V geometric (``Bernoulli(exp(-1))`` until a failure),
  ``Y = ⌊(U + tV)/s⌋``, a sign bit, negative zero rejected.

*Bounds and sensitivity.* Before anything is computed, each subject's contribution to one
window is bounded (``policies.aggregate``, ``policies.oracle``): at most G = ``max_groups``
groups, at most C = ``max_contributions`` events in each (the first ones in offset order), and
noised sums clamp each value into [−B, B] (B = ``value_bound``). One subject then changes the
vector of a window's groups, in L1, by at most Δ: ``count`` and ``distinct`` G·C,
``distinct_subjects`` G, ``sum`` G·C·B. Each measure's noise is scaled to its Δ, so one measure
of one window costs ε whatever the number of groups (``sensitivity``).

*Mechanisms.* ε and Δ are read as exact decimals. A value is snapped to a grid ``g`` (round
half up, so shifting a value by whole grid steps shifts its snap by as many: a difference of at
most Δ stays at most ``d = ⌈Δ/g⌉`` steps), then ``g·Y`` is added with Y of scale ``d/ε`` in grid
steps, i.e. ``P(noise = g·y) ∝ exp(-ε|y|/d)``:

* ``geometric`` (discrete Laplace, the default): ``g = 1``, so ``P(Y=y) ∝ exp(-ε|y|/Δ)`` for a
  whole-number Δ (a non-integer Δ counts as ⌈Δ⌉). Sums are rounded to whole numbers first: an
  integer noise added to a raw float sum would publish its fractional part exactly.
* ``laplace``: the same sampler on the finer grid ``g = Δ / 2^LAPLACE_GRID_BITS`` (a discretised
  Laplace of scale Δ/ε, as OpenDP does for floats); there is no continuous draw.

Noisy values are clamped at 0; counts (count, distinct_subjects, distinct) are integers.

*Release decision* (DP partition selection, ``released``): a group is published only if it has
at least k distinct subjects *and* its subject count plus a discrete Laplace draw of scale
G/ε (its own bit stream, label ``#release``) reaches ``k + m``. The first condition keeps the
k-anonymity invariant; the second makes the decision itself ε-DP except with probability
δ = G·P(Y ≥ m) = G·q^m/(1+q), q = exp(−ε/G): a group at exactly k subjects, which one subject
would push below k, is released only when the draw reaches m. m is the contract's
``selection_margin`` (the smallest m with that δ at most the contract's ``delta``). The decision
is charged like one more noised measure: a window costs ε × (noised measures + 1).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from policies.base import MeasureValue
from policies.spec import NOISY_KINDS, MeasureSpec, NoiseSpec

INTEGER_KINDS = ("count", "distinct_subjects", "distinct")
LAPLACE_GRID_BITS = 10
"""``laplace`` releases on multiples of Δ/1024: far below the noise scale Δ/ε for any ε < 1000."""
_BLOCK_BITS = 256


class KeyedBits:
    """A deterministic bit stream: ``HMAC-SHA256(key, label ‖ counter)`` blocks, counter mode."""

    def __init__(self, key: bytes, label: bytes) -> None:
        self.key, self.label = key, label
        self.counter = 0
        self._pool = 0  # unread bits, the next one most significant
        self._available = 0

    def take(self, n: int) -> int:
        """The next ``n`` bits of the stream as an integer (first bit most significant)."""
        while self._available < n:
            block = hmac.digest(
                self.key, self.label + self.counter.to_bytes(8, "big"), hashlib.sha256
            )
            self.counter += 1
            self._pool = (self._pool << _BLOCK_BITS) | int.from_bytes(block, "big")
            self._available += _BLOCK_BITS
        self._available -= n
        value = self._pool >> self._available
        self._pool &= (1 << self._available) - 1
        return value


def uniform(bits: KeyedBits, n: int) -> int:
    """Uniform integer in [0, n): ⌈log2 n⌉ bits, rejected until below n (no bits for n = 1)."""
    width = (n - 1).bit_length()
    while True:
        value = bits.take(width)
        if value < n:
            return value


def bernoulli(bits: KeyedBits, p: Fraction) -> bool:
    """True with probability ``p`` (0 ≤ p ≤ 1), exactly."""
    return uniform(bits, p.denominator) < p.numerator


def bernoulli_exp(bits: KeyedBits, gamma: Fraction) -> bool:
    """True with probability ``exp(-gamma)`` for rational ``gamma ≥ 0`` (CKS 2020, Alg. 1)."""
    return _bernoulli_exp(bits, gamma.numerator, gamma.denominator)


def _bernoulli_exp(bits: KeyedBits, num: int, den: int) -> bool:
    # exp(-num/den) on plain integers: Fraction arithmetic here would dominate the draw's cost.
    whole, rest = divmod(num, den)
    for _ in range(whole):
        if not _bernoulli_exp_at_most_one(bits, 1, 1):
            return False
    return _bernoulli_exp_at_most_one(bits, rest, den)


def _bernoulli_exp_at_most_one(bits: KeyedBits, num: int, den: int) -> bool:
    # K = first k whose Bernoulli(γ/k) fails: P(K > k) = γ^k/k!, so P(K odd) = exp(-γ).
    k = 1
    while uniform(bits, den * k) < num:
        k += 1
    return k % 2 == 1


def discrete_laplace(bits: KeyedBits, scale: Fraction) -> int:
    """``P(Y=y) ∝ exp(-|y|/scale)`` for rational ``scale > 0`` (CKS 2020, Alg. 2)."""
    t, s = scale.numerator, scale.denominator
    while True:
        u = uniform(bits, t)
        if not _bernoulli_exp(bits, u, t):
            continue
        v = 0
        while _bernoulli_exp(bits, 1, 1):
            v += 1
        y = (u + t * v) // s
        negative = bits.take(1) == 1
        if negative and y == 0:
            continue  # -0 and +0 are one value: keep P(0) right
        return -y if negative else y


def cell_bits(
    key: bytes, contract: str, view: str, window_start: int, group: Mapping[str, Any], measure: str
) -> KeyedBits:
    """The bit stream of one released cell, a pure function of the key and the cell."""
    label = json.dumps(
        [contract, view, window_start, sorted(group.items()), measure],
        separators=(",", ":"),
        default=str,
    )
    return KeyedBits(key, label.encode())


RELEASE_LABEL = "#release"
"""The bit stream of a group's release decision (``#`` cannot start a measure name)."""


def sensitivity(kind: str, noise: NoiseSpec) -> Fraction:
    """Δ: how much one subject can change a measure, summed over a window's groups (L1)."""
    groups, per_group = noise.max_groups, noise.max_contributions
    if kind == "distinct_subjects":
        return Fraction(groups)
    if kind == "sum":
        if noise.value_bound is None:
            msg = "a noised sum needs a value bound"
            raise ValueError(msg)
        return groups * per_group * _exact(noise.value_bound)
    return Fraction(groups * per_group)  # count, distinct


@functools.cache
def noise_grid(noise: NoiseSpec, kind: str) -> tuple[Fraction, Fraction]:
    """``(g, scale)``: the grid values are released on, and Y's scale ``⌈Δ/g⌉/ε`` in grid steps."""
    delta = sensitivity(kind, noise)
    grid = Fraction(1) if noise.mechanism == "geometric" else delta / 2**LAPLACE_GRID_BITS
    return grid, math.ceil(delta / grid) / _exact(noise.epsilon)


def released(
    subjects: int,
    k: int,
    noise: NoiseSpec,
    key: bytes,
    contract: str,
    view: str,
    window_start: int,
    group: Mapping[str, Any],
) -> bool:
    """The release decision of a noised view's group (module docstring, *Release decision*)."""
    if subjects < k:
        return False
    bits = cell_bits(key, contract, view, window_start, group, RELEASE_LABEL)
    scale = Fraction(noise.max_groups) / _exact(noise.epsilon)
    return subjects + discrete_laplace(bits, scale) >= k + noise.margin


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
        if spec.kind not in NOISY_KINDS or not isinstance(value, int | float):
            continue
        grid, scale = noise_grid(noise, spec.kind)
        if not math.isfinite(value):
            continue  # an overflowed (infinite) sum has no grid point: left as computed
        bits = cell_bits(key, contract, view, window_start, group, spec.name)
        steps = max(0, _snap(value, grid) + discrete_laplace(bits, scale))
        if grid == 1:
            out[spec.name] = steps if spec.kind in INTEGER_KINDS else float(steps)
        else:
            released = steps * grid
            out[spec.name] = (
                _round_half_up(released) if spec.kind in INTEGER_KINDS else float(released)
            )
    return out


def noised_measures(specs: tuple[MeasureSpec, ...]) -> int:
    """How many measures of a view ``noisy_measures`` noises: each one spends ε per window."""
    return sum(1 for spec in specs if spec.kind in NOISY_KINDS)


def draws_per_window(specs: tuple[MeasureSpec, ...]) -> int:
    """What one released window is charged for, in ε: its noised measures and its release
    decision (sequential composition)."""
    return noised_measures(specs) + 1


def clamp(value: float, bound: float) -> float:
    """A summed value clamped into ``[-bound, bound]`` (noised sums)."""
    return -bound if value < -bound else bound if value > bound else value


def _snap(value: int | float, grid: Fraction) -> int:
    """The nearest grid step (halves up), exactly; an int on the unit grid is its own step."""
    if grid == 1 and isinstance(value, int):
        return value
    return _round_half_up(Fraction(value) / grid)


def _round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def _exact(x: float) -> Fraction:
    # Decimal reading of the contract's number: 0.1 × 10 windows is exactly 1.0, not 1.0000001.
    return Fraction(repr(x))


class EpsilonLedger:
    """ε spent per period; refuses a window that would exceed the budget.

    A released window costs ``epsilon × draws`` (every noised measure and the release decision
    spend ε: sequential composition), once: charging it again is free (a re-release). Each
    measure's noise is scaled to what one subject can change over all the groups of the window
    (``sensitivity``), so the groups cost ε together.
    Periods more than one behind the newest are forgotten and refuse further charges.
    """

    def __init__(self, epsilon: float, budget: float, period_ms: int, draws: int) -> None:
        self.budget, self.period_ms = budget, period_ms
        self.cost = _exact(epsilon) * draws
        self.charged: dict[int, set[int]] = {}
        self.floor: int | None = None

    def period_of(self, window_start: int) -> int:
        """Index of the budget period containing a window start."""
        return window_start // self.period_ms

    def spent(self, period: int) -> float:
        """ε spent in a period."""
        return float(len(self.charged.get(period, ())) * self.cost)

    def charge(self, window_start: int) -> bool:
        """Charge a window; False (and nothing charged) if the budget would be exceeded."""
        period = self.period_of(window_start)
        if self.floor is not None and period < self.floor:
            return False
        windows = self.charged.setdefault(period, set())
        if window_start in windows:
            return True
        if (len(windows) + 1) * self.cost > _exact(self.budget):
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
