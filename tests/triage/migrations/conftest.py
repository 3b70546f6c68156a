"""What the migration tests share: moving the test database to given migrations."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate_to(targets=None):
    """Migrate the test database to `targets` (`[(app, migration)]`; None: every app's last, where a test
    leaves it); the apps as they are there."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    targets = executor.loader.graph.leaf_nodes() if targets is None else targets
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def migrate():
    return migrate_to
