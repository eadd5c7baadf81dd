"""Fresh titles beside the tiny world's index: searchable at once, merged by score, taken down
from both indexes."""

import pytest

from recs import features as F
from recs.evaluation import exact_top_k
from serving.clients import RestClient
from serving.online.fresh import FreshTitles
from serving.online.recommender import Recommender, load_catalogue


def _fresh_copies(catalogue: dict) -> list[dict]:
    """Every catalogue title again under a new id (the towers never saw these ids)."""
    return [{**row, F.TITLE_ID: f"new-{title}"} for title, row in catalogue.items()]


@pytest.fixture
def with_fresh(server, store, tiny_world) -> tuple[Recommender, FreshTitles, dict]:
    """A recommender over the exact index with an empty fresh-title side index."""
    client = RestClient(server.rest_url)
    catalogue = load_catalogue(str(tiny_world.serving_dir), "retrieval_exact")
    fresh = FreshTitles(client)
    return (Recommender(client, store, catalogue, retrieval_model="retrieval_exact",
                        recommender_model="recommender_exact", fresh=fresh), fresh, catalogue)


def test_fresh_titles_are_searchable_at_once_and_merged_by_score(with_fresh, tiny_world):
    recommender, fresh, catalogue = with_fresh
    client = recommender.client
    users = sorted({record[F.USER_ID] for record in tiny_world.records})
    before = {user: recommender.retrieve(user) for user in users}
    fresh.publish(_fresh_copies(catalogue))
    assert len(fresh) == len(catalogue)

    # Oracle: exact search over indexed + fresh embeddings from the served towers.
    rows = list(catalogue.values()) + _fresh_copies(catalogue)
    columns = {key: [row[key] for row in rows] for key in F.CANDIDATE_FEATURES}
    embeddings = client.predict("towers", columns, signature="candidate_embedding")["embedding"]
    merged_fresh = 0
    for user in users:
        merged = recommender.retrieve(user)
        query = client.predict("retrieval_exact", recommender._query(user, "tv", 20))
        top = exact_top_k(embeddings.astype("f4"), query["query_embedding"].astype("f4"),
                          len(before[user]))[0]
        assert [title for title, _ in merged] == [rows[i][F.TITLE_ID] for i in top]
        merged_fresh += sum(title.startswith("new-") for title, _ in merged)
    # A fresh copy has no item-to-item row (a new id), so it can lose to its indexed twin;
    # across the users some still win a place, and each is merged where its score puts it.
    assert merged_fresh > 0

    recommendations = recommender.recommend(user, k=len(before))
    assert {item.title_id for item in recommendations} <= {title for title, _ in merged}


def test_taken_down_titles_leave_both_indexes(with_fresh, tiny_world):
    recommender, fresh, catalogue = with_fresh
    user = tiny_world.records[0][F.USER_ID]
    fresh.publish(_fresh_copies(catalogue)[:5])
    candidates = [title for title, _ in recommender.retrieve(user)]
    indexed = next(title for title in candidates if not title.startswith("new-"))
    fresh.take_down(indexed)
    fresh.take_down("new-" + next(iter(catalogue)))
    after = [title for title, _ in recommender.retrieve(user)]
    assert indexed not in after and "new-" + next(iter(catalogue)) not in after
    fresh.forget_indexed({f"new-{title}" for title in catalogue})
    assert len(fresh) == 0


def test_publishing_a_title_without_its_features_is_refused(server):
    with pytest.raises(ValueError, match="lacks candidate features"):
        FreshTitles(RestClient(server.rest_url)).publish([{F.TITLE_ID: "t-new"}])
