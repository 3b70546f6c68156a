"""Embeddings with a database cache: a text is embedded once per model, ever."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from django.db import connection, connections

from integrations.embeddings import DIMENSIONS, embed_in_processes, get_local_embedder
from triage.models import EmbeddingCacheEntry


def text_digest(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\0{text}".encode()).hexdigest()


#: Vectors kept in this process while `embedding_memo` is open (None: closed), by digest.
_memo: dict[str, np.ndarray] | None = None


@contextmanager
def embedding_memo() -> Iterator[dict[str, np.ndarray]]:
    """Inside, `embed_texts` also keeps every vector it returns in memory and answers from there first.

    Why: `evaluate` works each ticket's run twice (gated, ungated) and every run asks for its ticket's
    vector one text at a time; the database cache answers, but each answer is a query and a vector to
    parse. A vector depends only on the model and the text, so keeping it for the length of one
    evaluation changes no result. Outside the block (workers, the web) nothing is kept.
    """
    global _memo
    outer = _memo
    memo: dict[str, np.ndarray] = {} if outer is None else outer
    _memo = memo
    try:
        yield memo
    finally:
        _memo = outer


def memo_load(memo: dict[str, np.ndarray], texts: Sequence[str]) -> int:
    """Put the current database's cached vectors of `texts` into `memo`; how many it had.

    With `memo_save`, this keeps the promise above across databases: `evaluate` works in a database of
    its own, and without them every evaluation embedded the whole dataset again.
    """
    name = get_local_embedder().name
    before = len(memo)
    memo.update(_cache_read(list(dict.fromkeys(text_digest(name, t) for t in texts))))
    return len(memo) - before


def _cache_read(digests: Sequence[str]) -> dict[str, np.ndarray]:
    """The current database's cached vectors among `digests` (read 5,000 at a time)."""
    found: dict[str, np.ndarray] = {}
    for start in range(0, len(digests), 5000):
        rows = EmbeddingCacheEntry.objects.filter(digest__in=digests[start : start + 5000]).values_list(
            "digest", "embedding"
        )
        found.update((d, np.asarray(e, dtype=np.float32)) for d, e in rows)
    return found


def memo_save(memo: dict[str, np.ndarray]) -> int:
    """Store the vectors in `memo` that the current database's cache lacks; how many were stored."""
    name = get_local_embedder().name
    digests = list(memo)
    stored = 0
    for start in range(0, len(digests), 5000):
        part = digests[start : start + 5000]
        known = set(EmbeddingCacheEntry.objects.filter(digest__in=part).values_list("digest", flat=True))
        new = [EmbeddingCacheEntry(digest=d, model=name, embedding=memo[d]) for d in part if d not in known]
        EmbeddingCacheEntry.objects.bulk_create(new, ignore_conflicts=True, batch_size=1000)
        stored += len(new)
    return stored


def embed_texts(texts: Sequence[str], *, batch_size: int = 64, processes: int = 1) -> np.ndarray:
    """Unit-length embeddings for `texts`, in order; only texts never seen before reach the model.

    `processes` > 1: the texts the model must embed are shared out to that many forked processes
    (`embed_in_processes`; for a large batch, such as an evaluation's examples and tickets)."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    embedder = get_local_embedder()
    digests = [text_digest(embedder.name, t) for t in texts]
    memo = _memo
    cached: dict[str, np.ndarray] = {} if memo is None else {d: memo[d] for d in digests if d in memo}
    cached.update(_cache_read([d for d in dict.fromkeys(digests) if d not in cached]))
    missing = {d: t for d, t in zip(digests, texts, strict=True) if d not in cached}
    if missing:
        if processes > 1 and not connection.in_atomic_block:  # a transaction's connection cannot be closed
            connections.close_all()  # the forked children must not inherit (and share) a connection
            vectors = embed_in_processes(list(missing.values()), processes=processes)
        else:
            vectors = embedder.embed(list(missing.values()), batch_size=batch_size)
        EmbeddingCacheEntry.objects.bulk_create(
            [
                EmbeddingCacheEntry(digest=d, model=embedder.name, embedding=v)
                for d, v in zip(missing, vectors, strict=True)
            ],
            ignore_conflicts=True,
            batch_size=1000,
        )
        cached.update(zip(missing, vectors, strict=True))
    if memo is not None:
        memo.update(cached)
    return np.stack([cached[d] for d in digests]).astype(np.float32)
