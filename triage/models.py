"""The triage domain: tickets, the knowledge base, what the classifier learns from, and runs.

Models hold fields, constraints and choices; behaviour lives in services and the pipeline.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from pgvector.django import HnswIndex
from solo.models import SingletonModel

from integrations.models import McpTool
from triage.contracts import MONEY_ACTIONS, ActionKind
from triage.vectors import VectorField

EMBEDDING_DIMENSIONS = 384
unit_interval = [MinValueValidator(0.0), MaxValueValidator(1.0)]


class Category(models.Model):
    """A ticket category, with the policy the gates apply to it."""

    label = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True)
    money = models.BooleanField(
        default=False, help_text="Acting on a ticket of this category moves money: always a person."
    )
    confidence_threshold = models.FloatField(
        null=True,
        blank=True,
        validators=unit_interval,
        help_text="Minimum classifier confidence to auto-handle (0..1). Empty (recommended): chosen from the gate "
        "policy's maximum mishandled rate; a number here overrides it and the guarantee no longer covers it.",
    )
    auto_reply = models.BooleanField(default=True, help_text="Replies to this category may be sent without a person.")
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["label"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.label


class GatePolicy(SingletonModel):
    """The gate switches and thresholds: one row (`GatePolicy.get_solo()`); admins edit it, new runs read it.

    Money has no switch: the money and money-promise gates always run and the route step holds money
    for a person (steps/route.py, steps/execute.py). Nor has the schema gate: output that breaks its
    contract is never acted on.
    """

    name = models.CharField(max_length=100, default="default", unique=True)
    retrieval_gate = models.BooleanField(default=True)
    confidence_gate = models.BooleanField(default=True)
    groundedness_gate = models.BooleanField(default=True)
    personal_data_gate = models.BooleanField(default=True)
    retrieval_min_score = models.FloatField(
        default=0.35, validators=unit_interval, help_text="Cosine similarity the best passage must reach."
    )
    target_mishandled_rate = models.FloatField(
        "maximum mishandled rate",
        default=0.01,
        validators=[MinValueValidator(0.0005), MaxValueValidator(0.2)],
        help_text="At most this share of automatically handled tickets may be handled wrongly (0.01: 1 in 100). "
        "The product chooses the confidence thresholds that guarantee it on labelled tickets it never trained on.",
    )
    guarantee_confidence = models.FloatField(
        "confidence of the guarantee",
        default=0.9,
        validators=[MinValueValidator(0.5), MaxValueValidator(0.999)],
        help_text="How sure the guarantee is (0.9: it holds in at least 9 of 10 calibration draws).",
    )
    out_of_scope_share = models.FloatField(
        "share of requests no category covers",
        default=0.05,  # triage.classifier.OUT_OF_SCOPE_SHARE: what every fit samples (tests check they agree)
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="The share of tickets you expect to ask for something none of your categories covers (0.05: "
        "1 in 20). The thresholds are chosen as if that share of the traffic were such requests, each one a "
        "mistake if handled automatically, so the guarantee covers them. Raise it when your categories cover "
        "less of what customers ask; 0 only when they cover everything. Once people have decided 100 tickets in "
        "the inbox, the share they rejected or put out of scope replaces it when higher.",
    )
    min_labelled_per_category = models.PositiveIntegerField(
        "labelled tickets a category needs",
        default=30,
        validators=[MinValueValidator(1)],
        help_text="A category needs this many labelled tickets for a threshold of its own; until then it shares "
        "the pooled threshold, whose guarantee covers all the tickets it auto-handles together.",
    )
    default_confidence_threshold = models.FloatField(
        null=True,
        blank=True,
        validators=unit_interval,
        help_text="Empty (recommended): the thresholds chosen from the maximum mishandled rate. A number here "
        "overrides them for every category without its own threshold, and the guarantee no longer covers them.",
    )
    groundedness_min_overlap = models.FloatField(
        default=0.8,
        validators=unit_interval,
        help_text="Share of a draft sentence's content words that must appear in one cited passage.",
    )
    human_cost_per_ticket = models.DecimalField(
        max_digits=8, decimal_places=2, null=True, blank=True, help_text="Empty: settings' default ($4)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "gate policies"

    def __str__(self) -> str:
        return self.name


class TargetChange(models.Model):
    """The gate policy's target and confidence from `changed_at` on: the Reports page's target over time."""

    target_mishandled_rate = models.FloatField()
    guarantee_confidence = models.FloatField()
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["changed_at", "id"]

    def __str__(self) -> str:
        return f"{self.target_mishandled_rate:.2%} at {self.guarantee_confidence:.0%} from {self.changed_at:%Y-%m-%d}"


class StepPolicy(models.Model):
    """Retry policy for one step of the chain."""

    class Step(models.TextChoices):
        RETRIEVE = "retrieve"
        CLASSIFY = "classify"
        LOOKUP = "lookup"
        DRAFT = "draft"
        VALIDATE = "validate"
        ROUTE = "route"
        EXECUTE = "execute"

    step = models.CharField(max_length=20, choices=Step.choices, unique=True)
    max_attempts = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1), MaxValueValidator(10)])
    backoff_seconds = models.FloatField(default=0.5, validators=[MinValueValidator(0.0), MaxValueValidator(60.0)])
    fallback_provider = models.CharField(max_length=50, blank=True, help_text="Provider to try once attempts run out.")

    class Meta:
        verbose_name_plural = "step policies"
        ordering = ["step"]

    def __str__(self) -> str:
        return f"{self.step}: {self.max_attempts} attempts"


class Ticket(models.Model):
    class Status(models.TextChoices):
        NEW = "new"
        TRIAGING = "triaging"
        AUTO_HANDLED = "auto_handled", "Auto-handled"
        AWAITING_APPROVAL = "awaiting_approval", "Waiting for a person"
        RESOLVED = "resolved", "Resolved by a person"
        REJECTED = "rejected"
        FAILED = "failed"

    source = models.CharField(max_length=50, help_text="Where it came from: api, demo, zendesk, ...")
    external_id = models.CharField(max_length=200)
    subject = models.CharField(max_length=500, blank=True)
    body = models.TextField()
    requester = models.CharField(max_length=320, blank=True, help_text="Requester's e-mail address.")
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.NEW)
    reference_label = models.CharField(
        max_length=100,
        blank=True,
        help_text="True category from a labelled import, for measuring; never shown to the chain.",
    )
    mishandled_at = models.DateTimeField(null=True, blank=True, help_text="Staff marked the outcome wrong.")
    mishandled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who marked the outcome wrong (empty for marks made before this was recorded).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="ticket_unique_source_external_id")
        ]
        indexes = [models.Index(fields=["status", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id}"

    @property
    def text(self) -> str:
        """The text the chain classifies (subject and body), the one a label is learned on."""
        return f"{self.subject}\n{self.body}".strip() if self.subject else self.body


class Article(models.Model):
    slug = models.SlugField(max_length=200, unique=True)
    title = models.CharField(max_length=300)
    body = models.TextField(help_text="Markdown.")
    category = models.ForeignKey(
        Category,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="articles",
        help_text="The category this article answers (a `category:` first line in kb/*.md); what evaluate checks "
        "retrieval and citations against.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class Chunk(models.Model):
    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    heading = models.CharField(max_length=300, blank=True)
    text = models.TextField()
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)

    class Meta:
        ordering = ["article_id", "ordinal"]
        constraints = [models.UniqueConstraint(fields=["article", "ordinal"], name="chunk_unique_article_ordinal")]
        indexes = [
            HnswIndex(
                name="chunk_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            )
        ]

    def __str__(self) -> str:
        return f"{self.article_id}#{self.ordinal}"


class LabelledExample(models.Model):
    """A ticket text with its category: what the local classifier learns from, and where the label came from.

    `source` says who labelled it: an import (examples.csv, `import_examples`) or a person's decision in the
    inbox. Every inbox decision is a label (`triage.learning`): approved as proposed (confirmed), category
    edited (corrected), auto-handled ticket marked mishandled (wrong: the text is NOT `category`). One row per
    ticket: the latest decision by a person replaces the earlier one. Rows whose identical text carries
    contradictory labels are flagged `conflict` and left out of training and of model comparisons.
    """

    class Source(models.TextChoices):
        IMPORT = "import", "Imported example"
        CONFIRMED = "confirmed", "Confirmed in the inbox"
        CORRECTED = "corrected", "Corrected in the inbox"
        WRONG = "wrong", "Marked mishandled"

    text = models.TextField()
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="examples")
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    created_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.IMPORT)
    ticket = models.OneToOneField(
        "Ticket",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="label",
        help_text="The ticket a person decided (inbox labels only).",
    )
    labelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    labelled_at = models.DateTimeField(default=timezone.now, help_text="When the decision was taken.")
    decision_id = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The inbox decision (approvals.Decision) this label came from, if any."
    )
    proposed_category = models.CharField(
        max_length=100, blank=True, help_text="What the chain proposed, for corrected and wrong labels."
    )
    conflict = models.BooleanField(
        default=False, help_text="The same text carries a contradictory label: not learned until a person settles it."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["text", "category"],
                condition=models.Q(ticket__isnull=True),
                name="example_unique_text_category",
            )
        ]
        indexes = [models.Index(fields=["source", "labelled_at"])]

    def __str__(self) -> str:
        return f"{self.category_id}: {self.text[:60]}"


class EmbeddingCacheEntry(models.Model):
    """Every text is embedded once per model: the digest is sha256(model + NUL + text)."""

    digest = models.CharField(max_length=64, primary_key=True)
    model = models.CharField(max_length=100)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.model} {self.digest[:12]}"


class FittedClassifierCacheEntry(models.Model):
    """A classifier `evaluate` fitted, kept so that the next evaluation of the same examples reuses it
    (`triage.fitcache`): `key` names the examples, the embedding model and the fitting code; `training_digest`
    the exact training set (texts, labels, vectors), checked before the fit is reused."""

    key = models.CharField(max_length=64, primary_key=True)
    training_digest = models.CharField(max_length=64)
    blob = models.BinaryField()
    calibration = models.JSONField(default=dict)  # not in the blob (see `IntentClassifier.calibration`)
    created_at = models.DateTimeField(default=timezone.now)  # when it was (last) kept

    def __str__(self) -> str:
        return f"fit {self.key[:12]}"


class TrainedClassifier(models.Model):
    """A version of the local classifier, with what it was trained on and its figures.

    New runs use the active version (the newest when none is marked active: rows made before versions
    were kept). `manage.py retrain` adds a challenger and activates it only when it beats the active one
    on labelled tickets neither saw; an admin can activate an earlier version (roll back).
    """

    model = models.CharField(max_length=100)
    blob = models.BinaryField()
    labels = models.JSONField(default=list)
    example_count = models.PositiveIntegerField()
    suggested_threshold = models.FloatField(validators=unit_interval)
    calibration = models.JSONField(
        default=dict,
        blank=True,
        help_text="Out-of-fold scores, correctness and predicted categories of the examples (triage.risk).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    trained_on = models.JSONField(
        default=dict, blank=True, help_text="Examples by source, and the newest inbox label it learned from."
    )
    labels_until = models.DateTimeField(
        null=True, blank=True, help_text="Inbox labels decided after this were never seen by this version."
    )
    figures = models.JSONField(
        default=dict, blank=True, help_text="Cross-validation figures, and the comparison that promoted or kept it."
    )

    class Meta:
        get_latest_by = "created_at"
        verbose_name = "classifier version"
        constraints = [
            models.UniqueConstraint(fields=["active"], condition=models.Q(active=True), name="one_active_classifier")
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.model} ({self.example_count} examples){' active' if self.active else ''}"


class PipelineRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        WAITING = "waiting", "Waiting for a person"
        COMPLETED = "completed"
        FAILED = "failed"

    class Route(models.TextChoices):
        AUTO = "auto"
        HUMAN = "human"

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    route = models.CharField(max_length=10, choices=Route.choices, blank=True)
    gates_enabled = models.BooleanField(default=True)
    provider = models.CharField(max_length=50, default="local")
    resolution = models.JSONField(
        null=True, blank=True, help_text="A person's decision the execute step carries out (verdict, actions, reply)."
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Recovery (triage.tasks.runs_sweep): the database, not the queue, knows which runs are owed work.
    queued_at = models.DateTimeField(
        default=timezone.now, help_text="When the run was last handed to the queue (or should have been)."
    )
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="The worker holding the run renews this between steps; expired = it died."
    )
    takes = models.PositiveSmallIntegerField(
        default=0, help_text="Workers that took the run since it last finished a phase; bounded (poison ticket)."
    )
    # Tracing (config.telemetry): W3C trace contexts ({"traceparent": ..., "tracestate": ...}) of the request
    # that created the run ("request") and of its first take's span ("run"), so the run's trace links to the
    # request and later takes join the same trace. Empty when tracing is off.
    trace_context = models.JSONField(
        default=dict, blank=True, help_text="W3C trace contexts of the creating request and of the run's trace."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"]), models.Index(fields=["status", "queued_at"])]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.ticket_id}"


class StepRun(models.Model):
    """One attempt at one step: the checkpoint a resumed run starts from."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed", "Failed (may be retried)"
        SKIPPED = "skipped"
        ESCALATED = "escalated", "Escalated to a person"  # invalid output or retries exhausted

    FINISHED = (Status.SUCCEEDED, Status.SKIPPED, Status.ESCALATED)

    # No index of its own: `steprun_unique_attempt` (run, step, attempt) starts with it and serves every look-up by
    # run; a second index only cost each checkpoint one more insertion (seven a run).
    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="steps", db_index=False)
    step = models.CharField(max_length=20, choices=StepPolicy.Step.choices)
    attempt = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    input_digest = models.CharField(max_length=64, blank=True)
    output = models.JSONField(null=True, blank=True)
    verdicts = models.JSONField(default=list, blank=True)
    latency_ms = models.FloatField(default=0.0)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    cache_write_tokens = models.PositiveIntegerField(default=0, help_text="Of tokens_in: written to the prompt cache.")
    cache_read_tokens = models.PositiveIntegerField(default=0, help_text="Of tokens_in: read from the prompt cache.")
    model = models.CharField(max_length=100, blank=True)
    route_reason = models.CharField(max_length=300, blank=True, help_text="Why this model answered (or was skipped).")
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    pruned_at = models.DateTimeField(
        null=True, blank=True, help_text="When retention slimmed output and verdicts to what the figures need."
    )

    class Meta:
        ordering = ["run_id", "started_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step", "attempt"], name="steprun_unique_attempt"),
            models.UniqueConstraint(
                fields=["run", "step"],
                condition=models.Q(status__in=["succeeded", "skipped", "escalated"]),
                name="steprun_one_finished_per_step",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.step}#{self.attempt} {self.status}"


class Action(models.Model):
    """A side effect the chain carries out: sending a reply, setting a category, a refund.

    The idempotency key (run + kind + ordinal) is unique, so a retried or resumed run never does
    the same thing twice.
    """

    # The kinds are the contract's (`ActionKind`): one list for what a step may propose and what is stored.
    # Django's documented functional form, which django-stubs does not type.
    Kind = models.TextChoices("Kind", [(kind.name, kind.value) for kind in ActionKind])  # type: ignore[call-overload]

    class Status(models.TextChoices):
        PENDING = "pending"
        # Claimed, not recorded: a worker is calling out now (holding the run's lock), or one stopped mid-call and
        # the attempt is reconciled before anything is sent again (triage.writeback.action_carry_out).
        IN_FLIGHT = "in_flight"
        DONE = "done"
        FAILED = "failed"
        # An attempt may have taken effect and the integration cannot read back whether it did: a person checks.
        UNKNOWN = "unknown", "outcome unknown: check in the helpdesk"

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    payload = models.JSONField(default=dict)
    idempotency_key = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    # When the current attempt was claimed (None once its outcome is recorded).
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run_id", "id"]

    def __str__(self) -> str:
        return f"{self.kind} ({self.status})"


class ModelPrice(models.Model):
    """What one hosted model costs, in dollars per million tokens. Rows override settings' price table."""

    model = models.CharField(max_length=100, unique=True, help_text="Model id or its prefix, e.g. claude-haiku-4-5.")
    input_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)
    output_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)
    cache_write_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)
    cache_read_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model


class RetentionPolicy(SingletonModel):
    """How long finished runs keep their full checkpoints: one row (`RetentionPolicy.get_solo()`); admins edit it.

    After `slim_after_days`, the scheduled `checkpoints_prune` job drops the bulky parts of a finished run's
    step payloads (passage texts, draft bodies, gate reasons) and keeps every figure the reports read.
    """

    name = models.CharField(max_length=100, default="default", unique=True)
    slim_after_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=90,
        validators=[MinValueValidator(1), MaxValueValidator(36500)],
        help_text="Days after a run finished before its step payloads are slimmed (figures kept). Empty: never.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "retention policy"

    def __str__(self) -> str:
        return self.name


class ProviderSettings(SingletonModel):
    """How the hosted reasoning provider (Claude) is used: one row (`ProviderSettings.get_solo()`); empty fields:
    settings' defaults."""

    name = models.CharField(max_length=100, default="default", unique=True)
    enabled = models.BooleanField(default=True, help_text="Off: no run asks Claude (local models and people only).")
    classify_models = models.CharField(
        max_length=500,
        blank=True,
        help_text="Comma-separated, in order: the first answers, the next when it is overloaded.",
    )
    draft_models = models.CharField(max_length=500, blank=True, help_text="Comma-separated, in order.")
    timeout_seconds = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.1), MaxValueValidator(600.0)], help_text="Per call."
    )
    daily_spend_cap = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Dollars per UTC day; over it runs use the local models or a person. Empty: settings; 0: no cap.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "provider settings"

    def __str__(self) -> str:
        return self.name


ARGUMENT_SOURCES_HELP = (
    "Where each tool argument comes from, as JSON {argument: source}. Sources: order_id (the order number "
    "in the ticket), requester (the requester's e-mail), ticket_id (the helpdesk's ticket id), idempotency_key, "
    "amount, currency, note (from the action), or const:<value>. Empty: guessed from the argument names."
)


class ActionTool(models.Model):
    """An action kind carried out by an MCP tool (refund -> create_refund, cancel_order -> orders_cancel).

    A money-moving kind's tool runs only from a decision by a person with the money permission, once per
    action (its idempotency key is sent to the tool), see `triage.tools`.
    """

    kind = models.CharField(max_length=30, choices=[(k.value, k.value) for k in ActionKind], unique=True)
    tool = models.ForeignKey(McpTool, on_delete=models.PROTECT, related_name="action_mappings")
    arguments = models.JSONField(default=dict, blank=True, help_text=ARGUMENT_SOURCES_HELP)
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind"]
        verbose_name = "action tool"

    def __str__(self) -> str:
        return f"{self.kind} -> {self.tool.name}"

    @property
    def moves_money(self) -> bool:
        return self.kind in MONEY_ACTIONS


class LookupTool(models.Model):
    """A read-only MCP tool whose answer grounds the drafts of one category (order_status for late parcels)."""

    category = models.OneToOneField(Category, on_delete=models.CASCADE, related_name="lookup")
    tool = models.ForeignKey(McpTool, on_delete=models.PROTECT, related_name="lookup_mappings")
    arguments = models.JSONField(default=dict, blank=True, help_text=ARGUMENT_SOURCES_HELP)
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["category__label"]
        verbose_name = "look-up tool"

    def __str__(self) -> str:
        return f"{self.category.label} -> {self.tool.name}"
