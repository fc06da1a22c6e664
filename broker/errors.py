"""Root of respublica's exception tree.

Every error that respublica raises on purpose derives from ``RespublicaError`` so that the CLI
can catch one type, print a clean message and exit non-zero. Each package adds a small subtree
(``contracts.errors.ContractError``, ...). Library errors are translated at the boundary with
``raise ... from exc``; messages name the field path and the reason, never a data value.
"""


class RespublicaError(Exception):
    """Base class of every error raised deliberately by respublica."""
