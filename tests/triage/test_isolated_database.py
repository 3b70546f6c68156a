"""`isolated_database`: evaluations and benches work in a throw-away copy of a migrated template."""

from __future__ import annotations

from django.db import connection
from django.db.migrations.loader import MigrationLoader

from triage import evaluation
from triage.evaluation import TEMPLATE_PREFIX, isolated_database, migrations_digest


def _databases() -> set[str]:
    with connection._nodb_cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database")
        return {row[0] for row in cursor.fetchall()}


def _applied() -> set[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations")
        return {(app, name) for app, name in cursor.fetchall()}


def test_each_isolated_database_is_a_migrated_copy_of_one_template_and_is_dropped_after(django_db_blocker):
    every_migration = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    with django_db_blocker.unblock():
        names = []
        for _ in range(2):
            with isolated_database() as name:
                assert connection.settings_dict["NAME"] == name
                assert _applied() == every_migration
                with connection.cursor() as cursor:
                    cursor.execute("SHOW synchronous_commit")
                    assert cursor.fetchone()[0] == "off"
                    # The first copy's table is not in the second: written in a copy, not the template.
                    cursor.execute("SELECT to_regclass('scratch')")
                    assert cursor.fetchone()[0] is None
                    cursor.execute("CREATE TABLE scratch (id int)")
            names.append(name)
        databases = _databases()
    assert names[0] != names[1]
    assert not databases & set(names)
    assert TEMPLATE_PREFIX + migrations_digest() in databases


def test_a_changed_schema_builds_its_own_template_and_drops_the_older_one(django_db_blocker, monkeypatch):
    with django_db_blocker.unblock():
        with isolated_database():
            pass
        current = TEMPLATE_PREFIX + migrations_digest()
        changed = TEMPLATE_PREFIX + "0" * 20
        monkeypatch.setattr(evaluation, "migrations_digest", lambda: "0" * 20)
        try:
            with isolated_database():
                assert ("triage", "0001_initial") in _applied()
            databases = _databases()
            assert changed in databases
            assert current not in databases
            assert not any(name.endswith("_building") for name in databases)
        finally:
            with connection._nodb_cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{changed}" WITH (FORCE)')


def test_a_build_a_killed_process_left_is_dropped_and_built_again(django_db_blocker, monkeypatch):
    leftover = "_building"
    monkeypatch.setattr(evaluation, "migrations_digest", lambda: "1" * 20)
    template = TEMPLATE_PREFIX + "1" * 20
    with django_db_blocker.unblock():
        with connection._nodb_cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{template}{leftover}"')  # empty: its builder died before migrating
        try:
            with isolated_database():
                assert ("triage", "0001_initial") in _applied()
            databases = _databases()
            assert template in databases
            assert f"{template}{leftover}" not in databases
        finally:
            with connection._nodb_cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
                cursor.execute(f'DROP DATABASE IF EXISTS "{template}{leftover}" WITH (FORCE)')
