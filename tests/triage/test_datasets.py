from __future__ import annotations

import pytest

from triage.datasets import DatasetError, article_category_split, dataset_load


def write(folder, tickets="text,label,money\nwhere is it,shipping,0\nrefund it,shipping,1\n"):
    (folder / "categories.csv").write_text("label,money\nbilling,1\nshipping,0\n")
    (folder / "examples.csv").write_text("text,label\nwhere is my parcel,shipping\nrefund me,billing\n")
    (folder / "tickets.csv").write_text(tickets)
    (folder / "kb").mkdir()
    (folder / "kb" / "parcels.md").write_text("category: shipping\n\n# Parcels\n\nThey take three days.\n")
    (folder / "kb" / "about.md").write_text("# About us\n\nWe roast coffee.\n")
    return folder


def test_the_money_column_and_kb_category_lines_are_read(tmp_path):
    data = dataset_load(write(tmp_path))

    assert [t.money for t in data.tickets] == [False, True] and data.has_money_column
    assert data.article_categories == {"parcels": "shipping"}


def test_without_the_money_column_nothing_is_assumed(tmp_path):
    data = dataset_load(write(tmp_path, tickets="text,label\nwhere is it,shipping\n"))

    assert data.tickets[0].money is None and not data.has_money_column


def test_a_bad_money_value_names_file_and_line(tmp_path):
    with pytest.raises(DatasetError, match=r"tickets.csv:3: money must be 0 or 1, got 'yes'"):
        dataset_load(write(tmp_path, tickets="text,label,money\na,shipping,0\nb,shipping,yes\n"))


def test_an_unknown_article_category_names_the_file(tmp_path):
    write(tmp_path)
    (tmp_path / "kb" / "odd.md").write_text("category: nonsense\n# Odd\n")

    with pytest.raises(DatasetError, match=r"odd.md:1: category 'nonsense' is not in categories.csv"):
        dataset_load(tmp_path)


def test_the_category_line_is_taken_off_the_article():
    assert article_category_split("category: shipping\n\n# Parcels\nbody") == ("shipping", "# Parcels\nbody")
    assert article_category_split("# Parcels\ncategory: shipping") == (None, "# Parcels\ncategory: shipping")
