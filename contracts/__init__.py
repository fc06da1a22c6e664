"""Data-sharing contracts as code.

In: YAML contract files (with their Avro schemas and zone files). Out: validated, frozen
``Contract`` models and a stable policy hash. Start reading at ``contracts/model.py``,
then ``contracts/loader.py`` (and ``contracts/checks.py`` for the semantic rules).
"""

from pathlib import Path

from contracts.errors import ContractError, Problem
from contracts.loader import load_contracts, parse_contract
from contracts.model import Contract, Stream, View
from contracts.policy_hash import policy_hash, short_policy_hash

_PACKAGE_DIR = Path(__file__).resolve().parent


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
