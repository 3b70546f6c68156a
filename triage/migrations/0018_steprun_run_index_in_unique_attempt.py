"""`StepRun.run` loses its own index: `steprun_unique_attempt` (run, step, attempt) starts with it.

Django's `AlterField` for this drops the foreign key, the index, and adds the foreign key back, which checks
every step row against its run while both tables are locked: minutes on a long history. Only the index has
to go, so the database side is that alone (found by its columns, whatever its name), and the foreign key is
left as it is; the state side is the `AlterField`.
"""

import django.db.models.deletion
from django.db import migrations, models


def _run_indexes(schema_editor):
    """The names of the indexes on exactly (run_id) of the step table, neither unique nor a key."""
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, "triage_steprun")
    return [
        name
        for name, info in constraints.items()
        if info["index"] and info["columns"] == ["run_id"] and not info["unique"] and not info["primary_key"]
    ]


def drop_run_index(apps, schema_editor):
    for name in _run_indexes(schema_editor):
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


def create_run_index(apps, schema_editor):
    if not _run_indexes(schema_editor):
        schema_editor.execute('CREATE INDEX "triage_steprun_run_id_79fd6fcd" ON "triage_steprun" ("run_id")')


class Migration(migrations.Migration):
    dependencies = [
        ("triage", "0017_gate_policy_out_of_scope_share"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="steprun",
                    name="run",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="steps",
                        to="triage.pipelinerun",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_run_index, create_run_index)],
        ),
    ]
