"""Seeded synthetic streaming logs with a hidden ground truth that models can learn.

Every user and title has a latent taste vector; a user's taste starts from the centroids of
the genres they say they prefer, a title's from its genre. Which titles a user starts is drawn
from softmax(affinity / temperature + log popularity); how far they watch, whether they like or
skip it, follows the same affinity. Titles also differ in a hidden quality that raises
engagement for everyone, and newer titles are more popular. A model that recovers affinity and
quality from ids, profile, genre and description beats popularity, which is what the tests and
benchmarks check.

Behaviour: sessions in each user's evening hours (more at weekends), devices by age, binge
sessions (a per-user number of titles per session), skips early in a title, likes that follow
completion, and churn-prone users whose activity decays day by day.

Faults, each at its own configurable rate and counted in `GeneratedData.faults`: malformed JSON
or fields, negative and implausibly long watch times, duplicate event ids, events delivered a
day late, device clocks days off, unknown user and title ids, and bot accounts that send
hundreds of events an hour. Lines within a file are in no time order.

Layout written by `generate()` (a raw folder, `recs.contract.layout.RawLayout`):

    <out>/users.jsonl                       profiles as of the first day, one per line
    <out>/titles.jsonl                      the content catalogue
    <out>/profile_updates/day=YYYY-MM-DD/part-00000.jsonl
                                            profiles that changed that day (tier, genres)
    <out>/events/day=YYYY-MM-DD/part-NNNNN.jsonl
                                            raw playback events delivered that day

It streams: users are simulated in blocks and events go to disk as they are made, so memory is
bounded by the user and title tables (about 100 bytes a user), never by the number of events.
Each (day, block) has its own random stream, so a day's events do not depend on earlier days.
"""

import dataclasses
import datetime as dt
import json
import pathlib
from typing import Iterator, TextIO

import numpy as np

from recs.contract import features as F
from recs.contract.events import EVENT_TYPE, LIKE, PLAY_START, PLAY_STOP, SKIP
from recs.contract.layout import RawLayout, part_file
from recs.contract.rows import UPDATED_TS
from recs.config import Config, require

GENRES = ("drama", "comedy", "action", "thriller", "documentary", "animation", "romance",
          "scifi", "horror", "family")
COUNTRIES = ("us", "gb", "de", "fr", "br", "in", "jp", "mx")
SUBSCRIPTION_TIERS = ("basic", "standard", "premium")

# Fault kinds, as counted in `GeneratedData.faults` (events affected).
MALFORMED = "malformed"
DUPLICATE = "duplicate"
LATE = "late"
CLOCK_SKEW = "clock_skew"
UNKNOWN_USER = "unknown_user"
UNKNOWN_TITLE = "unknown_title"
OVERLONG_WATCH = "overlong_watch"
BOT = "bot"

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
# Effect of the device on engagement, in F.DEVICE_TYPES order (tv, mobile, tablet, web).
_DEVICE_EFFECT = np.array([0.4, -0.4, 0.0, -0.1])
_COUNTRY_WEIGHTS = (0.35, 0.1, 0.1, 0.08, 0.12, 0.12, 0.06, 0.07)
# Rejection sampling draws this many popularity proposals per pending play and round.
_PROPOSALS = 16
# Users simulated together: bounds the [block, proposals, latent] arrays.
_USER_BLOCK = 4096


@dataclasses.dataclass(frozen=True)
class GeneratorConfig(Config):
    """Size, time span, behaviour and fault rates of a generated dataset.

    Attributes:
        num_users: users in the profile table.
        num_titles: titles in the catalogue.
        days: days of events, one folder each.
        sessions_per_user_day: mean sessions a user starts per day (Poisson, scaled by a
            per-user activity level, weekends and churn).
        seed: the only source of randomness.
        start_date: ISO date of the first day.
        affinity_temperature: lower values make choices follow taste more sharply.
        churn_share: share of users whose activity decays (by 10-40% a day).
        profile_change_rate: share of users whose profile changes on a given day.
        malformed_rate: share of event lines replaced by broken JSON or broken fields.
        duplicate_rate: share of events written twice with the same event_id.
        late_rate: share of events delivered in the next day's files (time stamp unchanged).
        clock_skew_rate: share of events whose device clock is 2-30 days off.
        unknown_id_rate: share of sessions sent with a user id, and of plays with a title id,
            that the profile table or catalogue does not know.
        overlong_watch_rate: share of plays whose stop reports 5-50x the title's duration.
        bot_share: share of accounts that are bots: on one day each sends 400-1,200 events
            within one clock hour.
        events_per_file: lines per event file before the next part starts.
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
    churn_share: float = 0.15
    profile_change_rate: float = 0.005
    malformed_rate: float = 0.002
    duplicate_rate: float = 0.002
    late_rate: float = 0.002
    clock_skew_rate: float = 0.0005
    unknown_id_rate: float = 0.001
    overlong_watch_rate: float = 0.001
    bot_share: float = 0.0005
    events_per_file: int = 1_000_000
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
        for name in ("churn_share", "profile_change_rate", "malformed_rate", "duplicate_rate",
                     "late_rate", "clock_skew_rate", "unknown_id_rate", "overlong_watch_rate",
                     "bot_share"):
            require(0.0 <= getattr(self, name) < 1.0, name, "in [0, 1)", getattr(self, name))
        require(self.events_per_file > 0, "events_per_file", "> 0", self.events_per_file)
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
    """Where `generate()` wrote its files, and how many lines of each.

    Attributes:
        num_events: distinct events generated (each written once, or twice if duplicated).
        num_malformed: lines written broken.
        num_duplicates: events written a second time.
        faults: events affected per fault kind (`MALFORMED`, `DUPLICATE`, `LATE`, ...).
    """

    root: pathlib.Path
    users_path: pathlib.Path
    titles_path: pathlib.Path
    events_dir: pathlib.Path
    profile_updates_dir: pathlib.Path
    num_events: int
    num_malformed: int
    num_duplicates: int
    faults: dict[str, int]

    @property
    def lines_written(self) -> int:
        return self.num_events + self.num_duplicates


class _Titles:
    """The catalogue as columns: public fields for the file, hidden truth for behaviour."""

    def __init__(self, rows: list[dict], latent: np.ndarray, quality: np.ndarray) -> None:
        self.rows = rows
        self.latent = latent                       # [num_titles, latent_dim]
        self.quality = quality                     # [num_titles]
        self.genre = np.array([GENRES.index(r[F.GENRE]) for r in rows])
        self.duration = np.array([r[F.DURATION_SECONDS] for r in rows], dtype=float)
        popularity = np.array([r[F.POPULARITY] for r in rows])
        self.proposal_cdf = np.cumsum(popularity / popularity.sum())

    def __len__(self) -> int:
        return len(self.rows)

    def extended(self, other: "_Titles") -> "_Titles":
        return _Titles(self.rows + other.rows, np.concatenate([self.latent, other.latent]),
                       np.concatenate([self.quality, other.quality]))


class World:
    """The hidden truth: latent tastes, catalogue and profiles, as arrays."""

    def __init__(self, config: GeneratorConfig) -> None:
        rng = np.random.default_rng(config.seed)
        centroids = rng.normal(size=(len(GENRES), _LATENT_DIM))
        self.centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
        self.temperature = config.affinity_temperature
        self.titles = self._make_titles(config.num_titles, rng)
        self._make_users(config, rng)

    def _make_titles(self, count: int, rng: np.random.Generator, first: int = 0) -> _Titles:
        genre_weights = rng.dirichlet(np.full(len(GENRES), 3.0))
        genres = rng.choice(len(GENRES), size=count, p=genre_weights)
        latent = self.centroids[genres] + 0.6 * rng.normal(size=(count, _LATENT_DIM))
        latent /= np.linalg.norm(latent, axis=1, keepdims=True)
        age_years = np.minimum(45.0, rng.exponential(6.0, size=count))
        # Zipf-like plays per day (rank ** -1.1), and recent releases are watched more.
        ranks = rng.permutation(count) + 1
        popularity = 2000.0 / ranks ** 1.1 * (1.0 + 2.0 * np.exp(-age_years / 2.0))
        is_movie = (genres != GENRES.index("documentary")) & (rng.random(count) < 0.6)
        duration = np.where(is_movie, rng.normal(6300, 900, count), rng.normal(2700, 400, count))
        rows = []
        for index in range(count):
            genre = GENRES[genres[index]]
            words = list(rng.choice(_GENRE_WORDS[genre].split(), size=4, replace=False))
            words += list(rng.choice(_FILLER_WORDS, size=int(rng.integers(4, 9))))
            rng.shuffle(words)
            rows.append({
                F.TITLE_ID: f"t{first + index:06d}",
                F.GENRE: genre,
                F.RELEASE_YEAR: int(2026 - age_years[index]),
                F.POPULARITY: round(float(popularity[index]), 4),
                F.DESCRIPTION: " ".join(words),
                F.DURATION_SECONDS: int(max(300, duration[index])),
            })
        # Some titles are simply better made: they hold every audience longer.
        return _Titles(rows, latent, rng.normal(0.0, 0.8, size=count))

    def _make_users(self, config: GeneratorConfig, rng: np.random.Generator) -> None:
        n = config.num_users
        declared = np.zeros((n, len(GENRES)), dtype=bool)
        counts = rng.integers(1, 4, size=n)
        for size in (1, 2, 3):
            rows = np.flatnonzero(counts == size)
            picks = np.argsort(rng.random((len(rows), len(GENRES))), axis=1)[:, :size]
            declared[rows[:, None], picks] = True
        latent = (declared @ self.centroids) / counts[:, None]
        latent += 0.5 * rng.normal(size=(n, _LATENT_DIM))
        self.user_latent = latent / np.linalg.norm(latent, axis=1, keepdims=True)
        self.declared = declared                                        # [users, genres]
        self.age = np.clip(rng.normal(36, 13, size=n), 16, 80).astype(int)
        self.country = rng.choice(len(COUNTRIES), size=n, p=_normalized(_COUNTRY_WEIGHTS))
        self.tier = rng.choice(len(SUBSCRIPTION_TIERS), size=n, p=[0.45, 0.35, 0.2])
        self.activity = rng.lognormal(0.0, 0.6, size=n)
        mobile = np.clip(1.2 - self.age / 50.0, 0.05, 0.9)
        devices = np.stack([1.0 - mobile, mobile * 0.7, mobile * 0.3, np.full(n, 0.25)], axis=1)
        self.device_cdf = np.cumsum(devices / devices.sum(axis=1, keepdims=True), axis=1)
        self.evening_hour = rng.normal(20.5, 1.5, size=n)
        self.binge = rng.lognormal(-0.3, 0.6, size=n)   # Extra titles per session (mean).
        churn_prone = rng.random(n) < config.churn_share
        self.decay = np.where(churn_prone, rng.uniform(0.1, 0.4, size=n), 0.0)
        self.bot = rng.random(n) < config.bot_share
        self.bot_day = rng.integers(0, config.days, size=n)

    def profile(self, index: int) -> dict:
        return {
            F.USER_ID: f"u{index:06d}",
            F.AGE: int(self.age[index]),
            F.COUNTRY: COUNTRIES[self.country[index]],
            F.SUBSCRIPTION_TIER: SUBSCRIPTION_TIERS[self.tier[index]],
            F.PREFERRED_GENRES: "|".join(GENRES[g] for g in np.flatnonzero(self.declared[index])),
        }

    def launched_titles(self, config: GeneratorConfig) -> _Titles | None:
        """The titles `shift` will launch: made up front so the catalogue file lists them."""
        if config.drift_new_titles == 0:
            return None
        rng = np.random.default_rng(config.seed + 2)  # Leaves the main stream untouched.
        launched = self._make_titles(config.drift_new_titles, rng, first=config.num_titles)
        for row in launched.rows:  # Launch week: as watched as the catalogue's top tenth.
            row[F.POPULARITY] = round(float(2000.0 / rng.uniform(1, 10) ** 1.1), 4)
        # Rebuilt so the proposal distribution sees the launch-week popularity.
        return _Titles(launched.rows, launched.latent, launched.quality)

    def shift(self, config: GeneratorConfig, launched: _Titles | None) -> None:
        """Moves every user's taste towards genres they never declared; launches titles."""
        rng = np.random.default_rng(config.seed + 3)
        targets = np.empty_like(self.user_latent)
        for user in range(len(self.user_latent)):
            others = np.flatnonzero(~self.declared[user])
            if len(others) < 2:  # Declared (nearly) every genre: any two will do.
                others = np.arange(len(GENRES))
            targets[user] = self.centroids[rng.choice(others, size=2, replace=False)].mean(axis=0)
        targets /= np.linalg.norm(targets, axis=1, keepdims=True)
        moved = (1 - config.drift_strength) * self.user_latent + config.drift_strength * targets
        self.user_latent = moved / np.linalg.norm(moved, axis=1, keepdims=True)
        if launched is not None:
            self.titles = self.titles.extended(launched)

    def change_profiles(self, rng: np.random.Generator, rate: float) -> np.ndarray:
        """Some users change tier or declare one more genre; returns their indices."""
        changed = np.flatnonzero(rng.random(len(self.age)) < rate)
        for user in changed:
            if rng.random() < 0.6:
                self.tier[user] = (self.tier[user] + rng.choice([-1, 1])) % len(
                    SUBSCRIPTION_TIERS)
            else:
                self.declared[user, rng.integers(len(GENRES))] = True
        return changed

    def affinity(self, users: np.ndarray, titles: np.ndarray) -> np.ndarray:
        """Hidden affinity (cosine of the latent tastes, in [-1, 1]) of each (user, title)
        pair, `[n]`."""
        return np.einsum("pd,pd->p", self.user_latent[users], self.titles.latent[titles])

    def watch(self, users: np.ndarray, titles: np.ndarray, devices: np.ndarray,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """How each started play goes: engaged, seconds watched, liked (`[n]` each).

        Engagement follows the hidden affinity and the title's quality, plus the observable
        parts of the truth: a preferred genre and a big screen help. The generator and the
        closed-loop simulator (`simulation.behaviour`) share this one rule.
        """
        genre_match = self.declared[users, self.titles.genre[titles]]
        logit = (4.0 * self.affinity(users, titles) - 1.0 + 1.2 * genre_match
                 + _DEVICE_EFFECT[devices] + self.titles.quality[titles])
        engaged = rng.random(len(users)) < _sigmoid(logit)
        ratio = np.where(engaged, rng.beta(6, 2, len(users)), rng.beta(0.6, 5, len(users)))
        watched = np.round(ratio * self.titles.duration[titles], 1)
        liked = engaged & (rng.random(len(users)) < 0.6 * ratio)
        return engaged, watched, liked

    def choose_titles(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draws one title per entry of `users` from softmax(affinity / T + log popularity).

        Exact rejection sampling: propose from popularity, accept with
        exp((affinity - 1) / T), which is at most 1 because both vectors are unit length. Costs
        a few dozen dot products per play whatever the catalogue size.
        """
        chosen = np.full(len(users), -1)
        pending = np.arange(len(users))
        while len(pending):
            proposals = np.searchsorted(self.titles.proposal_cdf,
                                        rng.random((len(pending), _PROPOSALS)))
            proposals = np.minimum(proposals, len(self.titles) - 1)
            affinity = np.einsum("pd,pkd->pk", self.user_latent[users[pending]],
                                 self.titles.latent[proposals])
            accepted = rng.random(affinity.shape) < np.exp((affinity - 1.0) / self.temperature)
            hit = accepted.any(axis=1)
            first = accepted.argmax(axis=1)
            chosen[pending[hit]] = proposals[hit, first[hit]]
            pending = pending[~hit]
        return chosen


def _normalized(weights: tuple[float, ...] | np.ndarray) -> np.ndarray:
    array = np.asarray(weights, dtype=float)
    return array / array.sum()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclasses.dataclass
class Plays:
    """One block's plays as columns (one entry per title started)."""

    user: np.ndarray
    title: np.ndarray
    device: np.ndarray
    start: np.ndarray
    watched: np.ndarray
    engaged: np.ndarray
    liked: np.ndarray
    ghost_session: np.ndarray   # Sent with a user id nobody registered.
    ghost_title: np.ndarray     # Sent with a title id the catalogue does not hold.
    overlong: np.ndarray        # The stop reports an implausible watch time.


def _simulate_block(world: World, config: GeneratorConfig, users: np.ndarray,
                    day: int, day_start: int, rng: np.random.Generator) -> Plays:
    weekend = dt.datetime.fromtimestamp(day_start, dt.timezone.utc).weekday() >= 5
    rate = (config.sessions_per_user_day * world.activity[users]
            * np.exp(-world.decay[users] * day) * (1.3 if weekend else 1.0))
    sessions = rng.poisson(rate)
    session_user = np.repeat(users, sessions)
    num_sessions = len(session_user)
    hour = np.clip(rng.normal(world.evening_hour[session_user], 2.5), 0, 23.9)
    session_start = day_start + (hour * 3600 + rng.integers(0, 3600, num_sessions)).astype(
        np.int64) % _SECONDS_PER_DAY
    device = (rng.random((num_sessions, 1)) > world.device_cdf[session_user]).sum(axis=1)
    device = np.minimum(device, len(F.DEVICE_TYPES) - 1)
    titles_per_session = 1 + np.minimum(rng.poisson(world.binge[session_user]), 11)
    session_of_play = np.repeat(np.arange(num_sessions), titles_per_session)
    user = session_user[session_of_play]
    title = world.choose_titles(user, rng)

    engaged, watched, liked = world.watch(user, title, device[session_of_play], rng)
    # Plays follow each other within a session: watch time, 2 s, then a 30-300 s pause.
    step = watched.astype(np.int64) + 2 + rng.integers(30, 300, len(user))
    offset = np.cumsum(step) - step
    first_play = np.repeat(np.cumsum(titles_per_session) - titles_per_session,
                           titles_per_session)
    offset -= offset[first_play]
    return Plays(
        user=user, title=title, device=device[session_of_play],
        start=session_start[session_of_play] + offset, watched=watched, engaged=engaged,
        liked=liked,
        ghost_session=(rng.random(num_sessions) < config.unknown_id_rate)[session_of_play],
        ghost_title=rng.random(len(user)) < config.unknown_id_rate,
        overlong=rng.random(len(user)) < config.overlong_watch_rate)


def play_events(world: World, plays: Plays, day_tag: str, rng: np.random.Generator,
                 counts: dict[str, int]) -> Iterator[tuple[dict[str, object], bool]]:
    """Renders a block's plays as raw events (play_start, skip?, play_stop, like?).

    Yields:
        (event, clean): `clean` is False for events that already carry a fault (unknown id,
        implausible watch time), so the line-level faults do not stack on them.
    """
    for p in range(len(plays.user)):
        ghost_user, ghost_title = plays.ghost_session[p], plays.ghost_title[p] and not \
            plays.ghost_session[p]
        user_id = f"ghost-{day_tag}-{p}" if ghost_user else f"u{plays.user[p]:06d}"
        title_id = (f"unlisted-{day_tag}-{p}" if ghost_title
                    else world.titles.rows[plays.title[p]][F.TITLE_ID])
        base = {F.USER_ID: user_id, F.TITLE_ID: title_id,
                F.DEVICE_TYPE: F.DEVICE_TYPES[plays.device[p]]}
        start = int(plays.start[p])
        watched = float(plays.watched[p])
        stop = start + int(watched) + 2
        duration = world.titles.duration[plays.title[p]]
        events = [{**base, EVENT_TYPE: PLAY_START, "ts": start, "position_seconds": 0.0}]
        if watched < 0.05 * duration:
            events.append({**base, EVENT_TYPE: SKIP, "ts": start + int(watched) + 1,
                           "position_seconds": watched})
        overlong = plays.overlong[p] and not (ghost_user or ghost_title)
        reported = round(float(duration * rng.uniform(5.0, 50.0)), 1) if overlong else watched
        events.append({**base, EVENT_TYPE: PLAY_STOP, "ts": stop,
                       "position_seconds": reported, "watch_seconds": reported})
        if plays.liked[p]:
            events.append({**base, EVENT_TYPE: LIKE, "ts": stop + 5})
        if ghost_user:
            counts[UNKNOWN_USER] += len(events)
        elif ghost_title:
            counts[UNKNOWN_TITLE] += len(events)
        elif overlong:
            counts[OVERLONG_WATCH] += 1
        clean = not (ghost_user or ghost_title or overlong)
        for event in events:
            yield event, clean


def _bot_events(world: World, user: int, day_start: int, rng: np.random.Generator
                ) -> Iterator[dict[str, object]]:
    """A scraper or stuck client: hundreds of plays within one clock hour."""
    hour_start = day_start + int(rng.integers(0, 24)) * 3600
    count = int(rng.integers(400, 1200))
    stamps = np.sort(hour_start + rng.integers(0, 3600, count))
    titles = rng.integers(0, len(world.titles), count)
    for ts, title in zip(stamps, titles):
        yield {F.USER_ID: f"u{user:06d}", F.TITLE_ID: world.titles.rows[title][F.TITLE_ID],
               F.DEVICE_TYPE: "web", EVENT_TYPE: PLAY_START, "ts": int(ts),
               "position_seconds": 0.0}


def _corrupt(event: dict[str, object], rng: np.random.Generator) -> str:
    """Returns a broken rendering of `event`: the faults ingestion must dead-letter."""
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return json.dumps(event)[:-7]  # Truncated JSON.
    if kind == 1:
        return json.dumps({k: v for k, v in event.items() if k != F.USER_ID})
    if kind == 2:
        return json.dumps({**event, "ts": "yesterday"})
    return json.dumps({**event, EVENT_TYPE: PLAY_STOP, "watch_seconds": -30.0})


class _EventFiles:
    """A day's event folder: parts of at most `events_per_file` lines."""

    def __init__(self, day_dir: pathlib.Path, events_per_file: int) -> None:
        day_dir.mkdir(parents=True, exist_ok=True)
        self._dir = day_dir
        self._limit = events_per_file
        self._part = -1
        self._lines = events_per_file
        self._handle: TextIO | None = None

    def write(self, line: str) -> None:
        if self._lines >= self._limit:
            self.close()
            self._part += 1
            self._handle = (self._dir / part_file(self._part)).open("w")
            self._lines = 0
        assert self._handle is not None
        self._handle.write(line + "\n")
        self._lines += 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def generate(config: GeneratorConfig, out_dir: str | pathlib.Path) -> GeneratedData:
    """Writes users, titles, profile updates and `config.days` days of raw events.

    Args:
        config: sizes, seed, behaviour and fault rates.
        out_dir: created if missing; existing files of the same names are overwritten.

    Returns:
        The paths written and the counts of events and of each injected fault.
    """
    raw = RawLayout(pathlib.Path(out_dir))
    raw.events.mkdir(parents=True, exist_ok=True)
    world = World(config)
    launched = world.launched_titles(config)
    with raw.users.open("w") as handle:
        for index in range(config.num_users):
            handle.write(json.dumps(world.profile(index)) + "\n")
    with raw.titles.open("w") as handle:
        for row in world.titles.rows + (launched.rows if launched else []):
            handle.write(json.dumps(row) + "\n")

    counts = {kind: 0 for kind in (MALFORMED, DUPLICATE, LATE, CLOCK_SKEW, UNKNOWN_USER,
                                   UNKNOWN_TITLE, OVERLONG_WATCH, BOT)}
    counts["events"] = 0
    first_day = dt.date.fromisoformat(config.start_date)
    held_back: list[str] = []  # Late lines: delivered with the next day's files.
    for day in range(config.days):
        if day == config.drift_day:
            world.shift(config, launched)
        date = first_day + dt.timedelta(days=day)
        day_start = int(dt.datetime(date.year, date.month, date.day,
                                    tzinfo=dt.timezone.utc).timestamp())
        _write_profile_updates(world, config, day, raw.profile_updates_day(date.isoformat()),
                               day_start)
        files = _EventFiles(raw.events_day(date.isoformat()), config.events_per_file)
        for line in held_back:
            files.write(line)
        held_back = _write_day(world, config, day, day_start, f"{date:%Y%m%d}", files, counts,
                               last_day=day == config.days - 1)
        files.close()
    return GeneratedData(root=raw.root, users_path=raw.users, titles_path=raw.titles,
                         events_dir=raw.events, profile_updates_dir=raw.profile_updates,
                         num_events=counts.pop("events"),
                         num_malformed=counts[MALFORMED], num_duplicates=counts[DUPLICATE],
                         faults=counts)


def world_after(config: GeneratorConfig) -> World:
    """The hidden truth as it stands after `generate(config)`'s last day: the same world with
    its profile changes and taste shift replayed (no events drawn), for a simulation that
    continues it (`simulation.loop`)."""
    world = World(config)
    launched = world.launched_titles(config)
    for day in range(config.days):
        if day == config.drift_day:
            world.shift(config, launched)
        if day:
            world.change_profiles(np.random.default_rng([config.seed, day, 1]),
                                  config.profile_change_rate)
    return world


def _write_profile_updates(world: World, config: GeneratorConfig, day: int,
                           day_dir: pathlib.Path, day_start: int) -> None:
    day_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([config.seed, day, 1])
    changed = world.change_profiles(rng, config.profile_change_rate) if day else []
    with (day_dir / part_file()).open("w") as handle:
        for user in changed:
            handle.write(json.dumps({**world.profile(user), UPDATED_TS: day_start}) + "\n")


def _write_day(world: World, config: GeneratorConfig, day: int, day_start: int,
               day_tag: str, files: _EventFiles, counts: dict[str, int], last_day: bool
               ) -> list[str]:
    """Writes one day's events; returns the lines held back for the next day."""
    fault_rng = np.random.default_rng([config.seed, day, 2])
    held_back: list[str] = []
    sequence = 0
    malformed = config.malformed_rate
    skewed = malformed + config.clock_skew_rate
    duplicated = skewed + config.duplicate_rate
    late = duplicated + config.late_rate
    for block, first in enumerate(range(0, config.num_users, _USER_BLOCK)):
        users = np.arange(first, min(first + _USER_BLOCK, config.num_users))
        rng = np.random.default_rng([config.seed, day, 0, block])
        plays = _simulate_block(world, config, users[~world.bot[users]], day, day_start, rng)
        for event, clean in play_events(world, plays, f"{day_tag}b{block}", rng, counts):
            event = {"event_id": f"e{day_tag}-{sequence:010d}", **event}
            sequence += 1
            counts["events"] += 1
            draw = fault_rng.random()
            if draw < malformed and clean:
                files.write(_corrupt(event, fault_rng))
                counts[MALFORMED] += 1
                continue
            if malformed <= draw < skewed and clean:
                days_off = int(fault_rng.integers(2, 31)) * int(fault_rng.choice([-1, 1]))
                event["ts"] += days_off * _SECONDS_PER_DAY
                counts[CLOCK_SKEW] += 1
            line = json.dumps(event)
            if skewed <= draw < duplicated and clean:
                files.write(line)
                counts[DUPLICATE] += 1
            elif duplicated <= draw < late and not last_day:
                held_back.append(line)
                counts[LATE] += 1
                continue
            files.write(line)
        bots = users[world.bot[users] & (world.bot_day[users] == day)]
        for user in bots:
            for event in _bot_events(world, int(user), day_start, rng):
                files.write(json.dumps({"event_id": f"e{day_tag}-{sequence:010d}", **event}))
                sequence += 1
                counts["events"] += 1
                counts[BOT] += 1
    return held_back
