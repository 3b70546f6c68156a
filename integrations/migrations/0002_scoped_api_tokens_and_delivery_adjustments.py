"""API tokens become ticket sources of their own; deliveries record what intake changed to fit the limits.

Existing tokens are bound in place so no client breaks: a lone token keeps the plain `api` source that
every API ticket had so far (they can only be its own, or a since-deleted token's), so it still reads its
tickets and a retried POST still finds them. Where several tokens exist, who created which `api` ticket
was never recorded, so each token gets a fresh `api:<id>`: its old tickets stay visible to staff, not to
any token, rather than to all of them.
"""

from django.db import migrations, models


def bind_tokens_to_sources(apps, schema_editor):
    ApiToken = apps.get_model("integrations", "ApiToken")
    tokens = list(ApiToken.objects.order_by("pk"))
    for token in tokens:
        token.source = "api" if len(tokens) == 1 else f"api:{token.pk}"
        token.save(update_fields=["source"])


class Migration(migrations.Migration):
    dependencies = [("integrations", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="webhookdelivery",
            name="adjustments",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="What the intake changed to fit the ticket's limits (e.g. a body truncated), one line each.",
            ),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="source",
            field=models.CharField(max_length=50, null=True, editable=False),
        ),
        migrations.RunPython(bind_tokens_to_sources, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="apitoken",
            name="source",
            field=models.CharField(
                editable=False,
                max_length=50,
                unique=True,
                help_text="`Ticket.source` of this token's tickets (api:<token id>; plain `api` for tickets from before tokens were scoped).",
            ),
        ),
    ]
