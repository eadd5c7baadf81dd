"""The recommender over the tiny world's served models: it retrieves, ranks and filters over
REST and gRPC, and refuses bad requests."""

import pytest

from recs import features as F
from serving.clients import GrpcClient, RestClient
from serving.online.recommender import Recommender, UnknownUserError, load_catalogue


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_recommender_retrieves_ranks_and_filters(server, store, tiny_world, protocol):
    client = (RestClient(server.rest_url) if protocol == "rest"
              else GrpcClient(server.grpc_target))
    catalogue = load_catalogue(str(tiny_world.serving_dir), "retrieval")
    recommender = Recommender(client, store, catalogue)
    user = next(r[F.USER_ID] for r in tiny_world.records if r[F.COMPLETED] == 1)
    finished = store.finished(user)
    items = recommender.recommend(user, k=5)
    assert 1 <= len(items) <= 5
    assert not finished & {item.title_id for item in items}
    scores = [item.score for item in items]
    assert scores == sorted(scores, reverse=True)
    assert all(item.title_id in catalogue for item in items)


def test_recommender_rejects_bad_requests(server, store, tiny_world):
    recommender = Recommender(RestClient(server.rest_url), store,
                              load_catalogue(str(tiny_world.serving_dir), "retrieval"))
    with pytest.raises(UnknownUserError, match="unknown user_id 'ghost'"):
        recommender.recommend("ghost")
    with pytest.raises(ValueError, match="k must be between 1 and 100; received 0"):
        recommender.recommend("u000001", k=0)
