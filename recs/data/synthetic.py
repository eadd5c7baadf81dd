"""Seeded synthetic streaming logs with a hidden ground truth that models can learn.

Every user and title has a latent taste vector; a user's taste starts from the centroids of
the genres they say they prefer, a title's from its genre. Which titles a user starts is drawn
from softmax(affinity / temperature + log popularity); how far they watch, whether they like or
skip it, follows the same affinity. Titles also differ in a hidden quality that
raises engagement for everyone. A model that recovers affinity and quality from ids, profile,
genre and description beats popularity, which is what the tests and benchmarks check.

Layout written by `generate()`:

    <out>/users.jsonl                       one profile per line
    <out>/titles.jsonl                      the content catalogue
    <out>/events/day=YYYY-MM-DD/part-00000.jsonl
                                            raw playback events of that day, one JSON per line

Memory is bounded by the catalogue and user tables; events stream to disk day by day.
"""

import dataclasses
import datetime as dt
import json
import math
import pathlib
from typing import Iterator, TextIO

import numpy as np

from recs import features as F
from recs.config import Config, require

GENRES = ("drama", "comedy", "action", "thriller", "documentary", "animation", "romance",
          "scifi", "horror", "family")
COUNTRIES = ("us", "gb", "de", "fr", "br", "in", "jp", "mx")
SUBSCRIPTION_TIERS = ("basic", "standard", "premium")
EVENT_TYPES = ("play_start", "play_stop", "like", "skip")

_GENRE_WORDS = {
    "drama": "family secret loss journey truth struggle legacy redemption",
    "comedy": "hilarious awkward wedding roommates prank chaos misfits laugh",
    "action": "explosive chase mission agent heist combat rescue vengeance",
    "thriller": "conspiracy suspect murder detective twist stalker hostage clue",
    "documentary": "nature history investigation archive planet science true untold",
    "animation": "animated magical talking kingdom quest creatures colorful adventure",
    "romance": "love affair heart summer letters soulmate passion reunion",
    "scifi": "space alien future robot galaxy time android colony",
    "horror": "haunted demon curse terror possessed cabin ghost nightmare",
    "family": "kids holiday puppy siblings camp school grandparents together",
}
_FILLER_WORDS = ("a", "the", "story", "of", "young", "woman", "man", "city", "world", "new",
                 "old", "night", "finds", "must", "when", "their", "small", "town", "life")
_LATENT_DIM = 8
_SECONDS_PER_DAY = 86_400
_DEVICE_EFFECT = {"tv": 0.4, "tablet": 0.0, "web": -0.1, "mobile": -0.4}


@dataclasses.dataclass(frozen=True)
class GeneratorConfig(Config):
    """Size, time span, behaviour and fault rates of a generated dataset.

    Attributes:
        num_users: users in the profile table.
        num_titles: titles in the catalogue.
        days: days of events, one folder each.
        sessions_per_user_day: mean sessions a user starts per day (Poisson, scaled by a
            per-user activity level).
        seed: the only source of randomness.
        start_date: ISO date of the first day.
        affinity_temperature: lower values make choices follow taste more sharply.
        malformed_rate: share of event lines replaced by broken JSON or broken fields.
        duplicate_rate: share of events written twice with the same event_id.
        drift_day: from this day on (0-based) tastes shift: every user's latent taste moves
            towards genres they did not declare (their profile stays as it was), and
            `drift_new_titles` titles launch with launch-week popularity. -1: no drift. The
            days before it are identical to a run without drift (same seed).
        drift_new_titles: titles launched on `drift_day`; they are in the catalogue file
            but nobody plays them before.
        drift_strength: share of each user's taste that moves at the shift, in [0, 1].
    """

    num_users: int = 2000
    num_titles: int = 400
    days: int = 7
    sessions_per_user_day: float = 0.6
    seed: int = 7
    start_date: str = "2026-01-05"
    affinity_temperature: float = 0.35
    malformed_rate: float = 0.002
    duplicate_rate: float = 0.002
    drift_day: int = -1
    drift_new_titles: int = 0
    drift_strength: float = 0.7

    def __post_init__(self) -> None:
        require(self.num_users > 0, "num_users", "> 0", self.num_users)
        require(self.num_titles > 0, "num_titles", "> 0", self.num_titles)
        require(self.days > 0, "days", "> 0", self.days)
        require(self.sessions_per_user_day > 0, "sessions_per_user_day", "> 0",
                 self.sessions_per_user_day)
        require(self.affinity_temperature > 0, "affinity_temperature", "> 0",
                 self.affinity_temperature)
        for name in ("malformed_rate", "duplicate_rate"):
            require(0.0 <= getattr(self, name) < 1.0, name, "in [0, 1)", getattr(self, name))
        require(-1 <= self.drift_day < self.days, "drift_day", f"-1 or in [0, {self.days})",
                self.drift_day)
        require(self.drift_new_titles >= 0, "drift_new_titles", ">= 0", self.drift_new_titles)
        require(0.0 <= self.drift_strength <= 1.0, "drift_strength", "in [0, 1]",
                self.drift_strength)
        try:
            dt.date.fromisoformat(self.start_date)
        except ValueError as error:
            raise ValueError(f"start_date must be an ISO date like 2026-01-05; received "
                             f"{self.start_date!r}.") from error


@dataclasses.dataclass(frozen=True)
class GeneratedData:
    """Where `generate()` wrote its files, and how many lines of each."""

    root: pathlib.Path
    users_path: pathlib.Path
    titles_path: pathlib.Path
    events_dir: pathlib.Path
    num_events: int
    num_malformed: int
    num_duplicates: int


class _World:
    """The hidden truth: latent tastes, catalogue and profiles."""

    def __init__(self, config: GeneratorConfig) -> None:
        rng = np.random.default_rng(config.seed)
        self.rng = rng
        centroids = rng.normal(size=(len(GENRES), _LATENT_DIM))
        self.centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
        self.temperature = config.affinity_temperature
        self.titles = self._make_titles(config.num_titles, rng)
        self.users = self._make_users(config, rng)
        self._choices()

    def _choices(self) -> None:
        title_vectors = np.stack([t["_latent"] for t in self.titles])
        user_vectors = np.stack([u["_latent"] for u in self.users])
        self.affinity = user_vectors @ title_vectors.T  # [num_users, num_titles]
        log_popularity = np.log([t[F.POPULARITY] for t in self.titles])
        logits = self.affinity / self.temperature + log_popularity
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        self.choice_cdf = np.cumsum(probabilities / probabilities.sum(axis=1, keepdims=True),
                                    axis=1)

    def launched_titles(self, config: GeneratorConfig) -> list[dict]:
        """The titles `shift` will launch: made up front so the catalogue file lists them."""
        if config.drift_new_titles == 0:
            return []
        rng = np.random.default_rng(config.seed + 2)  # Leaves the main stream untouched.
        launched = self._make_titles(config.drift_new_titles, rng, first=config.num_titles)
        for title in launched:  # Launch week: as watched as the catalogue's top tenth.
            title[F.POPULARITY] = round(float(2000.0 / rng.uniform(1, 10) ** 1.1), 4)
        return launched

    def shift(self, config: GeneratorConfig, launched: list[dict]) -> None:
        """Moves every user's taste towards genres they never declared; launches titles."""
        rng = np.random.default_rng(config.seed + 3)
        for user in self.users:
            declared = {GENRES.index(g) for g in user[F.PREFERRED_GENRES].split("|")}
            others = [i for i in range(len(GENRES)) if i not in declared]
            target = self.centroids[rng.choice(others, size=2, replace=False)].mean(axis=0)
            moved = ((1 - config.drift_strength) * user["_latent"]
                     + config.drift_strength * target / np.linalg.norm(target))
            user["_latent"] = moved / np.linalg.norm(moved)
        self.titles = self.titles + launched
        self._choices()

    def _make_titles(self, count: int, rng: np.random.Generator, first: int = 0
                     ) -> list[dict]:
        genre_weights = rng.dirichlet(np.full(len(GENRES), 3.0))
        ranks = rng.permutation(count) + 1
        titles = []
        for index in range(first, first + count):
            genre_index = int(rng.choice(len(GENRES), p=genre_weights))
            genre = GENRES[genre_index]
            latent = self.centroids[genre_index] + 0.6 * rng.normal(size=_LATENT_DIM)
            latent /= np.linalg.norm(latent)
            words = list(rng.choice(_GENRE_WORDS[genre].split(), size=4, replace=False))
            words += list(rng.choice(_FILLER_WORDS, size=int(rng.integers(4, 9))))
            rng.shuffle(words)
            is_movie = genre != "documentary" and rng.random() < 0.6
            titles.append({
                F.TITLE_ID: f"t{index:06d}",
                F.GENRE: genre,
                F.RELEASE_YEAR: int(2026 - min(45, rng.exponential(6.0))),
                # Zipf-like: plays per day fall off as rank ** -1.1.
                F.POPULARITY: round(float(2000.0 / ranks[index - first] ** 1.1), 4),
                F.DESCRIPTION: " ".join(words),
                F.DURATION_SECONDS: int(rng.normal(6300, 900) if is_movie
                                        else rng.normal(2700, 400)),
                "_latent": latent,
                # Some titles are simply better made: they hold every audience longer.
                "_quality": float(rng.normal(0.0, 0.8)),
            })
        return titles

    def _make_users(self, config: GeneratorConfig, rng: np.random.Generator) -> list[dict]:
        users = []
        for index in range(config.num_users):
            liked = rng.choice(len(GENRES), size=int(rng.integers(1, 4)), replace=False)
            latent = self.centroids[liked].mean(axis=0) + 0.5 * rng.normal(size=_LATENT_DIM)
            latent /= np.linalg.norm(latent)
            age = int(np.clip(rng.normal(36, 13), 16, 80))
            mobile_share = float(np.clip(1.2 - age / 50.0, 0.05, 0.9))
            devices = np.array([1.0 - mobile_share, mobile_share * 0.7, mobile_share * 0.3, 0.25])
            users.append({
                F.USER_ID: f"u{index:06d}",
                F.AGE: age,
                F.COUNTRY: str(rng.choice(COUNTRIES, p=_normalized(
                    [0.35, 0.1, 0.1, 0.08, 0.12, 0.12, 0.06, 0.07]))),
                F.SUBSCRIPTION_TIER: str(rng.choice(SUBSCRIPTION_TIERS, p=[0.45, 0.35, 0.2])),
                F.PREFERRED_GENRES: "|".join(GENRES[i] for i in liked),
                "_latent": latent,
                "_activity": float(rng.lognormal(0.0, 0.6)),
                "_devices": _normalized(devices),
                "_evening_hour": float(rng.normal(20.5, 1.5)),
            })
        return users


def _normalized(weights: list[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(weights, dtype=float)
    return array / array.sum()


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _sessions_of_day(world: _World, config: GeneratorConfig, day_start: int
                     ) -> Iterator[dict[str, object]]:
    """Yields one day's events, user by user, each user's in time order."""
    rng = world.rng
    for user_index, user in enumerate(world.users):
        sessions = rng.poisson(config.sessions_per_user_day * user["_activity"])
        for _ in range(sessions):
            hour = float(np.clip(rng.normal(user["_evening_hour"], 2.5), 0, 23.9))
            clock = day_start + int(hour * 3600 + rng.integers(0, 3600)) % _SECONDS_PER_DAY
            device = str(rng.choice(F.DEVICE_TYPES, p=user["_devices"]))
            for _ in range(int(rng.integers(1, 4))):
                title_index = int(np.searchsorted(world.choice_cdf[user_index], rng.random()))
                title_index = min(title_index, len(world.titles) - 1)
                title = world.titles[title_index]
                affinity = world.affinity[user_index, title_index]
                # Observable parts of the truth: a preferred genre and a big screen help.
                genre_match = title[F.GENRE] in user[F.PREFERRED_GENRES].split("|")
                logit = (4.0 * affinity - 1.0 + 1.2 * genre_match + _DEVICE_EFFECT[device]
                         + title["_quality"])
                engaged = rng.random() < _sigmoid(logit)
                ratio = rng.beta(6, 2) if engaged else rng.beta(0.6, 5)
                watched = round(float(ratio * title[F.DURATION_SECONDS]), 1)
                base = {F.USER_ID: user[F.USER_ID], F.TITLE_ID: title[F.TITLE_ID],
                        F.DEVICE_TYPE: device}
                yield {**base, "event_type": "play_start", "ts": clock, "position_seconds": 0.0}
                if ratio < 0.05:
                    yield {**base, "event_type": "skip", "ts": clock + int(watched) + 1,
                           "position_seconds": watched}
                clock += int(watched) + 2
                yield {**base, "event_type": "play_stop", "ts": clock,
                       "position_seconds": watched, "watch_seconds": watched}
                if engaged and rng.random() < 0.6 * ratio:
                    yield {**base, "event_type": "like", "ts": clock + 5}
                clock += int(rng.integers(30, 300))


def _corrupt(event: dict[str, object], rng: np.random.Generator) -> str:
    """Returns a broken rendering of `event`: the faults ingestion must dead-letter."""
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return json.dumps(event)[:-7]  # Truncated JSON.
    if kind == 1:
        return json.dumps({k: v for k, v in event.items() if k != F.USER_ID})
    if kind == 2:
        return json.dumps({**event, "ts": "yesterday"})
    return json.dumps({**event, "event_type": "play_stop", "watch_seconds": -30.0})


def _write_jsonl(path: pathlib.Path, rows: list[dict]) -> None:
    with path.open("w") as handle:
        for row in rows:
            handle.write(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}))
            handle.write("\n")


def generate(config: GeneratorConfig, out_dir: str | pathlib.Path) -> GeneratedData:
    """Writes users, titles and `config.days` days of raw events under `out_dir`.

    Args:
        config: sizes, seed and fault rates.
        out_dir: created if missing; existing files of the same names are overwritten.

    Returns:
        The paths written and the counts of events, malformed lines and duplicates.
    """
    root = pathlib.Path(out_dir)
    events_dir = root / "events"
    events_dir.mkdir(parents=True, exist_ok=True)
    world = _World(config)
    launched = world.launched_titles(config)
    _write_jsonl(root / "users.jsonl", world.users)
    _write_jsonl(root / "titles.jsonl", world.titles + launched)

    fault_rng = np.random.default_rng(config.seed + 1)
    first_day = dt.date.fromisoformat(config.start_date)
    counts = {"events": 0, "malformed": 0, "duplicates": 0}
    for day in range(config.days):
        if day == config.drift_day:
            world.shift(config, launched)
        date = first_day + dt.timedelta(days=day)
        day_start = int(dt.datetime(date.year, date.month, date.day,
                                    tzinfo=dt.timezone.utc).timestamp())
        day_dir = events_dir / f"day={date.isoformat()}"
        day_dir.mkdir(exist_ok=True)
        with (day_dir / "part-00000.jsonl").open("w") as handle:
            _write_day(world, config, day_start, f"{date:%Y%m%d}", handle, fault_rng, counts)
    return GeneratedData(root=root, users_path=root / "users.jsonl",
                         titles_path=root / "titles.jsonl", events_dir=events_dir,
                         num_events=counts["events"], num_malformed=counts["malformed"],
                         num_duplicates=counts["duplicates"])


def _write_day(world: _World, config: GeneratorConfig, day_start: int, day_tag: str,
               handle: TextIO, fault_rng: np.random.Generator, counts: dict[str, int]) -> None:
    for sequence, event in enumerate(_sessions_of_day(world, config, day_start)):
        event = {"event_id": f"e{day_tag}-{sequence:09d}", **event}
        draw = fault_rng.random()
        if draw < config.malformed_rate:
            line = _corrupt(event, fault_rng)
            counts["malformed"] += 1
        else:
            line = json.dumps(event)
            if draw < config.malformed_rate + config.duplicate_rate:
                handle.write(line + "\n")
                counts["duplicates"] += 1
        handle.write(line + "\n")
        counts["events"] += 1
