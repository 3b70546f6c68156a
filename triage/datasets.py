"""The dataset folder format: what `import_examples`, `evaluate` and the demo read.

    categories.csv   label,money      (money=1 where acting on such a ticket moves money)
    examples.csv     text,label       past tickets to learn from
    tickets.csv      text,label[,money]  tickets to triage with their true label ('out_of_scope': none fits);
                     the optional money column is 1 when the ticket asks for money to move whatever its
                     category (a refund hidden inside an ordinary question), else 0
    kb/*.md          optional knowledge-base articles; an optional first line `category: <label>` names the
                     category the article answers (what `evaluate` checks retrieval and citations against)

Every problem is reported with the file and line, and nothing is imported from a folder that has one.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from triage.contracts import OUT_OF_SCOPE


class DatasetError(ValueError):
    pass


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str
    line: int
    money: bool | None = None
    """tickets.csv's money column: True when the ticket asks for money to move; None without the column."""


@dataclass(frozen=True)
class Dataset:
    path: Path
    categories: dict[str, bool]
    examples: list[LabelledText]
    tickets: list[LabelledText]
    article_categories: dict[str, str] = field(default_factory=dict)
    """Article file stem -> the category its `category:` line names (articles without one are absent)."""

    @property
    def kb_dir(self) -> Path | None:
        kb = self.path / "kb"
        return kb if kb.is_dir() and any(kb.glob("*.md")) else None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def money_labels(self) -> set[str]:
        return {label for label, money in self.categories.items() if money}

    @property
    def has_money_column(self) -> bool:
        return any(t.money is not None for t in self.tickets)


def _rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; found {reader.fieldnames}")
            return [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}) for row in reader]
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from exc
    except csv.Error as exc:
        raise DatasetError(f"{path}: not valid CSV ({exc})") from exc


def _labelled(path: Path, known: dict[str, bool], *, allow_out_of_scope: bool) -> list[LabelledText]:
    out = []
    for line, row in _rows(path, ("text", "label")):
        if not row["text"]:
            raise DatasetError(f"{path}:{line}: empty text")
        label = row["label"]
        if label not in known and not (allow_out_of_scope and label == OUT_OF_SCOPE):
            raise DatasetError(f"{path}:{line}: label {label!r} is not in categories.csv")
        money: bool | None = None
        if "money" in row:
            if row["money"] not in {"0", "1"}:
                raise DatasetError(f"{path}:{line}: money must be 0 or 1, got {row['money']!r}")
            money = row["money"] == "1"
        out.append(LabelledText(text=row["text"], label=label, line=line, money=money))
    if not out:
        raise DatasetError(f"{path}: no rows")
    return out


def dataset_load(path: Path, *, tickets: bool = True) -> Dataset:
    """Read and check a dataset folder."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder (expected categories.csv, examples.csv, tickets.csv)")
    categories: dict[str, bool] = {}
    for line, row in _rows(path / "categories.csv", ("label", "money")):
        label = row["label"]
        if not label:
            raise DatasetError(f"{path / 'categories.csv'}:{line}: empty label")
        if row["money"] not in {"0", "1"}:
            raise DatasetError(f"{path / 'categories.csv'}:{line}: money must be 0 or 1, got {row['money']!r}")
        if label == OUT_OF_SCOPE:
            raise DatasetError(f"{path / 'categories.csv'}:{line}: '{OUT_OF_SCOPE}' is reserved")
        categories[label] = row["money"] == "1"
    if len(categories) < 2:
        raise DatasetError(f"{path / 'categories.csv'}: at least two categories are needed")
    examples = _labelled(path / "examples.csv", categories, allow_out_of_scope=False)
    ticket_rows = _labelled(path / "tickets.csv", categories, allow_out_of_scope=True) if tickets else []
    return Dataset(
        path=path,
        categories=categories,
        examples=examples,
        tickets=ticket_rows,
        article_categories=_article_categories(path / "kb", categories),
    )


CATEGORY_LINE = re.compile(r"^category:\s*(\S*)\s*$", re.IGNORECASE)


def article_category_split(text: str) -> tuple[str | None, str]:
    """An article's optional first line `category: <label>`, and the rest of the text without it."""
    first, newline, rest = text.lstrip("\ufeff").partition("\n")
    match = CATEGORY_LINE.match(first.strip())
    if match is None:
        return None, text
    return match.group(1), rest.lstrip("\n") if newline else ""


def _article_categories(kb: Path, known: dict[str, bool]) -> dict[str, str]:
    out: dict[str, str] = {}
    if not kb.is_dir():
        return out
    for article in sorted(kb.glob("*.md")):
        try:
            text = article.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{article}: not UTF-8 text ({exc})") from exc
        label, _ = article_category_split(text)
        if label is None:
            continue
        if label not in known:
            raise DatasetError(f"{article}:1: category {label!r} is not in categories.csv")
        out[article.stem] = label
    return out
