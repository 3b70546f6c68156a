import contextlib

import numpy as np
import pytest
from django.db import connection, connections, transaction

from triage.models import Article, Category, Chunk, GatePolicy
from triage.selectors import HNSW_EF_SEARCH, chain_settings_fingerprint, chunk_search

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


def _fingerprint():
    sql, params = chain_settings_fingerprint()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def test_the_configuration_fingerprint_moves_with_every_write_to_its_tables_and_only_then(db):
    # The runner keeps its copy of the configuration while this value holds (`chain_settings_current`).
    GatePolicy.get_solo()
    category = Category.objects.create(label="fingerprint_refund", name="Refund", money=True)
    first = _fingerprint()
    assert _fingerprint() == first  # nothing written, nothing moved
    seen = {first}
    for write in (
        lambda: Category.objects.filter(pk=category.pk).update(name="Refund"),  # the same text again
        lambda: Category.objects.create(label="fingerprint_order"),
        lambda: GatePolicy.objects.update(target_mishandled_rate=0.02),
        lambda: Category.objects.filter(label="fingerprint_order").delete(),
    ):
        write()
        seen.add(_fingerprint())
    with connection.cursor() as cursor:  # not through the ORM: a shell's or a migration's SQL counts the same
        table = Category._meta.db_table
        cursor.execute(f'UPDATE "{table}" SET description = %s WHERE id = %s', ["by hand", category.pk])
    seen.add(_fingerprint())
    assert len(seen) == 6
    # An edit rolled back leaves it as it was, with the rows.
    before = _fingerprint()
    with contextlib.suppress(RuntimeError), transaction.atomic():
        Category.objects.create(label="fingerprint_rolled_back")
        assert _fingerprint() != before  # a run inside the edit's transaction sees it
        raise RuntimeError
    assert _fingerprint() == before
