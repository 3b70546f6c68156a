"""Embeddings sent as `vector_literal` text: the same float32 values stored, the same chunks found."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection
from pgvector import Vector

from triage.models import Article, Chunk, EmbeddingCacheEntry
from triage.selectors import chunk_search
from triage.vectors import vector_literal

# Values where a shorter text could land on another float32: the extremes of the format, a subnormal,
# negative zero, neighbours one unit in the last place apart, and numbers with long decimal expansions.
AWKWARD = np.array(
    [
        np.finfo(np.float32).max,
        np.finfo(np.float32).tiny,
        np.float32(1.4e-45),  # the smallest subnormal
        -0.0,
        np.float32(0.1),
        np.nextafter(np.float32(0.1), np.float32(1)),
        np.float32(1 / 3),
        -np.float32(2 / 3),
        np.float32(16777217.0),
        np.float32(-123456.789),
    ],
    dtype=np.float32,
)


def _random(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return vector / np.linalg.norm(vector)


def test_the_text_reads_back_as_the_same_float32_bits_in_python():
    for values in (AWKWARD, _random(1), _random(2) * 1e-30):
        text = vector_literal(values)
        parsed = np.array([float(v) for v in text[1:-1].split(",")], dtype=np.float32)
        assert parsed.tobytes() == values.astype(np.float32).tobytes()
        assert len(text) < len(Vector(values).to_text())


@pytest.mark.django_db
def test_postgresql_stores_the_same_bits_as_from_pgvectors_own_text():
    vectors = [np.resize(AWKWARD, 384), _random(3), _random(4)]
    with connection.cursor() as cursor:
        for vector in vectors:
            cursor.execute(
                "SELECT %s::vector = %s::vector, (%s::vector)::real[]",
                [vector_literal(vector), Vector(vector).to_text(), vector_literal(vector)],
            )
            same, stored = cursor.fetchone()
            assert same
            assert np.array(stored, dtype=np.float32).tobytes() == vector.astype(np.float32).tobytes()


@pytest.mark.django_db
def test_the_models_store_and_return_the_embedding_they_were_given():
    vector = _random(5)
    EmbeddingCacheEntry.objects.create(digest="d" * 64, model="m", embedding=vector)
    EmbeddingCacheEntry.objects.create(digest="e" * 64, model="m", embedding=Vector(vector))
    EmbeddingCacheEntry.objects.create(digest="f" * 64, model="m", embedding=vector.tolist())
    for entry in EmbeddingCacheEntry.objects.filter(model="m"):
        assert np.array(entry.embedding, dtype=np.float32).tobytes() == vector.tobytes()


@pytest.mark.django_db
def test_a_search_finds_the_nearest_chunks_with_the_distances_pgvectors_text_gives():
    article = Article.objects.create(slug="a", title="A", body="")
    for i in range(20):
        Chunk.objects.create(article=article, ordinal=i, text=f"chunk {i}", embedding=_random(100 + i))
    query = _random(7)
    found = chunk_search(embedding=query, limit=5)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, embedding <=> %s::vector AS d FROM triage_chunk ORDER BY d LIMIT 5", [Vector(query).to_text()]
        )
        exact = cursor.fetchall()
    assert [p.chunk_id for p in found.passages] == [pk for pk, _ in exact]
    assert [p.score for p in found.passages] == pytest.approx([1 - d for _, d in exact], abs=1e-12)


@pytest.mark.django_db
def test_the_field_deconstructs_as_pgvectors_so_the_migrations_match_the_models():
    out = io.StringIO()
    # Exits non-zero (SystemExit) when a model differs from what the migrations build.
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
