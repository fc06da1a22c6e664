"""Fixtures of the audit tests: the worker tests' contract and worker factories, reused."""

from tests.worker.conftest import contract_factory, worker_factory  # noqa: F401
