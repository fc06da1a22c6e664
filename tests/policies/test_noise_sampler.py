"""The exact noise sampler: keyed bit stream, uniform integers, Bernoulli(exp(-γ)), discrete
Laplace (Canonne, Kamath & Steinke 2020), and the distribution the mechanisms release."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import Counter
from fractions import Fraction

import pytest

from policies.noise import (
    KeyedBits,
    bernoulli,
    bernoulli_exp,
    cell_bits,
    discrete_laplace,
    noisy_measures,
    uniform,
)
from policies.spec import MeasureSpec, NoiseSpec

pytestmark = pytest.mark.unit

KEY = bytes(range(32))
CELL = ("test-contract", "rich", 1_700_000_000_000, {"kind": "a", "x": 1.0}, "events")
LABEL = b'["test-contract","rich",1700000000000,[["kind","a"],["x",1.0]],"events"]'
N = 20_000


def within(observed: float, expected: float, stderr: float, sigmas: float = 4.0) -> bool:
    return abs(observed - expected) <= sigmas * stderr


# --- the keyed bit stream ------------------------------------------------------------------


def test_bit_stream_is_hmac_blocks_in_counter_mode() -> None:
    bits = cell_bits(KEY, *CELL)
    assert bits.label == LABEL  # the same canonical JSON label as every earlier draw
    blocks = b"".join(
        hmac.digest(KEY, LABEL + i.to_bytes(8, "big"), hashlib.sha256) for i in range(3)
    )
    assert bits.take(256 * 3) == int.from_bytes(blocks, "big")


def test_bit_stream_reads_the_same_bits_whatever_the_chunk_sizes() -> None:
    whole = KeyedBits(KEY, LABEL).take(700)
    chunked, pieces = KeyedBits(KEY, LABEL), [1, 7, 64, 255, 256, 3, 114]
    value = 0
    for size in pieces:
        value = (value << size) | chunked.take(size)
    assert sum(pieces) == 700 and value == whole
    assert KeyedBits(KEY, LABEL).take(64) == 0x4CF6D109ADA49054  # pinned


def test_same_cell_same_stream_other_cells_independent_streams() -> None:
    first = cell_bits(KEY, *CELL).take(256)
    assert cell_bits(KEY, *CELL).take(256) == first
    contract, view, window, group, measure = CELL
    others = [
        cell_bits(bytes(32), *CELL),
        cell_bits(KEY, contract, view, window + 1, group, measure),
        cell_bits(KEY, contract, view, window, {"kind": "b", "x": 1.0}, measure),
        cell_bits(KEY, contract, view, window, group, "people"),
        cell_bits(KEY, contract, "other", window, group, measure),
    ]
    streams = {first} | {bits.take(256) for bits in others}
    assert len(streams) == 1 + len(others)


# --- uniform integers and Bernoulli --------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 1000])
def test_uniform_reaches_every_value_of_the_range_and_nothing_else(n: int) -> None:
    bits = KeyedBits(KEY, b"uniform")
    seen = Counter(uniform(bits, n) for _ in range(N))
    assert set(seen) == set(range(n))
    # Roughly flat: every value's frequency within 5 standard errors of 1/n.
    stderr = math.sqrt((1 / n) * (1 - 1 / n) / N) or 1 / N
    assert all(within(c / N, 1 / n, stderr, 5) for c in seen.values())


def test_uniform_of_one_spends_no_bits() -> None:
    bits, fresh = KeyedBits(KEY, b"u1"), KeyedBits(KEY, b"u1")
    assert [uniform(bits, 1) for _ in range(5)] == [0] * 5
    assert bits.take(64) == fresh.take(64)


@pytest.mark.parametrize("p", [Fraction(0), Fraction(1, 3), Fraction(1)])
def test_bernoulli_is_exact_at_the_edges_and_right_in_between(p: Fraction) -> None:
    bits = KeyedBits(KEY, b"bernoulli")
    rate = sum(bernoulli(bits, p) for _ in range(N)) / N
    assert within(rate, float(p), math.sqrt(float(p * (1 - p)) / N) or 1e-12)


@pytest.mark.parametrize(
    "gamma", [Fraction(0), Fraction(1, 3), Fraction(1), Fraction(5, 2), Fraction(7, 3)]
)
def test_bernoulli_exp_minus_gamma_frequencies(gamma: Fraction) -> None:
    bits = KeyedBits(KEY, b"bernoulli-exp")
    expected = math.exp(-gamma)  # math in the test only: the sampler never uses floats
    rate = sum(bernoulli_exp(bits, gamma) for _ in range(N)) / N
    assert within(rate, expected, math.sqrt(expected * (1 - expected) / N) or 1e-12)


# --- discrete Laplace: known answers and distribution -------------------------------------


@pytest.mark.parametrize(
    ("scale", "draws"),
    [
        (Fraction(2), [2, 0, 5, 0, 0, -4, 0, -1, 1, 0]),
        (Fraction(1), [-1, 0, 1, 2, 0, -6, -1, 3, 1, 0]),
        (Fraction(10, 3), [-1, 8, -15, -2, 4, 3, 2, -1, 1, 1]),
    ],
)
def test_discrete_laplace_known_answers(scale: Fraction, draws: list[int]) -> None:
    bits = cell_bits(KEY, *CELL)
    assert [discrete_laplace(bits, scale) for _ in range(10)] == draws


def test_noisy_measures_known_answers() -> None:
    specs = (MeasureSpec("events", "count"), MeasureSpec("total", "sum", "v"))
    expected = {
        "geometric": [(98, 252.0), (101, 252.0), (100, 254.0)],
        "laplace": [(99, 252.2685546875), (99, 247.734375), (100, 251.310546875)],
    }
    for mechanism, values in expected.items():
        noise = NoiseSpec(mechanism, 0.5, 10.0, 86_400_000, value_bound=1.0)  # Δ = 1 for both
        for w, (events, total) in enumerate(values):
            out = noisy_measures(
                {"events": 100, "total": 250.75}, specs, noise, KEY, "test-contract", "rich",
                w * 1000, {"kind": "a"},
            )  # fmt: skip
            assert out == {"events": events, "total": total}
            assert type(out["events"]) is int


def _noise_draws(noise: NoiseSpec, kind: str) -> list[float]:
    """N released values of one measure around 10⁶ (never clamped), one label per window."""
    specs = (MeasureSpec("m", kind, None if kind == "count" else "v"),)
    base = 1_000_000
    return [
        float(noisy_measures({"m": base}, specs, noise, KEY, "c", "v", w, {})["m"]) - base
        for w in range(N)
    ]


@pytest.mark.parametrize(("epsilon", "sensitivity"), [(0.5, 1), (1.0, 1), (1.0, 2)])
def test_geometric_noise_has_the_discrete_laplace_distribution(
    epsilon: float, sensitivity: int
) -> None:
    # A count's Δ is max_groups × max_contributions.
    noise = NoiseSpec("geometric", epsilon, 1.0, 1, max_contributions=sensitivity)
    draws = _noise_draws(noise, "count")
    p = math.exp(-epsilon / sensitivity)
    p0 = (1 - p) / (1 + p)
    sizes = Counter(abs(int(y)) for y in draws)
    for y in (0, 1, 2):
        exact = p0 * p**y * (1 if y == 0 else 2)  # P(|Y| = y)
        assert within(sizes[y] / N, exact, math.sqrt(exact * (1 - exact) / N)), y
    if epsilon / sensitivity == 0.5:
        assert max(sizes) >= 8  # P(|Y| ≥ 8) ≈ 2.3 %: the tail is there
    # Symmetric: mean 0 (sd of Y is √(2p)/(1-p)), as many positive draws as negative ones.
    assert within(sum(draws) / N, 0.0, math.sqrt(2 * p) / (1 - p) / math.sqrt(N))
    positive, negative = sum(d > 0 for d in draws), sum(d < 0 for d in draws)
    assert within(positive / (positive + negative), 0.5, 0.5 / math.sqrt(positive + negative))


def test_laplace_noise_is_a_discretised_laplace_of_scale_sensitivity_over_epsilon() -> None:
    noise = NoiseSpec("laplace", 0.5, 1.0, 1, value_bound=1.0)  # Δ = 1·1·1, scale b = 2
    draws = _noise_draws(noise, "sum")
    assert all((d * 1024).is_integer() for d in draws)  # on the grid Δ/1024
    b = 2.0
    assert within(sum(draws) / N, 0.0, math.sqrt(2) * b / math.sqrt(N))
    # P(|X| ≤ b ln 2) = 1/2 for Laplace(b); the grid moves it by well under 1 %.
    half = sum(abs(d) <= b * math.log(2) for d in draws) / N
    assert within(half, 0.5, 0.5 / math.sqrt(N), 5)
    assert max(abs(d) for d in draws) >= 6 * b  # P(|X| ≥ 6b) = e⁻⁶: about 50 expected
