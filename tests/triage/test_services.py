from __future__ import annotations

import pytest

from triage.models import Article
from triage.services import knowledge_base_import

pytestmark = pytest.mark.django_db


def test_an_article_category_line_is_stored_and_taken_off_its_text(tmp_path):
    (tmp_path / "late-parcels.md").write_text("category: shipping_delay\n\n# Late parcels\n\nWe track them for you.\n")

    knowledge_base_import(directory=tmp_path)

    article = Article.objects.get(slug="late-parcels")
    assert (article.title, article.category.label) == ("Late parcels", "shipping_delay")
    assert "category:" not in article.body and "category:" not in " ".join(c.text for c in article.chunks.all())


def test_an_unknown_article_category_imports_nothing(tmp_path):
    (tmp_path / "a-fine-one.md").write_text("# Fine\n\nText.\n")
    (tmp_path / "odd.md").write_text("category: nonsense\n# Odd\n\nText.\n")

    with pytest.raises(ValueError, match=r"odd.md:1: category 'nonsense' does not exist; nothing was imported"):
        knowledge_base_import(directory=tmp_path)

    assert not Article.objects.filter(slug__in=["a-fine-one", "odd"]).exists()
