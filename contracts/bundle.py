"""One contract as one self-contained JSON document, and back.

``respublica apply`` publishes this document on the broker (``broker/kafka/catalogue.py``) so
that an analyst can read a view with nothing but credentials: no contract file, no schema, no
zone file on their machine.

The document is the contract file's mapping as written (YAML read as JSON: times become
ISO 8601 text), each referenced file (Avro schemas, territory polygon, zone files) inlined in
``files`` under ``files/<n>/<its file name>``, and the policy hash it must reproduce:

    {"format": "respublica-contract/1", "id": ..., "version": ..., "policy_hash": ...,
     "contract": {...}, "files": {"files/0/mds_trip.avsc": {...}, ...}}

``contract_from_document`` rebuilds the ``Contract`` through the ordinary loader (every check
runs again) from a private temporary folder holding those files, and refuses a document whose
contract does not hash to the stated policy hash: a release's header names that hash, so a
reader needs exactly the contract that was signed, not a look-alike.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from contracts.errors import ContractError, RespublicaError
from contracts.limits import size_problem
from contracts.loader import parse_contract
from contracts.model import Contract
from contracts.policy_hash import policy_hash

FORMAT = "respublica-contract/1"
_FILE_NAME = re.compile(r"^files/[0-9]{1,4}/[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ContractDocumentError(RespublicaError):
    """A contract cannot be turned into a document, or a document into a contract."""


def contract_document(contract: Contract, *, now: datetime) -> dict[str, Any]:
    """The self-contained document of a contract loaded from a file.

    Raises ``ContractDocumentError`` when the contract has no file, or when its files changed
    since it was loaded (the document would not reproduce its policy hash).
    """
    source = contract.source
    if source is None:
        msg = f"contract {contract.id} was not loaded from a file: nothing to publish"
        raise ContractDocumentError(msg)
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
        data = json.loads(json.dumps(data, default=_json_time))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, ValueError) as exc:
        msg = f"cannot read {source} again ({type(exc).__name__})"
        raise ContractDocumentError(msg) from exc
    files: dict[str, Any] = {}
    for n, (holder, key) in enumerate(_references(data)):
        name = f"files/{n}/{_safe_name(Path(holder[key]).name)}"
        files[name] = _read_json(source.parent / holder[key])
        holder[key] = name
    document = {
        "format": FORMAT,
        "id": contract.id,
        "version": contract.version,
        "policy_hash": policy_hash(contract),
        "contract": data,
        "files": files,
    }
    try:
        contract_from_document(document, now=now)
    except ContractDocumentError as exc:
        msg = f"contract {contract.id}: {source} or its files changed since it was loaded ({exc})"
        raise ContractDocumentError(msg) from exc
    return document


def document_bytes(document: Mapping[str, Any]) -> bytes:
    """Canonical UTF-8 JSON (sorted keys, no spaces): equal documents give equal bytes."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def contract_from_document(
    document: Mapping[str, Any] | bytes, *, now: datetime, origin: str = "<contract document>"
) -> Contract:
    """The contract a document holds, validated like a file and checked against its hash.

    ``origin`` names the document in error messages (a topic and key, say).
    """
    doc = _parsed(document, origin)
    with tempfile.TemporaryDirectory(prefix="respublica-contract-") as folder:
        base = Path(folder)
        for name, content in doc["files"].items():
            path = base / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content), encoding="utf-8")
        try:
            contract = parse_contract(doc["contract"], base_dir=base, now=now, file=origin)
        except ContractError as exc:
            msg = f"{origin}: the contract is not valid here:\n{exc}"
            raise ContractDocumentError(msg) from exc
    if policy_hash(contract) != doc["policy_hash"]:
        msg = f"{origin}: the contract does not hash to the policy hash the document states"
        raise ContractDocumentError(msg)
    return contract


def _parsed(document: Mapping[str, Any] | bytes, origin: str) -> Mapping[str, Any]:
    if isinstance(document, bytes):
        try:
            document = json.loads(document)
        except (ValueError, RecursionError):  # the decoder nests recursively
            document = None  # type: ignore[assignment]
    if not isinstance(document, Mapping) or document.get("format") != FORMAT:
        msg = f"{origin}: not a contract document ({FORMAT})"
        raise ContractDocumentError(msg)
    too_big = size_problem(document, max_values=None)
    if too_big:
        msg = f"{origin}: malformed contract document ({too_big})"
        raise ContractDocumentError(msg)
    files = document.get("files")
    if (
        not isinstance(document.get("contract"), Mapping)
        or not isinstance(document.get("policy_hash"), str)
        or not isinstance(files, Mapping)
        or not all(isinstance(k, str) and _FILE_NAME.fullmatch(k) for k in files)
    ):
        msg = f"{origin}: malformed contract document"
        raise ContractDocumentError(msg)
    return document


def _references(data: Any) -> Iterator[tuple[dict[str, Any], str]]:
    """(mapping, key) of every file reference given as a path: schemas, zones, territory."""
    if not isinstance(data, dict):
        return
    for stream in data.get("streams") or []:
        if isinstance(stream, dict) and isinstance(stream.get("schema"), str):
            yield stream, "schema"
    for view in data.get("views") or []:
        dimensions = view.get("group_by") if isinstance(view, dict) else None
        for dim in dimensions or []:
            if isinstance(dim, dict) and isinstance(dim.get("file"), str):
                yield dim, "file"
    territory = data.get("territory")
    if isinstance(territory, dict) and isinstance(territory.get("polygon"), str):
        yield territory, "polygon"


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("._-")[:128]
    return cleaned or "file.json"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        msg = f"cannot read {path.name} again ({type(exc).__name__})"
        raise ContractDocumentError(msg) from exc


def _json_time(value: Any) -> str:
    """YAML times as ISO 8601 text (what the model accepts); anything else is not JSON."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    msg = f"{type(value).__name__} is not JSON"
    raise TypeError(msg)
