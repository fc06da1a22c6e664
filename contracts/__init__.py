"""Data-sharing contracts as code.

In: YAML contract files (with their Avro schemas and zone files). Out: validated, frozen
``Contract`` models and a stable policy hash. Start reading at ``contracts/model.py``,
then ``contracts/loader.py`` (and ``contracts/checks.py`` for the semantic rules).
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.errors import ContractError, Problem

if TYPE_CHECKING:
    from contracts.loader import load_contracts, parse_contract
    from contracts.model import Contract, Stream, View
    from contracts.policy_hash import policy_hash, short_policy_hash

_PACKAGE_DIR = Path(__file__).resolve().parent

# Loaded on first use (PEP 562): `import contracts.errors`, all the CLI needs to start, must
# not pay for pydantic and the loader.
_LAZY = {
    "Contract": "contracts.model",
    "Stream": "contracts.model",
    "View": "contracts.model",
    "load_contracts": "contracts.loader",
    "parse_contract": "contracts.loader",
    "policy_hash": "contracts.policy_hash",
    "short_policy_hash": "contracts.policy_hash",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _Package(types.ModuleType):
    """Keeps ``contracts.policy_hash`` the function: importing the submodule of the same name
    binds it on the package, which the eager import used to overwrite straight away."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def examples_dir() -> Path:
    """Directory of the bundled example contracts (``contracts/examples``)."""
    return _PACKAGE_DIR / "examples"


def schemas_dir() -> Path:
    """Directory of the bundled Avro schemas (``contracts/schemas``)."""
    return _PACKAGE_DIR / "schemas"


__all__ = [
    "Contract",
    "ContractError",
    "Problem",
    "Stream",
    "View",
    "examples_dir",
    "load_contracts",
    "parse_contract",
    "policy_hash",
    "schemas_dir",
    "short_policy_hash",
]
