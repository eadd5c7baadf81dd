"""The recommendation answer's body: written directly (not through FastAPI's response
validation), it must still be exactly what the OpenAPI spec's RecommendationResponse says."""

from fastapi.testclient import TestClient

from serving.api.service import RECOMMENDATIONS_PATH, RecommendationResponse, create_app
from serving.config import ServiceConfig
from serving.online.policy import OnlinePolicy
from serving.online.recommender import Recommendation, ServedList
from serving.online.status import FixedStatus
from serving.online.store import SqliteProfileStore


class _Ranked:
    """Stands in for the Recommender: two ranked titles, one without a retrieval score."""

    store = SqliteProfileStore(":memory:")

    def ranked(self, user_id: str, **_) -> ServedList:
        return ServedList([Recommendation("t2", 0.75, 1.5, "drama"),
                           Recommendation("t9", 0.25, None, "comedy")],
                          {"recommender": 4}, {"profile": 0.25, "recommend": 3.0}, 200)


def test_the_answer_body_is_the_spec_s_response_model():
    policy = OnlinePolicy(_Ranked(), ServiceConfig(), status=FixedStatus({"recommender": 4}))
    with TestClient(create_app(policy)) as client:
        response = client.post(RECOMMENDATIONS_PATH, json={"user_id": "u1", "k": 2})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    parsed = RecommendationResponse.model_validate_json(response.content)
    assert parsed.model_dump() == body  # Every key the model has, and no other.
    assert body["items"] == [
        {"title_id": "t2", "genre": "drama", "score": 0.75, "retrieval_score": 1.5,
         "propensity": 1.0, "explored": False},
        {"title_id": "t9", "genre": "comedy", "score": 0.25, "retrieval_score": None,
         "propensity": 1.0, "explored": False}]
    assert (body["user_id"], body["candidates"], body["fallback"]) == ("u1", 200, None)
    assert body["model_versions"] == {"recommender": 4} and body["experiments"] == {}
    assert set(body["timings_ms"]) == {"profile", "recommend", "total"}
    assert len(body["request_id"]) == 32
