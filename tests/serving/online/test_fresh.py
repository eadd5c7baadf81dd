"""Merging fresh titles into the indexed candidates: a pure function of two scored lists."""

from serving.online.fresh import merge_top_k


def test_merge_top_k_orders_by_score_dedupes_and_excludes():
    indexed = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
    fresh = [("n", 0.7), ("b", 0.6), ("x", 0.95)]
    # x is taken down; b keeps its higher score.
    assert merge_top_k(indexed, fresh, 3, exclude={"x"}) == [("a", 0.9), ("n", 0.7),
                                                              ("b", 0.6)]
    assert merge_top_k([], [], 3) == []
