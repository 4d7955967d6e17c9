"""Which items an answer names: bracketed ids decide, titles count only when no id is next to them."""

from __future__ import annotations

from recagent.agents.grounding import citation, ground_answer


def test_a_cited_id_decides_between_catalog_duplicates(ml100k):
    # ML-100K lists "Chasing Amy (1997)" twice, as items 246 and 268
    for text in ("1. [268] Chasing Amy (1997), Drama, Romance", "1. Chasing Amy (1997) [268], Drama, Romance"):
        g = ground_answer(text, ml100k.items, {"268"})
        assert g.ok and g.supported == ["268"], text
    g = ground_answer(citation("268", "Chasing Amy (1997)"), ml100k.items, {"246"})
    assert g.unsupported == ["268"]


def test_titles_without_ids_and_unknown_items_are_read(ml100k):
    g = ground_answer("Try Toy Story (1995) or Imaginary Film (1994), or [99999].", ml100k.items, {"1"})
    assert g.supported == ["1"]
    assert g.unknown == ["[99999]", "Imaginary Film (1994)"]
    assert not g.ok


def test_the_citation_puts_the_id_first():
    assert citation("50", "Star Wars (1977)") == "[50] Star Wars (1977)"
