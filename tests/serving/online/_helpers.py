"""Stand-ins shared by the policy and status tests: a model server's status API and a
recommender whose model calls a test sets."""

from serving.clients import ModelServerError
from serving.online.recommender import Recommendation, Recommender, ServedList
from serving.online.store import SqliteProfileStore

TITLE = {"title_id": "t1", "genre": "drama", "release_year": 2020, "popularity": 2.0,
         "description": "a story"}


class _Versions:
    """A model server's status API whose newest versions a test sets; counts the calls."""

    def __init__(self, versions: list[int]) -> None:
        self.versions, self.calls = versions, 0

    def available_versions(self, model, timeout=None):
        self.calls += 1
        return list(self.versions)


class _Recommender(Recommender):
    """The real catalogue and fallback; model calls replaced by a settable outcome."""

    def __init__(self, client, failure: ModelServerError | None = None) -> None:
        super().__init__(client, SqliteProfileStore(":memory:"), {"t1": TITLE})
        self.failure, self.asked = failure, []

    def ranked(self, user_id, **options):
        self.asked.append(options)
        if self.failure is not None:
            raise self.failure
        item = Recommendation("t1", 0.9, 0.5, "drama")
        return ServedList([item], {self.retrieval_model: None, self.ranker_model: 3},
                          {"retrieval": 1.0}, 1)
