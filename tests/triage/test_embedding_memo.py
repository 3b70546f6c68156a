"""The evaluation's memory of vectors: answers from memory inside the block, and carries vectors between databases."""

from __future__ import annotations

import numpy as np
import pytest

from triage import embedding
from triage.embedding import embed_texts, embedding_memo, memo_load, memo_save, text_digest
from triage.models import EmbeddingCacheEntry

pytestmark = pytest.mark.django_db


def test_inside_the_block_a_text_is_read_once_and_outside_nothing_is_kept(django_assert_num_queries):
    texts = ["my card has not arrived", "how do I top up by bank transfer"]
    with embedding_memo() as memo:
        first = embed_texts(texts)
        assert len(memo) == 2
        with django_assert_num_queries(0):  # from memory: neither the cache table nor the model
            again = embed_texts(texts[::-1])
    assert np.array_equal(again, first[::-1])
    assert embedding._memo is None
    with django_assert_num_queries(1):  # outside, the database cache answers as before
        assert np.array_equal(embed_texts(texts), first)


def test_memo_save_stores_what_the_database_lacks_and_memo_load_reads_it_back():
    texts = ["where is my refund", "change my PIN"]
    with embedding_memo() as memo:
        vectors = embed_texts(texts)
    EmbeddingCacheEntry.objects.all().delete()  # as in the configured database, which never saw them
    assert memo_save(memo) == 2
    assert memo_save(memo) == 0  # already there: nothing twice
    fresh: dict[str, np.ndarray] = {}
    assert memo_load(fresh, [*texts, "a text nobody embedded"]) == 2
    name = embedding.get_local_embedder().name
    assert np.array_equal(fresh[text_digest(name, texts[1])], vectors[1])
