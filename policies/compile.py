"""Compile a contract into one ``ViewPipeline`` per view (the runtime's entry point).

Usage (the runtime calls only this and the objects it returns; see ``policies/base.py``)::

    pipelines = compile_contract(contract, keyring=ring, noise_key=secret)
    view = pipelines["availability"]
    agg = view.partition_state("p0")          # one per source partition
    agg.process([(offset, record), ...])      # -> ProcessOutcome
    merger = view.merger(["p0", "p1"])        # one per view
    merger.merge(agg.drain_partials())
    merger.observe_watermark("p0", agg.watermark)
    for release in merger.release_ready(): ...
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from policies.aggregate import Aggregator
from policies.base import PolicyError
from policies.pseudonymise import KeyRing, Pseudonymiser
from policies.spec import ViewSpec, view_spec
from policies.window import Merger


@dataclass(frozen=True)
class CompiledView:
    """A view ready to run (implements ``base.ViewPipeline``)."""

    spec: ViewSpec
    pseudonymiser: Pseudonymiser
    noise_key: bytes | None = None

    @property
    def contract(self) -> str:
        """The contract id."""
        return self.spec.contract

    @property
    def view(self) -> str:
        """The view name."""
        return self.spec.view

    @property
    def fields(self) -> frozenset[str]:
        """The only record fields this view reads (default deny)."""
        return self.spec.minimiser().fields

    def partition_state(self, source: str) -> Aggregator:
        """A fresh aggregator for one source partition."""
        return Aggregator(self.spec, self.pseudonymiser, source)

    def merger(self, sources: Collection[str]) -> Merger:
        """A fresh merger over exactly ``sources``."""
        return Merger(self.spec, sources, self.noise_key)


def compile_spec(
    spec: ViewSpec,
    *,
    keyring: KeyRing,
    noise_key: bytes | None = None,
    pseudonymiser: Pseudonymiser | None = None,
) -> CompiledView:
    """Compile a hand-built ``ViewSpec`` (tests, benchmarks)."""
    pz = pseudonymiser or Pseudonymiser(keyring, spec.contract)
    return CompiledView(spec, pz, noise_key)


def compile_contract(
    contract: Any, *, keyring: KeyRing, noise_key: bytes | None = None
) -> dict[str, CompiledView]:
    """One pipeline per view of a loaded ``contracts.model.Contract``, keyed by view name.

    Views of one contract share a ``Pseudonymiser`` (same keys, same cache). Raises
    ``PolicyError`` for what the core cannot honour (e.g. noise without ``noise_key``).
    """
    pseudonymiser = Pseudonymiser(keyring, contract.id)
    pipelines = {}
    for view in contract.views:
        spec = view_spec(contract, view.name)
        if spec.noise is not None and noise_key is None:
            msg = f"view {view.name} has noise: a noise key is required"
            raise PolicyError(msg)
        pipelines[view.name] = compile_spec(
            spec, keyring=keyring, noise_key=noise_key, pseudonymiser=pseudonymiser
        )
    return pipelines
