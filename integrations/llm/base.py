"""The small protocol every reasoning provider speaks (local, Anthropic, ...).

Providers take plain, immutable requests and hand back untrusted JSON plus usage; the triage
domain parses that JSON with its own contracts. Nothing here imports the domain: a request carries
the JSON schema of the contract its answer must satisfy (`output_schema`, built by the domain from
that contract), so a hosted model is asked for exactly what will be validated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol


class ProviderError(RuntimeError):
    """A provider call failed. `retryable` says whether trying again can help (timeouts, 429, 5xx)."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ProviderReply:
    output: dict[str, Any]
    model: str
    usage: Usage = field(default_factory=Usage)
    cost: Decimal = Decimal("0")


@dataclass(frozen=True, slots=True)
class CategoryOption:
    label: str
    description: str = ""
    money: bool = False


@dataclass(frozen=True, slots=True)
class PassageText:
    chunk_id: int
    title: str
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class ClassifyRequest:
    ticket_text: str
    categories: tuple[CategoryOption, ...]
    passages: tuple[PassageText, ...] = ()
    # The JSON schema of the classification a model must return (None: the provider does not ask a model).
    output_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DraftRequest:
    ticket_text: str
    category: str
    category_name: str
    passages: tuple[PassageText, ...]
    requester_name: str = ""
    # What a look-up tool answered (the shop's own system), one plain line each: facts the reply may state.
    facts: tuple[str, ...] = ()
    # The JSON schema of the draft a model must return (None: the provider does not ask a model).
    output_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Repair:
    """A second chance for output that broke its contract: what was returned and why it was refused."""

    previous_output: dict[str, Any]
    error: str


class ReasoningProvider(Protocol):
    name: str
    # Template lines the provider writes around the passages' own sentences (the groundedness gate exempts them).
    boilerplate: tuple[str, ...]

    def classify(self, request: ClassifyRequest) -> ProviderReply: ...

    def draft(self, request: DraftRequest) -> ProviderReply: ...


class HostedProvider(ReasoningProvider, Protocol):
    """A provider that asks a hosted model: the caller picks the model, the timeout, and may ask for a repair."""

    supports_models: bool
    default_models: dict[str, list[str]]

    def classify(
        self,
        request: ClassifyRequest,
        *,
        model: str | None = None,
        repair: Repair | None = None,
        timeout: float | None = None,
    ) -> ProviderReply: ...

    def draft(
        self,
        request: DraftRequest,
        *,
        model: str | None = None,
        repair: Repair | None = None,
        timeout: float | None = None,
    ) -> ProviderReply: ...
