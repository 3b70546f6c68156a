"""The hand-off contracts between steps. Everything a step or a model produces is parsed here.

A classification is validated against the live category set (passed as validation context), so a
category that does not exist is a `ContractError`, never a new category.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

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


class TicketIn(Contract):
    """A ticket as it enters the product, from any helpdesk or the API."""

    source: str = Field(min_length=1, max_length=50)
    external_id: str = Field(min_length=1, max_length=200)
    subject: str = Field(default="", max_length=500)
    body: str = Field(min_length=1, max_length=100_000)
    requester: str = Field(default="", max_length=320)
    tags: list[str] = Field(default_factory=list, max_length=50)
    delivery_id: str = Field(default="", max_length=200)

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
    schema = DraftAnswer.model_json_schema(mode="serialization")
    schema.pop("description", None)
    schema["properties"]["citations"]["items"]["enum"] = list(dict.fromkeys(chunk_ids))
    return schema


class Verdict(Contract):
    gate: str
    passed: bool
    reason: str
    step: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
