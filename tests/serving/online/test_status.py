"""Model status: what is missing, and the versions of the labels the experiments route to,
read off the request path."""

from serving.config import ServiceConfig
from serving.online.experiments import Arm, Experiment, ModelTarget
from serving.online.policy import OnlinePolicy
from serving.online.status import FixedStatus, ModelStatus
from tests.serving.online._helpers import _Recommender, _Versions


def test_model_status_reports_what_is_missing():
    status = FixedStatus({"retrieval": 2, "ranker": None})
    assert not status.ready() and status.missing() == ["ranker"]
    live = ModelStatus({"ranker": _Versions([])}, refresh_s=3600)
    assert live.missing() == ["ranker"] and not live.ready()
    live.close()


def test_model_status_reads_the_labels_the_experiments_route_to():
    class Labels(_Versions):
        def available_versions(self, model, timeout=None, label=""):
            self.calls += 1
            return {"": [1, 2], "canary": [2], "stable": [1]}[label]

    config = ServiceConfig(status_refresh_s=3600, experiments=(Experiment("canary", arms=(
        Arm("control", models={"ranker": "@stable"}),
        Arm("canary", models={"ranker": "ranker_b@canary"}))),))
    policy = OnlinePolicy(_Recommender(Labels([])), config)
    status = policy.status
    policy.close()
    assert status.version_of(ModelTarget("ranker", label="stable")) == 1
    assert status.version_of(ModelTarget("ranker_b", label="canary")) == 2
    assert status.version_of(ModelTarget("ranker")) == 2
    assert status.version_of(ModelTarget("ranker", version=7)) == 7  # Pinned: as asked.
    # A model only an arm routes to is read too, but its absence leaves the service ready.
    assert "ranker_b" in status.versions() and status.ready()
