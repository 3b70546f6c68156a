"""The dataset folder format: what `import_examples`, `evaluate` and the demo read.

    categories.csv   label,money      (money=1 where acting on such a ticket moves money)
    examples.csv     text,label       past tickets to learn from
    tickets.csv      text,label       tickets to triage with their true label ('out_of_scope': none fits)
    kb/*.md          optional knowledge-base articles

Every problem is reported with the file and line, and nothing is imported from a folder that has one.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from triage.contracts import OUT_OF_SCOPE


class DatasetError(ValueError):
    pass


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str
    line: int


@dataclass(frozen=True)
class Dataset:
    path: Path
    categories: dict[str, bool]
    examples: list[LabelledText]
    tickets: list[LabelledText]

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
        out.append(LabelledText(text=row["text"], label=label, line=line))
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
    return Dataset(path=path, categories=categories, examples=examples, tickets=ticket_rows)
