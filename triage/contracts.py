"""The hand-off contracts between steps. Everything a step or a model produces is parsed here.

A classification is validated against the live category set (passed as validation context), so a
category that does not exist is a `ContractError`, never a new category.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

OUT_OF_SCOPE = "out_of_scope"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ContractError(ValueError):
    """Output that does not satisfy its contract. `reason` is for a person; `fields` for the log."""

    def __init__(self, contract: str, reason: str, fields: list[str] | None = None):
        super().__init__(f"{contract}: {reason}")
        self.contract = contract
        self.reason = reason
        self.fields = fields or []


def parse_contract[M: BaseModel](model: type[M], raw: Any, *, context: dict[str, Any] | None = None) -> M:
    """Validate `raw` (a dict or JSON text) into `model`, turning pydantic's error into a `ContractError`."""
    try:
        if isinstance(raw, (str, bytes)):
            return model.model_validate_json(raw, context=context)
        return model.model_validate(raw, context=context)
    except ValidationError as exc:
        problems = []
        fields = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err["loc"]) or "(root)"
            fields.append(loc)
            problems.append(f"{loc}: {err['msg']}")
        raise ContractError(model.__name__, "; ".join(problems), fields) from exc


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# PostgreSQL refuses NUL in text, and a lone UTF-16 surrogate (JSON allows "\ud800") cannot be encoded
# as UTF-8 at all; either would be a 500 at INSERT, which a helpdesk retries forever.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable_text(value: str) -> str:
    """`value` as PostgreSQL can store it: NUL removed, each lone surrogate replaced by U+FFFD."""
    return _UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else REPLACEMENT, value)


def _unstorable_count(value: str) -> int:
    return len(_UNSTORABLE.findall(value))


def _truncated(value: str, *, limit: int, marker: str) -> str:
    """`value` cut to `limit` characters, the marker included (it may say how many characters it keeps)."""
    kept = limit
    for _ in range(3):  # the marker's length depends on the number it states, which depends on its length
        text = marker.format(kept=kept, total=len(value))
        kept = limit - len(text)
    return value[:kept] + marker.format(kept=kept, total=len(value))


def unstorable_reason(value: str) -> str | None:
    """Why `value` cannot be stored as it is, or None."""
    if "\x00" in value:
        return "must not contain NUL (\\u0000) characters"
    if _UNSTORABLE.search(value):
        return "must not contain lone surrogates (invalid Unicode)"
    return None


TAG_MAX_LENGTH = 100
Tag = Annotated[str, StringConstraints(min_length=1, max_length=TAG_MAX_LENGTH)]
SUBJECT_MARKER = " […]"
BODY_MARKER = "\n\n[Truncated at intake: the first {kept} of {total} characters are kept.]"


class TicketIn(Contract):
    """A ticket as it enters the product, from any helpdesk or the API. The one home of the field limits.

    Free text (subject, body, tags) is cleaned rather than refused: NUL characters are removed and lone
    surrogates become U+FFFD, since neither can be stored and a person reads the rest just as well.
    Identifiers (source, external_id, requester, delivery_id) are refused with the field named: cleaning
    an identifier would silently make it another ticket's.
    """

    source: str = Field(min_length=1, max_length=50)
    external_id: str = Field(min_length=1, max_length=200)
    subject: str = Field(default="", max_length=500)
    body: str = Field(min_length=1, max_length=100_000)
    requester: str = Field(default="", max_length=320)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    delivery_id: str = Field(default="", max_length=200)

    @classmethod
    def max_length(cls, field: str) -> int:
        """The longest value `field` takes (characters, or items for tags), from the field's own constraint."""
        for constraint in cls.model_fields[field].metadata:
            if (limit := getattr(constraint, "max_length", None)) is not None:
                return limit
        raise LookupError(f"TicketIn.{field} has no length limit")

    @classmethod
    def fitted(cls, *, fields: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """`fields` with the free text made to fit, and a line for each change, for senders that cannot fix and resend.

        A helpdesk webhook that is refused is retried until the helpdesk gives up, and the ticket never
        arrives; a person can read a truncated ticket. So subject and body over their limit are cut with a
        visible marker, tags beyond the limits are cut or dropped, and unstorable characters are cleaned
        as the validators would, each change described. Identifiers are left alone: cut, two tickets could
        become one, so an over-long identifier stays an error naming it.
        """
        fitted = dict(fields)
        notes: list[str] = []
        for name in ("subject", "body"):
            value = fitted.get(name)
            if not isinstance(value, str):
                continue
            clean = storable_text(value)
            if clean != value:
                notes.append(f"{name}: {_unstorable_count(value)} unstorable characters (NUL, lone surrogates) cleaned")
            limit = cls.max_length(name)
            if len(clean) > limit:
                total = len(clean)
                clean = _truncated(clean, limit=limit, marker=SUBJECT_MARKER if name == "subject" else BODY_MARKER)
                notes.append(f"{name}: truncated from {total} to {limit} characters, marked in the text")
            fitted[name] = clean
        tags = fitted.get("tags")
        if isinstance(tags, list):
            tag_limit, count_limit = cls.max_length_of_tag(), cls.max_length("tags")
            kept: list[Any] = []
            for tag in tags:
                if isinstance(tag, str):
                    clean = storable_text(tag)[:tag_limit]
                    if clean != tag:
                        notes.append(f"tags: {tag[:40]!r}… cleaned or cut to {tag_limit} characters")
                    if not clean.strip() or clean in kept:
                        continue
                    tag = clean
                kept.append(tag)
            if len(kept) > count_limit:
                notes.append(f"tags: {len(kept) - count_limit} of {len(kept)} dropped (at most {count_limit})")
                kept = kept[:count_limit]
            fitted["tags"] = kept
        return fitted, notes

    @classmethod
    def max_length_of_tag(cls) -> int:
        return TAG_MAX_LENGTH

    @field_validator("subject", "body", mode="before")
    @classmethod
    def _free_text_storable(cls, value: Any) -> Any:
        return storable_text(value) if isinstance(value, str) else value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags_storable(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [storable_text(v) if isinstance(v, str) else v for v in value]
        return value

    @field_validator("source", "external_id", "requester", "delivery_id", mode="before")
    @classmethod
    def _identifier_storable(cls, value: Any) -> Any:
        if isinstance(value, str) and (reason := unstorable_reason(value)):
            raise ValueError(reason)
        return value

    @field_validator("requester")
    @classmethod
    def _requester_is_email(cls, value: str) -> str:
        if value and not EMAIL_RE.match(value):
            raise ValueError("must be an e-mail address")
        return value.lower()

    @field_validator("body")
    @classmethod
    def _body_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @property
    def text(self) -> str:
        return f"{self.subject}\n{self.body}".strip() if self.subject else self.body.strip()


class Passage(Contract):
    chunk_id: int
    article_id: int
    article_title: str
    heading: str = ""
    text: str
    score: float = Field(ge=-1.0, le=1.0)


class Retrieval(Contract):
    passages: list[Passage] = Field(default_factory=list)

    @property
    def top_score(self) -> float:
        return max((p.score for p in self.passages), default=0.0)


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class ActionKind(StrEnum):
    SEND_REPLY = "send_reply"
    SET_CATEGORY = "set_category"
    SET_PRIORITY = "set_priority"
    ADD_TAGS = "add_tags"
    SOLVE = "solve"
    REFUND = "refund"
    CANCEL_ORDER = "cancel_order"
    CREDIT = "credit"


MONEY_ACTIONS = frozenset({ActionKind.REFUND, ActionKind.CANCEL_ORDER, ActionKind.CREDIT})


class ProposedAction(Contract):
    kind: ActionKind
    amount: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=2)
    currency: str = Field(default="", max_length=3)
    note: str = Field(default="", max_length=500)

    @property
    def moves_money(self) -> bool:
        return self.kind in MONEY_ACTIONS or self.amount is not None


def stored_action_moves_money(stored: Any) -> bool:
    """Whether an action stored as JSON (an approval's or a decision's) moves money, by `ProposedAction.moves_money`.

    One that no longer parses counts as moving money: the careful answer is a person with the permission.
    """
    try:
        return ProposedAction.model_validate(stored).moves_money
    except ValidationError:
        return True


class ClassificationAnswer(Contract):
    """The part of a classification a model answers; the tool schema Claude fills in is derived from it
    (`classification_answer_schema`). Validation context `categories` is the set of known labels."""

    # Every field is in the tool schema's `required` list: a model answers all of them.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    category: str = Field(description="One label from the list.")
    confidence: float = Field(ge=0.0, le=1.0, description="Probability (0 to 1) that the category is right.")
    out_of_scope: bool = Field(default=False, description="True exactly when category is out_of_scope.")
    priority: Priority = Priority.NORMAL
    alternatives: list[tuple[str, float]] = Field(
        default_factory=list, max_length=5, description="Next most likely [category, probability] pairs."
    )
    rationale: str = Field(default="", max_length=2000, description="One sentence: why this category.")

    @field_validator("category")
    @classmethod
    def _category_exists(cls, value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("categories")
        if known is not None and value != OUT_OF_SCOPE and value not in known:
            raise ValueError(f"category {value!r} does not exist")
        return value

    @model_validator(mode="after")
    def _out_of_scope_consistent(self) -> Self:
        if (self.category == OUT_OF_SCOPE) != self.out_of_scope:
            raise ValueError("out_of_scope must be true exactly when category is 'out_of_scope'")
        return self


class Classification(ClassificationAnswer):
    """What the classify step hands on: the answer, plus what code decides (actions) and who answered."""

    proposed_actions: list[ProposedAction] = Field(default_factory=list, max_length=10)
    model: str = ""
    money_probability: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Set by code from the local classifier's full distribution: the probability it puts on "
        "money-moving categories, summed (None: a model that gave no full distribution).",
    )

    @property
    def moves_money(self) -> bool:
        return any(a.moves_money for a in self.proposed_actions)


class DraftAnswer(Contract):
    """The part of a draft a model writes; the tool schema is derived from it (`draft_answer_schema`)."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    body: str = Field(min_length=1, max_length=20_000)
    citations: list[int] = Field(default_factory=list, description="Chunk ids the reply is built from.")


class Draft(DraftAnswer):
    model: str = ""


def classification_answer_schema(*, labels: Iterable[str]) -> dict[str, Any]:
    """The JSON schema a model's classification must satisfy: `ClassificationAnswer`'s, with the live
    labels (and `out_of_scope`) as the enum of the category and of each alternative's category."""
    schema = ClassificationAnswer.model_json_schema(mode="serialization")
    schema.pop("description", None)  # the docstring is for developers; the tool has its own description
    enum = [*dict.fromkeys([*labels, OUT_OF_SCOPE])]
    properties = schema["properties"]
    properties["category"]["enum"] = enum
    properties["alternatives"]["items"]["prefixItems"][0]["enum"] = enum
    return schema


def draft_answer_schema(*, chunk_ids: Iterable[int]) -> dict[str, Any]:
    """The JSON schema a model's draft must satisfy: `DraftAnswer`'s, citing only the passages given."""
    base = _draft_answer_schema_base()
    # Copies along the one path that changes; the rest is shared with the cached base and never written.
    properties = dict(base["properties"])
    citations = dict(properties["citations"])
    citations["items"] = {**citations["items"], "enum": list(dict.fromkeys(chunk_ids))}
    properties["citations"] = citations
    return {**base, "properties": properties}


@functools.cache
def _draft_answer_schema_base() -> dict[str, Any]:
    """`DraftAnswer`'s schema, built once: pydantic builds it afresh on every call (about 1 ms)."""
    schema = DraftAnswer.model_json_schema(mode="serialization")
    schema.pop("description", None)
    return schema


class ToolLookup(Contract):
    """What a read-only MCP tool answered for this ticket: evidence the draft may state, beside the passages."""

    server: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] = Field(default_factory=dict)
    text: str = Field(default="", max_length=20_000)

    @property
    def facts(self) -> str:
        """The answer as one plain line (nested fields dotted, at most 20), e.g. `Order status (order system):
        order id: A-10423; status: shipped; carrier: UPS.` The drafter states it and the groundedness gate
        traces sentences to it."""
        pairs = [f"{k.replace('_', ' ').replace('.', ' ')}: {v}" for k, v in _flattened(self.result)][:20]
        body = "; ".join(pairs) if pairs else " ".join(self.text.split())[:1000]
        return f"{self.tool.replace('_', ' ').capitalize()} ({self.server}): {body}."


def _flattened(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _flattened(v, f"{prefix}{k}." if prefix or k else "")]
    if isinstance(value, list):
        return [(prefix.rstrip("."), ", ".join(str(v) for v in value if not isinstance(v, (dict, list)))[:200])]
    return [(prefix.rstrip("."), str(value)[:200])] if prefix else []


class Verdict(Contract):
    gate: str
    passed: bool
    reason: str
    step: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class Resolution(Contract):
    """What a person decided for a run that waited for them; the runner carries out exactly this.

    Written by `approvals.services.approval_decide` onto `PipelineRun.resolution`; read back by the execute
    step, which checks `decided_by`'s money permission again before any money moves.
    """

    verdict: Literal["approve", "reject"]
    actions: list[ProposedAction] = Field(default_factory=list, max_length=10)
    reply: str = Field(default="", max_length=20_000)
    category: str | None = None
    reason: str = ""
    decision_id: int | None = None
    decided_by: int | None = None
