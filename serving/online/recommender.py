"""Profile -> retrieve -> rank: the ranked candidates of one request, from the served models.

One model call, where the server has the recommender model (`recs.recommend`):
    profile store -> query features + excluded titles (finished, taken down)
                  -> recommender `recommend` (retrieve, exclude, rank in-graph)
                  -> fresh titles above the retrieval cut ranked from their features, merged
Two model calls otherwise (any TF Serving with the retrieval model and the ranker):
    profile store -> query features -> retrieval model (top candidates, query embedding)
                  -> merge fresh titles (exact side index) -> drop finished and taken-down
                  titles -> ranker over the candidates' raw features, by probability

The list a user sees is made from these by the list policy (`serving.online.list_policy`).

A request's `serving.online.experiments.Route` (an A/B arm's) may send each call to another
served model, version or version label; routing the retrieval model or the ranker but not the
recommender takes the two calls, as the one-call model bundles the service's own.
"""

import dataclasses
import logging
import time

import numpy as np

from recs.contract import features as F
from recs.contract.models import (CATALOGUE_ASSET, RANKER, RECOMMENDER, RETRIEVAL, asset_path,
                                  newest_version_dir)
from recs.contract.signatures import (EXCLUDED_TITLE_IDS, PROBABILITY, QUERY_EMBEDDING_OUTPUT,
                                      RECOMMEND, RETRIEVAL_SCORE, SCORES, TITLE_IDS)
from recs.data.catalogue import read_jsonl
from recs.types import JsonDict
from serving.clients.base import ModelServerError
from serving.config import MAX_K
from serving.online.experiments import ModelTarget, Route
from serving.online.fresh import merge_top_k
from serving.types import (RANKER_ROLE, RECOMMENDER_ROLE, RETRIEVAL_ROLE, CandidateSource,
                           PredictClient, ProfileStore, StoreUnavailableError)

_ONE_CALL_UNUSABLE = (404, "NOT_FOUND", 400, "INVALID_ARGUMENT")
"""How a model server says the recommender model cannot answer this service (REST, gRPC):
it serves no such model, or the version it serves has other signatures or inputs (a pushed
recommender whose signatures differ). The service sends only valid requests, so a refusal is
the model's: the two calls answer instead."""
_RECOMMENDER_RETRY_S = 30.0
"""After the recommender model refused the one call, how long the two-call path is used."""
_LOG = logging.getLogger("recs.service")


class UnknownUserError(ValueError):
    """The user id is not in the profile store."""


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """One recommended title: the ranker's engagement probability and the retrieval score."""

    title_id: str
    score: float | None
    """P(engaged) from the ranker; None for a popularity fallback."""
    retrieval_score: float | None
    genre: str
    propensity: float = 1.0
    """Probability the policy had of showing this title in this slot (for off-policy
    evaluation); below 1 only when exploration was on."""
    explored: bool = False


@dataclasses.dataclass
class ServedList:
    """One answer with what produced it: model versions, per-stage milliseconds, how many
    candidates reached the ranker, and the target each role's call went to."""

    items: list[Recommendation]
    """The ranked candidates, best first: all of them, or the best `limit` when the caller
    asked for no more (`Recommender.ranked`)."""
    versions: dict[str, int | None]
    stage_ms: dict[str, float]
    candidates: int
    """How many candidates were ranked."""
    routes: dict[str, ModelTarget] = dataclasses.field(default_factory=dict)
    """{role: target called, name filled in} for the roles whose model was called."""


def load_catalogue(serving_base_dir: str, retrieval_model: str) -> dict[str, JsonDict]:
    """Reads the catalogue snapshot stored with the newest version of the retrieval model.

    Raises:
        FileNotFoundError: no version of `retrieval_model` has been pushed.
    """
    return load_catalogue_file(asset_path(newest_version_dir(serving_base_dir, retrieval_model),
                                          CATALOGUE_ASSET))


def load_catalogue_file(path: str) -> dict[str, JsonDict]:
    """Reads a catalogue snapshot (JSON lines) as title_id -> row.

    Raises:
        OSError: the file cannot be read.
        ValueError: a line is not a JSON object.
    """
    return {row[F.TITLE_ID]: row for row in read_jsonl(path)}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Recommender:
    """Builds recommendation lists from a model server, the profile store and the catalogue.

    Args:
        client: a REST or gRPC client of TF Serving's API.
        store: profiles and finished titles.
        catalogue: title_id -> catalogue row (the raw candidate features).
        retrieval_model: served name of the retrieval model.
        ranker_model: served name of the ranker.
        fresh: titles published since the index was built, and titles taken down.
        retrieval_client: the server of the retrieval model when it is not `client`'s, e.g.
            a ScaNN-capable server beside a stock TF Serving that serves the ranker; the
            recommender model is asked there too.
        recommender_model: served name of the one-call recommender (`recommender` with
            ScaNN, `recommender_exact` on stock TF Serving); "" always makes two calls. A
            server without it answers NOT_FOUND, and the two calls are used for a while.
    """

    def __init__(self, client: PredictClient, store: ProfileStore,
                 catalogue: dict[str, JsonDict], retrieval_model: str = RETRIEVAL,
                 ranker_model: str = RANKER, fresh: CandidateSource | None = None,
                 retrieval_client: PredictClient | None = None,
                 recommender_model: str = RECOMMENDER) -> None:
        self.client = client
        self.retrieval_client = retrieval_client or client
        self.recommender_model = recommender_model
        # Per recommender target: a route's label the server lacks must not turn the
        # service's own one-call model off.
        self._one_call_retry_at: dict[ModelTarget, float] = {}
        self.one_call_refusals: dict[ModelTarget, str] = {}
        """{recommender target: its last refusal}, while the two calls stand in for it."""
        self.store = store
        self.retrieval_model = retrieval_model
        self.ranker_model = ranker_model
        self.fresh = fresh
        self.replace_catalogue(catalogue)

    def replace_catalogue(self, catalogue: dict[str, JsonDict]) -> None:
        """Serves `catalogue` from now on (a new retrieval version's snapshot); requests
        already running finish with the old one."""
        by_popularity = sorted(catalogue.values(),
                               key=lambda row: (-float(row[F.POPULARITY]), row[F.TITLE_ID]))
        self.catalogue, self._by_popularity = catalogue, by_popularity
        self._genres = {title: str(row[F.GENRE]) for title, row in catalogue.items()}

    def _title_row(self, title: str) -> JsonDict | None:
        row = self.fresh.row(title) if self.fresh is not None else None
        return row if row is not None else self.catalogue.get(title)

    def _candidates(self, retrieved: dict[str, np.ndarray]) -> list[tuple[str, float]]:
        indexed = [(_text(title), float(score))
                   for title, score in zip(retrieved[TITLE_IDS][0], retrieved[SCORES][0])]
        if self.fresh is None:
            return indexed
        fresh = self.fresh.search(retrieved[QUERY_EMBEDDING_OUTPUT][0], len(indexed))
        return merge_top_k(indexed, fresh, len(indexed), exclude=self.fresh.taken_down)

    def _query(self, user_id: str, device_type: str, hour: int,
               profile: JsonDict | None = None) -> dict[str, list]:
        if not 0 <= hour < F.HOURS_PER_DAY:
            raise ValueError(f"hour must be between 0 and 23; received {hour}.")
        profile = self.store.profile(user_id) or profile
        if profile is None:
            raise UnknownUserError(f"unknown user_id {user_id!r}: no profile in the store; "
                                   "a user who just signed up can send their profile with "
                                   "the request.")
        return {F.USER_ID: [user_id], F.AGE: [int(profile[F.AGE])],
                F.COUNTRY: [profile[F.COUNTRY]],
                F.SUBSCRIPTION_TIER: [profile[F.SUBSCRIPTION_TIER]],
                F.PREFERRED_GENRES: [profile[F.PREFERRED_GENRES]],
                F.HISTORY: ["|".join(self.store.history(user_id))],
                F.DEVICE_TYPE: [device_type], F.HOUR: [hour]}

    def retrieve(self, user_id: str, device_type: str = "tv", hour: int = 20
                 ) -> list[tuple[str, float]]:
        """Returns the retrieval stage's (title_id, score) candidates, best first.

        Indexed and fresh titles are merged by score; taken-down titles are left out. Finished
        titles are still in (the ranking stage drops them).

        Raises:
            ValueError: `hour` out of range.
            UnknownUserError: `user_id` has no profile.
        """
        return self._candidates(self.retrieval_client.predict(
            self.retrieval_model, self._query(user_id, device_type, hour)))

    def recommend(self, user_id: str, k: int = 10, device_type: str = "tv", hour: int = 20
                  ) -> list[Recommendation]:
        """Returns up to `k` unfinished titles for `user_id`, best first (the ranker's
        order; the service's list policy may re-rank and explore: `serving.online.policy`).

        Raises:
            ValueError: `k` or `hour` out of range.
            UnknownUserError: `user_id` has no profile.
            ModelServerError: the model server failed or timed out.
        """
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}; received {k}.")
        return self.ranked(user_id, device_type, hour, limit=k).items

    def ranked(self, user_id: str, device_type: str = "tv", hour: int = 20,
               timeout: float | None = None, profile: JsonDict | None = None,
               route: Route = Route(), limit: int | None = None) -> ServedList:
        """Every ranked candidate for `user_id`, best first, with model versions, stage
        timings and the target each call went to.

        Args:
            timeout: seconds for both model calls together; None uses the client's own.
            profile: profile fields for a user the store does not know yet (cold start:
                the query tower then works from profile and context alone); the store's
                profile wins when there is one.
            route: the model target of each role (an A/B arm's); by default this
                recommender's models at their newest version. A route that changes the
                retrieval model or the ranker and not the recommender takes the two calls.
            limit: keep only the best `limit` candidates (a list without re-ranking or
                exploration needs no more); None keeps every one.

        Raises:
            ValueError: `hour` out of range.
            UnknownUserError: `user_id` has no profile.
            ModelServerError: the model server failed, or the budget ran out
                (status DEADLINE_EXCEEDED).
        """
        started = time.perf_counter()
        deadline = None if timeout is None else started + timeout
        query = self._query(user_id, device_type, hour, profile)
        finished = self.store.finished(user_id)
        stage_ms = {"profile": 1000.0 * (time.perf_counter() - started)}
        targets = self._targets(route)
        one_call = targets[RECOMMENDER_ROLE]
        if route.bundle_usable and self._one_call_usable(one_call):
            try:
                items, versions, routes, ranked = self._one_call(query, finished, deadline,
                                                                 stage_ms, targets, limit)
                self.one_call_refusals.pop(one_call, None)
            except ModelServerError as error:
                if error.status not in _ONE_CALL_UNUSABLE:
                    raise
                # No such recommender model, or one this service cannot call: two calls, and
                # ask again later.
                self._one_call_retry_at[one_call] = time.monotonic() + _RECOMMENDER_RETRY_S
                if self.one_call_refusals.get(one_call) != error.message:
                    _LOG.warning("recommender %s refused the one call (%s: %s); answering with "
                                 "retrieval and the ranker, asking again in %.0f s", one_call,
                                 error.status, error.message[:300], _RECOMMENDER_RETRY_S)
                self.one_call_refusals[one_call] = error.message
                items, versions, routes, ranked = self._two_calls(query, finished, deadline,
                                                                  stage_ms, targets)
        else:
            items, versions, routes, ranked = self._two_calls(query, finished, deadline,
                                                              stage_ms, targets)
        return ServedList(items[:limit], versions, stage_ms, ranked, routes)

    def _targets(self, route: Route) -> dict[str, ModelTarget]:
        """{role: target} of `route`, this recommender's model names for the unnamed ones."""
        return {RETRIEVAL_ROLE: route.retrieval.resolved(self.retrieval_model),
                RANKER_ROLE: route.ranker.resolved(self.ranker_model),
                RECOMMENDER_ROLE: route.recommender.resolved(self.recommender_model)}

    def _one_call_usable(self, target: ModelTarget) -> bool:
        return bool(target.name) and time.monotonic() >= self._one_call_retry_at.get(target,
                                                                                   0.0)

    def _one_call(self, query: dict[str, list], finished: set[str], deadline: float | None,
                  stage_ms: dict[str, float], targets: dict[str, ModelTarget],
                  limit: int | None) -> tuple[list["Recommendation"], dict[str, int | None],
                                              dict[str, ModelTarget], int]:
        """The recommender's `recommend` signature: retrieval, exclusion and ranking in one
        model call. Fresh titles, which its catalogue table lacks, are scored with the
        ranker's raw-feature signature and merged by probability.

        Returns:
            The ranked items (the best `limit` at least, when there are no fresh titles),
            {model: version}, {role: target} of the calls made, and how many were ranked.
        """
        mark = time.perf_counter()
        taken_down = self.fresh.taken_down if self.fresh is not None else frozenset()
        # An empty list has no dtype in TF Serving's JSON: an empty id (never a title's)
        # stands for "nothing to exclude".
        excluded = sorted(finished | taken_down) or [""]
        target = targets[RECOMMENDER_ROLE]
        served, version = self.retrieval_client.predict_versioned(
            target.name, {**query, EXCLUDED_TITLE_IDS: excluded}, signature=RECOMMEND,
            timeout=_remaining(deadline), version=target.version, label=target.label)
        routes = {RECOMMENDER_ROLE: target}
        has_fresh = self.fresh is not None and len(self.fresh) > 0
        # Only the candidates the list can show become objects: fresh titles compete with
        # every retrieved one, so then all of them.
        items = self._items(served, None if has_fresh else limit)
        ranked = len(served[TITLE_IDS])
        versions: dict[str, int | None] = {target.name: version}
        stage_ms["recommend"] = 1000.0 * (time.perf_counter() - mark)
        fresh = self._fresh_candidates(served[QUERY_EMBEDDING_OUTPUT][0], items, finished)
        if fresh:
            # The candidates are the best retrieval scores of indexed and fresh titles
            # together, as in the two-call path's merge: fresh ones push the lowest out.
            mark = time.perf_counter()
            scored = sorted([(item.retrieval_score, False, item) for item in items]
                            + [(score, True, (title, score, row)) for title, score, row in fresh],
                            key=lambda entry: -entry[0])[:len(items) or len(fresh)]
            kept = [entry[2] for entry in scored if not entry[1]]
            ranker = targets[RANKER_ROLE]
            routes[RANKER_ROLE] = ranker
            ranked_fresh, versions[ranker.name] = self._rank_rows(
                query, [entry[2] for entry in scored if entry[1]], deadline, ranker)
            items = sorted(kept + ranked_fresh, key=lambda item: -(item.score or 0.0))
            ranked = len(items)
            stage_ms["ranking"] = 1000.0 * (time.perf_counter() - mark)
        return items, versions, routes, ranked

    def _items(self, served: dict[str, np.ndarray], limit: int | None
               ) -> list["Recommendation"]:
        """The recommender's answer as items, best first, up to `limit`; titles the
        catalogue does not know are left out."""
        items = []
        # A fresh title's row wins over the catalogue's (`_title_row`).
        genres = self._genres if self.fresh is None or not len(self.fresh) else {}
        for title, probability, score in zip(served[TITLE_IDS].tolist(),
                                             served[PROBABILITY].tolist(),
                                             served[RETRIEVAL_SCORE].tolist()):
            title = _text(title)
            genre = genres.get(title)
            if genre is None:
                row = self._title_row(title)
                if row is None:
                    continue
                genre = str(row[F.GENRE])
            items.append(Recommendation(title, probability, score, genre))
            if len(items) == limit:
                break
        return items

    def _fresh_candidates(self, query_embedding: np.ndarray, items: list["Recommendation"],
                          finished: set[str]) -> list[tuple[str, float, JsonDict]]:
        """Fresh titles that would make the retrieval cut: scored at or above the lowest
        retrieved candidate (or any, when nothing was retrieved)."""
        if self.fresh is None or not len(self.fresh):
            return []
        floor = min((item.retrieval_score for item in items), default=-np.inf)
        taken_down = self.fresh.taken_down
        found = []
        for title, score in self.fresh.search(query_embedding, max(1, len(items))):
            row = self.fresh.row(title)
            if (score >= floor and title not in finished and title not in taken_down
                    and row is not None):
                found.append((title, score, row))
        return found

    def _rank_rows(self, query: dict[str, list], candidates: list[tuple[str, float, JsonDict]],
                   deadline: float | None, ranker: ModelTarget
                   ) -> tuple[list["Recommendation"], int | None]:
        """Ranks candidates from their raw features with the `ranker` target's
        `serving_default`."""
        rows = [row for _, _, row in candidates]
        batch = {key: np.repeat(values, len(rows)).tolist() for key, values in query.items()}
        for key in F.CANDIDATE_FEATURES:
            batch[key] = [row[key] for row in rows]
        ranked, version = self.client.predict_versioned(
            ranker.name, batch, timeout=_remaining(deadline), version=ranker.version,
            label=ranker.label)
        return [Recommendation(title, float(probability), score, str(row[F.GENRE]))
                for (title, score, row), probability in zip(candidates, ranked[PROBABILITY])
                ], version

    def _two_calls(self, query: dict[str, list], finished: set[str], deadline: float | None,
                   stage_ms: dict[str, float], targets: dict[str, ModelTarget]
                   ) -> tuple[list["Recommendation"], dict[str, int | None],
                              dict[str, ModelTarget], int]:
        """Retrieval, then the ranker over the candidates' raw features: any TF Serving.

        Returns:
            As `_one_call`, every candidate ranked.
        """
        mark = time.perf_counter()
        retrieval, ranker = targets[RETRIEVAL_ROLE], targets[RANKER_ROLE]
        retrieved, retrieval_version = self.retrieval_client.predict_versioned(
            retrieval.name, query, timeout=_remaining(deadline), version=retrieval.version,
            label=retrieval.label)
        routes = {RETRIEVAL_ROLE: retrieval}
        candidates = [(title, score, self._title_row(title))
                      for title, score in self._candidates(retrieved) if title not in finished]
        candidates = [(title, score, row) for title, score, row in candidates if row is not None]
        stage_ms["retrieval"] = 1000.0 * (time.perf_counter() - mark)
        versions = {retrieval.name: retrieval_version, ranker.name: None}
        if not candidates:
            return [], versions, routes, 0
        mark = time.perf_counter()
        routes[RANKER_ROLE] = ranker
        ranked, versions[ranker.name] = self._rank_rows(query, candidates, deadline, ranker)
        stage_ms["ranking"] = 1000.0 * (time.perf_counter() - mark)
        return (sorted(ranked, key=lambda item: -(item.score or 0.0)), versions, routes,
                len(ranked))

    def least_popular(self, user_id: str, k: int) -> list[Recommendation]:
        """The `k` least popular titles the user has not finished, least popular first (an
        arm's planted tail slots: `serving.online.list_policy`)."""
        finished = self._finished_if_known(user_id)
        taken_down = self.fresh.taken_down if self.fresh is not None else frozenset()
        items = []
        for row in reversed(self._by_popularity):
            if row[F.TITLE_ID] not in finished and row[F.TITLE_ID] not in taken_down:
                items.append(Recommendation(row[F.TITLE_ID], None, None, str(row[F.GENRE])))
                if len(items) == k:
                    break
        return items

    def _finished_if_known(self, user_id: str) -> set[str]:
        """The user's finished titles, or none while the store cannot answer (a fallback
        list must not fail for want of them)."""
        try:
            return self.store.finished(user_id)
        except StoreUnavailableError:
            return set()

    def popular(self, user_id: str, k: int = 10, exclude_finished: bool = True) -> ServedList:
        """The fallback list: the most popular titles the user has not finished (no model
        calls). Unknown users get the plain popularity order, and so does everyone while the
        profile store cannot answer, or when `exclude_finished` is False (the store is known
        to be away: not asked)."""
        started = time.perf_counter()
        finished = self._finished_if_known(user_id) if exclude_finished else set()
        taken_down = self.fresh.taken_down if self.fresh is not None else set()
        items = []
        for row in self._by_popularity:
            if row[F.TITLE_ID] in finished or row[F.TITLE_ID] in taken_down:
                continue
            items.append(Recommendation(title_id=row[F.TITLE_ID], score=None,
                                        retrieval_score=None, genre=str(row[F.GENRE])))
            if len(items) == k:
                break
        return ServedList(items, {}, {"profile": 1000.0 * (time.perf_counter() - started)}, 0)


def _remaining(deadline: float | None) -> float | None:
    """Seconds left before `deadline`; raises DEADLINE_EXCEEDED once it has passed."""
    if deadline is None:
        return None
    left = deadline - time.perf_counter()
    if left <= 0:
        raise ModelServerError("DEADLINE_EXCEEDED", "the model budget ran out before the call")
    return left
