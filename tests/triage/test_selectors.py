import numpy as np
import pytest
from django.db import connections

from triage.models import Article, Chunk
from triage.selectors import HNSW_EF_SEARCH, chunk_search

pytestmark = pytest.mark.django_db


def _unit(*values: float) -> list[float]:
    vector = np.zeros(384, dtype=np.float32)
    vector[: len(values)] = values
    return list(vector / np.linalg.norm(vector))


def test_every_connection_searches_with_the_chosen_ef_search():
    fresh = connections.create_connection("default")  # a new session, as a worker's would be
    try:
        with fresh.cursor() as cursor:
            cursor.execute("SHOW hnsw.ef_search")
            assert cursor.fetchone()[0] == str(HNSW_EF_SEARCH)
    finally:
        fresh.close()


def test_chunk_search_is_one_query_nearest_first_reading_no_vector_nor_body(django_assert_num_queries):
    article = Article.objects.create(slug="refunds", title="Refunds", body="A long article body. " * 500)
    Chunk.objects.create(article=article, ordinal=0, text="far", embedding=_unit(0, 0, 1))
    near = Chunk.objects.create(article=article, ordinal=1, text="near", embedding=_unit(1, 0.01))
    with django_assert_num_queries(1) as captured:
        found = chunk_search(embedding=_unit(1, 0), limit=3)
    selected = captured.captured_queries[0]["sql"].split(" FROM ")[0]
    # The chunks' own vectors (384 floats as text each) and the article bodies are not sent back.
    assert '"triage_chunk"."embedding" AS' not in selected and '"triage_chunk"."embedding",' not in selected
    assert '"triage_article"."body"' not in selected
    assert found.passages[0].chunk_id == near.pk
    assert found.passages[0].article_title == "Refunds"
    assert found.passages[0].score > 0.99
    assert [p.score for p in found.passages] == sorted((p.score for p in found.passages), reverse=True)
