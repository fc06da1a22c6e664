"""Default-deny projection: only the fields a view names survive.

The streaming path never copies a whole record: ``compile`` builds extractors that read only
the fields listed by a ``Minimiser``, which is the same guarantee without a per-record copy.
The oracle projects every record explicitly, so the two paths check each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from policies.base import Record


@dataclass(frozen=True, slots=True)
class Minimiser:
    """The set of fields a view may read; everything else is dropped."""

    fields: frozenset[str]

    @classmethod
    def of(cls, fields: Iterable[str | None]) -> Minimiser:
        """Build from field names, ignoring ``None`` (optional fields not configured)."""
        return cls(frozenset(f for f in fields if f is not None))

    def project(self, record: Record) -> Record:
        """A new record holding only the allowed fields that are present in ``record``."""
        return {name: record[name] for name in self.fields if name in record}

    def allows(self, name: str) -> bool:
        """True when the view may read ``name``."""
        return name in self.fields
