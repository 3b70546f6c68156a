"""GatePolicy and ProviderSettings become django-solo singletons (the row with pk 1).

Until now "the current" row was the one with the lowest pk (`order_by("pk").first()`), so that row's
values are kept: it becomes pk 1, and the other rows, which nothing read, are deleted. Nothing refers
to these tables, so changing the pk moves no foreign key.
"""

from django.db import migrations

SINGLETON_PK = 1  # solo.models.DEFAULT_SINGLETON_INSTANCE_ID


def keep_the_row_in_use(apps, schema_editor):
    for name in ("GatePolicy", "ProviderSettings"):
        model = apps.get_model("triage", name)
        current = model.objects.order_by("pk").first()
        if current is None:
            continue  # created with its defaults the first time it is read
        model.objects.exclude(pk=current.pk).delete()
        if current.pk != SINGLETON_PK:
            model.objects.filter(pk=current.pk).update(id=SINGLETON_PK)  # update() takes the column, not "pk"


class Migration(migrations.Migration):
    dependencies = [
        ("triage", "0005_remove_gatepolicy_money_gate"),
    ]

    # Not reversible in full (the deleted rows were never read); going back leaves the kept row as it is.
    operations = [migrations.RunPython(keep_the_row_in_use, migrations.RunPython.noop)]
