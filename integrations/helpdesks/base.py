"""What every helpdesk vendor package shares: signatures, payload models, HTML to text.

A vendor package (`integrations/helpdesks/<vendor>/`) provides:

- ``verify(*, headers, body, secret) -> bool``: the signature on the raw body, compared in constant time;
- ``signed_at(*, headers) -> float | None``: the signed timestamp (epoch seconds) where the vendor signs one;
- ``parse(*, payload, headers) -> IncomingTicket | Ignored``: the documented payload as a ticket, or `Ignored`
  with the reason for events that carry no new ticket (answered 2xx). Parsing is ``Model.model_validate`` on
  the vendor's pydantic models (``<vendor>/payloads.py``, one per payload and event kind, written from the
  vendor's documentation or source); `validated` turns a `ValidationError` into the `PayloadError` that
  names the dotted field;
- ``Client``: the vendor's REST API for write-back (a `HelpdeskClient`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError


class SignatureError(Exception):
    """Missing, wrong or stale signature: answered 401."""


class PayloadError(Exception):
    """The payload lacks a required field or has the wrong shape: answered 400 naming the field."""

    def __init__(self, field_name: str, reason: str = "is required"):
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


class NeedsFetch(Exception):
    """The delivery names an event but does not carry it (Front's rule-webhook *preview*): the ticket can only
    be made after reading the event through the vendor's API. Never a reason to drop the delivery."""

    def __init__(
        self,
        *,
        vendor: str,
        event_id: str,
        event_type: str,
        conversation_id: str,
        conversation_link: str,
        field: str = "target.data",
        hint: str = "",
    ):
        self.vendor = vendor
        self.event_id = event_id
        self.event_type = event_type
        self.conversation_id = conversation_id
        self.conversation_link = conversation_link
        self.field = field  # where the missing message should have been
        message = (
            f"{vendor} sent an event preview without the message (event {event_id}, conversation "
            f"{conversation_id or conversation_link}); the event must be read through {vendor}'s API"
        )
        super().__init__(f"{message}; {hint}" if hint else message)


@dataclass(frozen=True)
class IncomingTicket:
    """A ticket as a vendor payload states it, before it becomes a `TicketIn`.

    `requester_id` is the vendor's id of the requester when the payload names them only by id (Zendesk's
    ``ticket.created`` event): `requester` is then empty, to be looked up through the vendor's API.
    """

    external_id: str
    body: str
    subject: str = ""
    requester: str = ""
    tags: list[str] = field(default_factory=list)
    delivery_id: str = ""
    event: str = ""
    requester_id: str = ""


@dataclass(frozen=True)
class Ignored:
    """A genuine delivery that carries no new ticket (another event, our own reply, no message yet): 2xx."""

    reason: str
    event: str = ""


# --- signatures -----------------------------------------------------------------------------------


def hmac_digest(secret: str, message: bytes, algorithm: str) -> bytes:
    return hmac.new(secret.encode(), message, getattr(hashlib, algorithm)).digest()


def matches_base64(given: str | None, secret: str, message: bytes, algorithm: str) -> bool:
    if not given or not secret:
        return False
    expected = base64.b64encode(hmac_digest(secret, message, algorithm)).decode()
    return hmac.compare_digest(expected.encode(), given.strip().encode())


def matches_hex(given: str | None, secret: str, message: bytes, algorithm: str, *, prefix: str = "") -> bool:
    """`given` is ``<prefix><hex>``, e.g. ``sha1=3f…``; the hex part is compared case-insensitively."""
    if not given or not secret:
        return False
    given = given.strip()
    if prefix:
        if not given.lower().startswith(prefix):
            return False
        given = given[len(prefix) :]
    expected = hmac_digest(secret, message, algorithm).hex()
    return hmac.compare_digest(expected.encode(), given.lower().encode("ascii", "replace"))


def epoch_seconds(value: str | None, *, header: str) -> float:
    """A signed timestamp header in unix seconds or milliseconds."""
    if not value:
        raise SignatureError(f"{header} is missing")
    try:
        number = float(value.strip())
    except ValueError as exc:
        raise SignatureError(f"{header} is not a timestamp") from exc
    return number / 1000 if number > 1e11 else number


# --- payload access -------------------------------------------------------------------------------

# The longest JSON integer kept as a number: an integer is only ever used as an id, and no id is longer
# than the 200 characters `TicketIn.external_id` takes. Python itself refuses to convert more than 4,300
# digits (a ValueError out of json.loads, before any field is known), so the limit must be applied while
# parsing; the field that holds such a number is named later, by whoever reads it.
MAX_INTEGER_DIGITS = 200


class OutOfRangeInteger:
    """A JSON integer over `MAX_INTEGER_DIGITS` digits, left in place of the number so a reader can name its field."""

    __slots__ = ("digits",)

    def __init__(self, literal: str):
        self.digits = len(literal.lstrip("-"))

    def __repr__(self) -> str:
        return f"<integer of {self.digits} digits>"

    @property
    def reason(self) -> str:
        return f"is an integer of {self.digits} digits (at most {MAX_INTEGER_DIGITS} are accepted)"


def _bounded_int(literal: str) -> int | OutOfRangeInteger:
    return int(literal) if len(literal.lstrip("-")) <= MAX_INTEGER_DIGITS else OutOfRangeInteger(literal)


def json_load(body: bytes | str) -> Any:
    """JSON as `json.loads` reads it, except that an integer too long to be an id becomes an `OutOfRangeInteger`.

    Raises what `json.loads` raises for malformed input (`ValueError`, `RecursionError`).
    """
    return json.loads(body, parse_int=_bounded_int)


def out_of_range_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first `OutOfRangeInteger` in `value` (``(root)`` for the value itself), or None."""
    if isinstance(value, OutOfRangeInteger):
        return path or "(root)"
    if isinstance(value, Mapping):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if (found := out_of_range_path(item, f"{path}.{key}" if path else str(key))) is not None:
            return found
    return None


# --- payload models -------------------------------------------------------------------------------


class VendorPayload(BaseModel):
    """Base of every vendor payload model: fields we do not read are ignored (vendors add fields all the time),
    fields we read are validated. Never constructed by us, only validated from a delivery."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


def _as_id(value: Any) -> str:
    if isinstance(value, OutOfRangeInteger):
        raise PydanticCustomError("out_of_range", value.reason)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PydanticCustomError("id_type", "must be a string or an integer")
    text = str(value).strip()
    if not text:
        raise PydanticCustomError("missing", "Field required")
    return text


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PydanticCustomError("string_type", "must be a string")
    return value


def _as_required_text(value: Any) -> str:
    text = _as_text(value)
    if not text.strip():
        raise PydanticCustomError("missing", "Field required")
    return text


def _as_optional_id(value: Any) -> str:
    return "" if value is None or value == "" else _as_id(value)


# A vendor id (string or integer) as text; an integer too long to be an id is refused naming its field.
Id = Annotated[str, BeforeValidator(_as_id)]
# An id that may be absent or null ("" then).
OptionalId = Annotated[str, BeforeValidator(_as_optional_id)]
# Free text that may be absent or null ("" then); anything but a string is refused.
Text = Annotated[str, BeforeValidator(_as_text)]
# Free text that must be there and not blank (the ticket's body).
RequiredText = Annotated[str, BeforeValidator(_as_required_text)]


def loose_object(value: Any) -> Any:
    """For an optional nested object we only glean from (a requester's e-mail): anything but an object is
    taken as absent rather than refusing the ticket.

    Use as ``Annotated[Model | None, BeforeValidator(loose_object)]``.
    """
    return value if isinstance(value, Mapping) else None


def _as_tags(value: Any) -> list[str]:
    return tag_list(value)


def _as_email(value: Any) -> str:
    return requester_email(value)


# Tags in any of the shapes vendors send; never a reason to refuse a ticket.
Tags = Annotated[list[str], BeforeValidator(_as_tags)]
# An e-mail address or "": a malformed requester must not turn the ticket away.
Email = Annotated[str, BeforeValidator(_as_email)]


def field_error(exc: ValidationError, *, at: str = "") -> PayloadError:
    """The first error of a pydantic validation as the intake's `PayloadError`, naming the dotted field.

    Used for vendor payloads (the field as the vendor names it, under `at`) and for `TicketIn` on both the
    webhook and the API paths, so a field is named the same way wherever it is refused.
    """
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"])
    name = ".".join(part for part in (at, loc) if part) or "(root)"
    return PayloadError(name, err["msg"])


def validated[M: BaseModel](model: type[M], data: Any, *, at: str = "") -> M:
    """`model.model_validate(data)`; a `ValidationError` becomes the `PayloadError` naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise field_error(exc, at=at) from exc


def tag_list(value: Any) -> list[str]:
    """Tags as vendors send them: a list of strings or of {"name"|"tag": ...}, or one separated string.

    Every tag is kept whole; the intake fits them to `TicketIn`'s limits and records what it cut. NUL is
    dropped here so that a tag of nothing else disappears rather than becoming an empty tag.
    """
    if isinstance(value, str):
        items: list[Any] = re.split(r"[,\s]+", value)
    elif isinstance(value, list):
        items = value
    elif isinstance(value, Mapping):
        items = value.get("tags") or value.get("data") or []  # Intercom wraps its tag list
    else:
        return []
    tags = []
    for item in items:
        if isinstance(item, Mapping):
            item = item.get("name") or item.get("tag") or ""
        if isinstance(item, str):
            item = item.replace("\x00", "").strip()
            if item and item not in tags:
                tags.append(item)
    return tags


# Control characters and lone surrogates are excluded as well: PostgreSQL can store neither NUL nor a lone surrogate.
_EMAIL_PART = r"[^@\s<>\x00-\x1f\ud800-\udfff]+"
_EMAIL_TWO_PARTS = re.compile(rf"{_EMAIL_PART}@{_EMAIL_PART}")


def requester_email(value: Any) -> str:
    """An e-mail address or nothing: a malformed requester must not turn the ticket away."""
    if not isinstance(value, str):
        return ""
    value = value.strip()
    # The dot is looked for in plain code: as a third regex part it made the match quadratic on a long
    # run of dots from the sender.
    if len(value) <= 320 and _EMAIL_TWO_PARTS.fullmatch(value) and "." in value.split("@", 1)[1][1:-1]:
        return value
    return ""


# --- HTML to text ---------------------------------------------------------------------------------

_HTML_TEXT = ParserConfig(display_links=False, display_images=False)


def html_to_text(value: str) -> str:
    """Plain text from an HTML body: markup, scripts and styles dropped, entities decoded, blocks kept as lines.

    inscriptis parses with lxml (libxml2), whose time grows with the input; Python's `html.parser` is
    quadratic on malformed markup such as thousands of unclosed tags, which a sender controls.
    """
    if "<" not in value and "&" not in value:
        return value.strip()
    text = get_text(value, _HTML_TEXT).replace("\xa0", " ")
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def comparable(text: str) -> str:
    """A reply as a remote helpdesk may echo it back (HTML or not), for 'was it already posted?' checks."""
    return re.sub(r"\s+", " ", html_to_text(text)).strip()
