"""Embeddings to pgvector's text format, written at the precision a stored vector has.

pgvector's own conversion (`pgvector.Vector.to_text`, which its Django field calls) writes each float32
as the shortest text of the double it widens to: 17 significant digits for most, 0.21 ms for a
384-dimension vector on this project's machines. The column stores float32 (pgvector parses each number
with `strtof`), and 9 significant digits always give back the same float32 (IEEE 754 binary32), so
`{:.9g}` stores the same bits in 0.09 ms and a text a third shorter for the server to parse. Every
knowledge-base search sends one vector, and `evaluate` stores one per example and per cached embedding.
No library serves: pgvector's binary format needs psycopg's server-side binding, which Django's
PostgreSQL backend does not use by default (and the search runs as a prepared statement by hand).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pgvector import Vector
from pgvector.django import VectorField as PgvectorField


def vector_literal(values: np.ndarray | Sequence[float]) -> str:
    """`values` as pgvector's text input ("[0.1,0.2,…]"), each number as the float32 it is stored as."""
    array = np.asarray(values, dtype=np.float32).reshape(-1)
    return "[" + ",".join(map("{:.9g}".format, array.tolist())) + "]"


class VectorField(PgvectorField):
    """pgvector's field, sending embeddings through `vector_literal`.

    It deconstructs as pgvector's own field: the column, its migrations and what is read back are
    pgvector's; only the text sent is shorter, for the same stored values.
    """

    def get_prep_value(self, value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, Vector):
            value = value.to_numpy()
        return vector_literal(value)

    def deconstruct(self) -> tuple[Any, Any, Any, Any]:
        name, _path, args, kwargs = super().deconstruct()
        return name, "pgvector.django.vector.VectorField", args, kwargs
