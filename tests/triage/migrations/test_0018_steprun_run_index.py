"""Migration 0018: the step table's own index on its run goes; its foreign key is left as it was, not re-added."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db

BEFORE = [("triage", "0017_gate_policy_out_of_scope_share")]
AFTER = [("triage", "0018_steprun_run_index_in_unique_attempt")]


def step_table():
    """(the indexes on exactly run_id, the foreign key constraints' names and their creating transaction)."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "triage_steprun")
        cursor.execute(
            "SELECT conname, xmin::text FROM pg_constraint WHERE conrelid = 'triage_steprun'::regclass AND contype = 'f'"
        )
        keys = sorted(cursor.fetchall())
    run_indexes = [n for n, c in constraints.items() if c["index"] and c["columns"] == ["run_id"] and not c["unique"]]
    return run_indexes, keys


def test_the_run_index_goes_and_comes_back_and_the_foreign_key_is_never_rebuilt(migrate):
    try:
        migrate(BEFORE)
        indexes, keys = step_table()
        assert len(indexes) == 1 and len(keys) == 1
        migrate(AFTER)
        assert step_table() == ([], keys)  # the same constraint row: not dropped and added back
        migrate(BEFORE)
        indexes_again, keys_again = step_table()
        assert len(indexes_again) == 1 and keys_again == keys
    finally:
        migrate()
