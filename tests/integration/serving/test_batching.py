"""Server-side batching in the model server over the tiny world's models: row-aligned models
are batched, the recommender never, and both answer alike."""

from concurrent import futures

import numpy as np
import pytest


@pytest.mark.slow
def test_the_model_server_batches_row_aligned_models_only_and_answers_alike(tiny_world):
    from serving.clients import RestClient
    from serving.model_server import ModelRegistry, ModelServer

    records = tiny_world.records[:6]
    query = {key: [record[key] for record in records]
             for key in ("user_id", "age", "country", "subscription_tier", "preferred_genres",
                         "history", "device_type", "hour")}
    one = {key: values[:1] for key, values in query.items()}
    answers = {}
    for batching in (False, True):
        registry = ModelRegistry(str(tiny_world.serving_dir),
                                 ("towers", "recommender_exact"), batching=batching)
        registry.load()
        with ModelServer(registry) as server:
            client = RestClient(server.rest_url)
            with futures.ThreadPoolExecutor(6) as pool:
                rows = list(pool.map(lambda i: client.predict(
                    "towers", {key: values[i:i + 1] for key, values in query.items()},
                    signature="query_embedding")["embedding"], range(6)))
            served = client.predict("recommender_exact",
                                    {**one, "excluded_title_ids": [""]}, signature="recommend")
            batched = {name: registry.get(name).batching is not None
                       for name in ("towers", "recommender_exact")}
        answers[batching] = (np.concatenate(rows), served, batched)
    np.testing.assert_allclose(answers[True][0], answers[False][0], atol=1e-6)
    assert answers[True][1]["title_ids"].tolist() == answers[False][1]["title_ids"].tolist()
    assert answers[True][2] == {"towers": True, "recommender_exact": False}
    assert answers[False][2] == {"towers": False, "recommender_exact": False}
