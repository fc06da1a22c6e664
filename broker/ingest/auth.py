"""Who may push to the HTTP gateway: providers, their bearer tokens (as hashes), contracts, streams.

The tokens file is YAML::

    providers:
      - id: scootco
        token_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
        contracts:
          - lyon-micromobility                               # every stream of the contract
          - {id: paris-micromobility, streams: [trips]}      # only these streams

A contract given by its id alone grants every one of its streams; ``streams`` narrows the
grant to the streams listed (the gateway refuses, at start, a stream its contract lacks).

Only the SHA-256 of a token is stored, so the file is not a secret worth stealing; the
gateway hashes the presented token and compares digests with ``hmac.compare_digest`` against
every provider (constant time per comparison, and no early exit that would reveal which
provider almost matched). A token is never logged, stored or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contracts.errors import RespublicaError

HEX_SHA256 = r"^[0-9a-f]{64}$"


class GatewayConfigError(RespublicaError):
    """The tokens file is missing or malformed (the message names the path, never a value)."""


class ContractGrant(BaseModel):
    """One contract a provider may push to, and which of its streams (None: every stream)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(min_length=1)]
    streams: tuple[Annotated[str, Field(min_length=1)], ...] | None = Field(
        default=None, min_length=1
    )

    def covers(self, stream: str) -> bool:
        """Whether this grant lets the provider push to ``stream`` of the contract."""
        return self.streams is None or stream in self.streams


class ProviderGrant(BaseModel):
    """One provider: its id, the SHA-256 (hex) of its token, what it may push to.

    ``contracts`` entries are ``ContractGrant``s; a bare contract id is read as a grant of
    every stream of that contract (the tokens file's short form).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
    token_sha256: Annotated[str, Field(pattern=HEX_SHA256)]
    contracts: tuple[ContractGrant, ...] = Field(min_length=1)

    @field_validator("contracts", mode="before")
    @classmethod
    def _bare_ids(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple({"id": v} if isinstance(v, str) else v for v in value)
        return value

    @model_validator(mode="after")
    def _one_grant_per_contract(self) -> ProviderGrant:
        ids = [g.id for g in self.contracts]
        if len(ids) != len(set(ids)):
            msg = "a contract is granted more than once; list its streams in one entry"
            raise ValueError(msg)
        return self

    def grant(self, contract: str) -> ContractGrant | None:
        """This provider's grant on ``contract``, or None."""
        return next((g for g in self.contracts if g.id == contract), None)


class TokensFile(BaseModel):
    """The whole tokens file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: tuple[ProviderGrant, ...] = ()


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token, as written in the tokens file."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def load_tokens(path: Path) -> tuple[ProviderGrant, ...]:
    """Read and check a tokens file; ``GatewayConfigError`` lists every problem by path."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        msg = f"{path}: cannot read the tokens file ({type(exc).__name__})"
        raise GatewayConfigError(msg) from exc
    except yaml.YAMLError as exc:
        msg = f"{path}: not valid YAML"
        raise GatewayConfigError(msg) from exc
    try:
        return TokensFile.model_validate(data).providers
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        msg = f"{path}: {problems}"
        raise GatewayConfigError(msg) from None


class Authenticator:
    """Finds the provider of a bearer token, in time independent of which one matches."""

    def __init__(self, grants: Iterable[ProviderGrant]) -> None:
        self._grants = tuple((bytes.fromhex(g.token_sha256), g) for g in grants)

    def provider(self, authorization: str | None) -> ProviderGrant | None:
        """The provider whose token is in an ``Authorization: Bearer ...`` header, or None."""
        token = _bearer(authorization)
        if token is None:
            return None
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found: ProviderGrant | None = None
        for expected, grant in self._grants:
            # No break: every comparison runs, so timing does not tell which entry matched.
            if hmac.compare_digest(digest, expected) and found is None:
                found = grant
        return found


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
