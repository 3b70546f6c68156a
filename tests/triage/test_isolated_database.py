"""`isolated_database`: evaluations and benches work in a throw-away copy of a migrated template."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from django.db import connection, connections
from django.db.migrations.loader import MigrationLoader

from tests.conftest import other_session
from triage import evaluation
from triage.evaluation import TEMPLATE_PREFIX, host_tag, isolated_database, migrations_digest


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


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_database_a_killed_process_of_this_machine_left_is_dropped_and_another_machines_is_kept(django_db_blocker):
    other_host = "0" * 8 if host_tag() != "0" * 8 else "1" * 8
    dead = _dead_pid()
    ours_abandoned = f"triage_eval_{host_tag()}_{dead}_aaaaaa"
    ours_running = f"triage_eval_{host_tag()}_{os.getpid()}_bbbbbb"
    theirs = f"triage_eval_{other_host}_{dead}_cccccc"  # that pid may well be alive on its own machine
    with django_db_blocker.unblock():
        with connection._nodb_cursor() as cursor:
            for name in (ours_abandoned, ours_running, theirs):
                cursor.execute(f'CREATE DATABASE "{name}"')
        try:
            with isolated_database():
                databases = _databases()
            assert ours_abandoned not in databases
            assert ours_running in databases
            assert theirs in databases
        finally:
            with connection._nodb_cursor() as cursor:
                for name in (ours_abandoned, ours_running, theirs):
                    cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_copy_waits_while_another_process_builds_or_drops_templates(django_db_blocker):
    """Another version of the code on the same server drops this one's template while building its own, under
    the template lock held exclusively: a copy started then waits instead of copying a template being dropped."""
    with django_db_blocker.unblock():
        with isolated_database():  # the template exists
            pass
        # Advisory locks belong to a database: the other process's, as `isolated_database`'s, to `postgres`.
        builder = other_session(dbname="postgres", autocommit=True)
        copied = threading.Event()

        def copy() -> None:
            try:
                with isolated_database():
                    copied.set()
            finally:
                connections.close_all()

        try:
            builder.execute("SELECT pg_advisory_lock(%s)", [evaluation._TEMPLATE_LOCK])
            thread = threading.Thread(target=copy)
            thread.start()
            assert not copied.wait(1.5), "copied while the templates were being rebuilt"
            builder.execute("SELECT pg_advisory_unlock(%s)", [evaluation._TEMPLATE_LOCK])
            assert copied.wait(30)
            thread.join(30)
        finally:
            builder.close()
