"""The closed loop: simulated subscribers asking the running recommendation service for slates.

    for each simulated day:
      new subscribers join (`LoopConfig.joiners_per_day`): drawn by the generator's own user
        rule, known only by what they give at sign-up (profile, preferred genres)
      users draw their sessions (rate from the generator's truth and their satisfaction)
      in rounds: every user's first session of the day, then every second one, ...; within a
        round users run in parallel (`LoopConfig.workers` threads, kept-alive connections):
          POST /v1/recommendations over HTTP -> pick from the slate or browse
          (`simulation.behaviour`) -> watch (`World.watch`) -> raw playback events
          -> buffered, and sent to the event queue in batches (one XADD pipeline per batch)
        after each round the buffer is flushed and `settle` waits for the profile consumer,
        so a user's next session sees the plays of their last one
      the day's events are written to the day's event log (the generator's layout)
      satisfaction moves churn (a cancellation that day) and, on billing days, renewals
      the service's served-list log is rotated into the day's partition
      the loop's state goes to disk (`state.npz`, `loop.json`): `resume()` continues from
        the last finished day

It continues a generated world (`recs.data.synthetic.world_after`): the same users and titles,
starting the day after the generated logs end, so the served models were trained on these
users' past. Which experiment arm a user is in is the service's business; the simulator never
looks.

Random streams (common random numbers). Every draw belongs to one user, one day and one use:
the day's session counts and timings are the user's row of a `[users, draws]` matrix seeded
by (seed, day) (a user's row does not depend on who else is active), choices by (seed, day,
user, session slot), watching by another stream of the same key, churn and renewal by the
user's entry of a (seed, day) vector over all users. Two runs of the same users under two
policies (a twin world) therefore differ only where the policies made them differ; two runs
under the same policy, with `settle` waiting for the consumer and a service that reads the
store on every request and draws nothing at random, are identical.

Layout written under `out_dir` (a raw folder, `recs.contract.layout.RawLayout`: the
generator's, so `recs ingest` and the pipeline read it):

    users.jsonl, titles.jsonl                 profiles (established users and those who
                                              joined so far) and the catalogue
    events/day=D/part-00000.jsonl             the day's raw playback events
    profile_updates/day=D/part-00000.jsonl    the profiles of the day's new subscribers
    subscriptions/day=D/part-00000.jsonl      cancellations and renewal decisions
                                              {user_id, ts, event}
    served/day=D/part-00000.jsonl             the service's served lists (when rotated here)
    loop.json                                 the config and the per-day reports
    state.npz                                 the users' state after the last finished day
    user_outcomes.jsonl                       per simulated user: cohort, sessions, plays,
                                              engagement, watch time, when they left
"""

import concurrent.futures
import dataclasses
import datetime as dt
import json
import os
import pathlib
import threading
import time
from typing import Any, Callable, Protocol

import numpy as np
from scipy import special, stats

from recs.config import Config, require
from recs.contract import features as F
from recs.contract.layout import RawLayout, part_file
from recs.contract.rows import UPDATED_TS
from recs.data.synthetic import (DUPLICATE, GeneratorConfig, Plays, UNKNOWN_TITLE, UNKNOWN_USER,
                                 OVERLONG_WATCH, World, play_events, world_after)
from simulation.behaviour import (BILLING_DAYS, BehaviourConfig, billing_days,
                                  churn_probability, pick, renewal_probability, session_rate,
                                  session_value, updated_satisfaction)

RENEWED, CANCELLED = "renewed", "cancelled"
"""Subscription decisions, as written to `subscriptions/`."""
ESTABLISHED, NEW = "established", "new"
"""The two cohorts: users of the generated world, and subscribers who joined in the loop."""
MAX_SESSIONS_PER_DAY = 16
"""A user's sessions in one day are capped here (the draws are made for this many)."""
_DRAWS_PER_SESSION = 4  # Hour, second within the hour, device, titles wanted.
_SECONDS_PER_DAY = 86_400
_MAX_PLAYS_PER_SESSION = 12
_SLACK_S = 12 * 3600
_STATE, _REPORTS, _OUTCOMES = "state.npz", "loop.json", "user_outcomes.jsonl"
# Random stream tags: the second element of every seed after the day.
_SESSIONS, _CHOICES, _CHURN, _WATCHING = 0, 1, 2, 3
_JOINERS, _SAMPLE = 5, 6


@dataclasses.dataclass(frozen=True)
class LoopConfig(Config):
    """A closed-loop run.

    Attributes:
        days: simulated days.
        seed: the simulation's randomness (the world's comes from its `GeneratorConfig`).
        slate_size: titles asked for per session (`k`).
        behaviour: the reaction rules' constants.
        workers: sessions run concurrently (one per user at a time).
        request_timeout_s: a slate request slower than this counts as failed; the user then
            browses as if shown nothing.
        joiners_per_day: new subscribers who sign up each day.
        sample: share of the users simulated, in (0, 1]; the others never visit. The same
            seed picks the same users, with the same random streams, so a twin world may
            run a sample of an experiment's users.
    """

    days: int = 14
    seed: int = 11
    slate_size: int = 10
    behaviour: BehaviourConfig = BehaviourConfig()
    workers: int = 8
    request_timeout_s: float = 5.0
    joiners_per_day: int = 0
    sample: float = 1.0

    def __post_init__(self) -> None:
        require(self.days > 0, "days", "> 0", self.days)
        require(1 <= self.slate_size <= 100, "slate_size", "in [1, 100]", self.slate_size)
        require(self.workers >= 1, "workers", ">= 1", self.workers)
        require(self.request_timeout_s > 0, "request_timeout_s", "> 0",
                self.request_timeout_s)
        require(self.joiners_per_day >= 0, "joiners_per_day", ">= 0", self.joiners_per_day)
        require(0.0 < self.sample <= 1.0, "sample", "in (0, 1]", self.sample)


@dataclasses.dataclass
class DayReport:
    """What happened on one simulated day."""

    date: str
    subscribers: int = 0
    joined: int = 0
    visitors: int = 0
    sessions: int = 0
    rounds: int = 0
    request_errors: dict[str, int] = dataclasses.field(default_factory=dict)
    plays: int = 0
    plays_from_slate: int = 0
    engaged_plays: int = 0
    engaged_from_slate: int = 0
    sessions_without_play: int = 0
    looks: int = 0
    watch_seconds: float = 0.0
    left: int = 0
    renewed: int = 0
    cancelled: int = 0
    mean_satisfaction: float = 0.0
    seconds: float = 0.0
    """Wall-clock time the day took to simulate."""
    request_seconds: float = 0.0
    """Summed wall-clock time of the day's slate requests (over the concurrent sessions)."""
    settle_seconds: float = 0.0
    """Wall-clock time spent waiting for the profile consumer at the rounds' ends."""


@dataclasses.dataclass(frozen=True)
class _Session:
    user: int
    slot: int
    """Which of the user's drawn sessions of the day it is: keys its random streams."""
    index: int
    """Its place among the user's sessions of the day, in time order: its round."""
    start: int
    hour: int
    device: int
    wanted: int


@dataclasses.dataclass
class _Outcome:
    """One session's result, as the day's report and the event log need it."""

    user: int
    index: int
    events: list[dict[str, Any]]
    plays: int
    from_slate: int
    engaged: int
    engaged_from_slate: int
    looks: int
    watch_seconds: float
    found_nothing: bool
    error: str
    request_seconds: float


class EventSink(Protocol):
    """Where a session's raw events go (`StreamPublisher`): called with each session's
    events, flushed at each round's end."""

    def __call__(self, events: list[dict[str, Any]]) -> None: ...

    def flush(self) -> None: ...


class SlateClient:
    """POSTs `/v1/recommendations` to the service over kept-alive connections; a failure is a
    string, not an exception (the simulated user just sees no slate).

    Args:
        service_url: e.g. `http://127.0.0.1:8080`.
        connections: kept-alive connections (one per concurrent worker).
        timeout_s: per request.
    """

    def __init__(self, service_url: str, connections: int, timeout_s: float) -> None:
        import urllib3

        self.url = service_url.rstrip("/") + "/v1/recommendations"
        self.timeout_s = timeout_s
        self._pool = urllib3.PoolManager(maxsize=connections, block=True, retries=False)

    def slate(self, user_id: str, k: int, device_type: str, hour: int,
              profile: dict[str, Any] | None = None) -> tuple[list[str], str]:
        """(title ids, "") or ([], the failure: an HTTP status or an exception's name).

        Args:
            profile: the sign-up profile of a user the store may not know yet (the
                request schema's `profile`: age, country, tier, preferred genres as a list).
        """
        import urllib3

        request: dict[str, Any] = {"user_id": user_id, "k": k,
                                   "context": {"device_type": device_type, "hour": hour}}
        if profile is not None:
            request["profile"] = profile
        try:
            response = self._pool.request("POST", self.url, body=json.dumps(request).encode(),
                                          headers={"Content-Type": "application/json"},
                                          timeout=urllib3.Timeout(total=self.timeout_s))
        except (urllib3.exceptions.HTTPError, OSError) as error:
            return [], type(error).__name__
        if response.status != 200:
            return [], str(response.status)
        try:
            return [str(item["title_id"]) for item in json.loads(response.data)["items"]], ""
        except (ValueError, KeyError, TypeError) as error:
            return [], f"bad_response:{type(error).__name__}"


class _Joiners(World):
    """One day's new subscribers: drawn by the generator's own user rule, from their own
    random stream, with the world's genre centroids and catalogue (not `World.__init__`,
    which would draw a whole world)."""

    def __init__(self, world: World, config: GeneratorConfig, rng: np.random.Generator
                 ) -> None:
        # World.__init__ is not called: it would draw a whole new world.
        self.centroids, self.temperature, self.titles = (world.centroids, world.temperature,
                                                         world.titles)
        self._make_users(config, rng)

    def append_to(self, world: World) -> None:
        """Adds these users after `world`'s (every per-user array, in the same order)."""
        shared = {"centroids", "temperature", "titles"}
        for name, values in vars(self).items():
            if name not in shared:
                setattr(world, name, np.concatenate([getattr(world, name), values]))


class ClosedLoop:
    """Runs simulated days against a recommendation service.

    Args:
        world: the generated world it continues (the service's models were trained on it).
        config: days, seed, behaviour, new subscribers, the share of users simulated.
        out_dir: where the day logs and the state go (see the module docstring).

    Example:
        loop = ClosedLoop(GeneratorConfig(num_users=2000), LoopConfig(days=7), "loop_out")
        loop.attach("http://127.0.0.1:8080")
        reports = loop.run()
    """

    def __init__(self, world: GeneratorConfig, config: LoopConfig,
                 out_dir: str | pathlib.Path) -> None:
        self.world_config = world
        self.config = config
        self.world: World = world_after(world)
        self.out = pathlib.Path(out_dir)
        self.raw = RawLayout(self.out)
        self.client: SlateClient | None = None
        self.publish: EventSink | None = None
        self.served_log = ""
        self.settle: Callable[[], None] | None = None
        self.sign_up: Callable[[list[dict[str, Any]]], None] | None = None
        self.checkpoint: Callable[[], None] | None = None
        users = len(self.world.age)
        self.satisfaction = np.full(users, config.behaviour.initial)
        self.subscribed = ~self.world.bot
        self.left = np.zeros(users, dtype=bool)
        self.billing = billing_days(users, config.seed)
        self.joined_day = np.full(users, -1)
        """The day a user joined; -1 for the generated world's users."""
        self.simulated = np.random.default_rng([config.seed, _SAMPLE]).random(users) < (
            config.sample)
        self.left_day = np.full(users, -1)
        self.cancelled_day = np.full(users, -1)
        self.totals = {name: np.zeros(users) for name in _TOTAL_NAMES}
        self.title_index = {row[F.TITLE_ID]: index
                            for index, row in enumerate(self.world.titles.rows)}
        self.reports: list[DayReport] = []
        self._now = 0.0
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def attach(self, service_url: str, publish: EventSink | None = None,
               served_log: str = "", settle: Callable[[], None] | None = None,
               sign_up: Callable[[list[dict[str, Any]]], None] | None = None,
               checkpoint: Callable[[], None] | None = None) -> None:
        """Points the loop at a running service (again, e.g. after it restarted with new
        experiments); the users' state carries on.

        Args:
            service_url: the recommendation service.
            publish: sends sessions' raw events to the event queue (`StreamPublisher`);
                None writes the logs only.
            served_log: the service's served-list log file; each day's is moved into
                `served/day=D/` when the day ends (the service reopens the file on each
                write). One left over from a day that did not finish is removed.
            settle: called at each round's end before the next round starts, e.g.
                `wait_until_consumed`: a user's next session sees their plays so far, and
                the consumer never sees a day's events after the clock has left the day.
            sign_up: called with the profiles of each day's new subscribers before their
                first session, e.g. the profile store's `upsert_profiles` (the account
                their sign-up creates; the consumer refuses events of users it does not
                know). Their requests carry the profile as well.
            checkpoint: called after each finished day, before the loop's state is written,
                e.g. to save the profile store: a run resumed from the state (`resume`)
                then continues from that day's end. (A crash between the two makes the
                resumed run repeat a day on a store that already holds its plays: event ids
                are the same, so the store applies nothing twice.)
        """
        self.client = SlateClient(service_url, self.config.workers,
                                  self.config.request_timeout_s)
        self.publish, self.served_log, self.settle = publish, served_log, settle
        self.sign_up, self.checkpoint = sign_up, checkpoint

    @property
    def first_date(self) -> dt.date:
        """The first simulated day: the day after the generated logs end."""
        return (dt.date.fromisoformat(self.world_config.start_date)
                + dt.timedelta(days=self.world_config.days))

    @property
    def days_done(self) -> int:
        return len(self.reports)

    def now(self) -> float:
        """The simulated clock (seconds since the epoch) that the profile consumer takes as
        the events' arrival time: the end of the day being simulated plus `_SLACK_S`, as
        late-evening sessions run on past midnight."""
        return self._now

    def user_id(self, user: int) -> str:
        return f"u{user:06d}"

    def run(self, days: int | None = None) -> list[DayReport]:
        """Simulates `days` more days (default `config.days`), continuing from the last day
        run; returns their reports (all days' are in `loop.json`). The state is written
        after each day.

        Raises:
            ValueError: no service attached.
        """
        require(self.client is not None, "service", "attached first (ClosedLoop.attach)",
                None)
        if not self.reports:
            self.out.mkdir(parents=True, exist_ok=True)
            with self.raw.titles.open("w") as handle:
                for row in self.world.titles.rows:
                    handle.write(json.dumps(row) + "\n")
        first = len(self.reports)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.config.workers)
        try:
            for day in range(first, first + (self.config.days if days is None else days)):
                self.reports.append(self.run_day(day))
                if self.checkpoint is not None:
                    self.checkpoint()
                self.save_state()
        finally:
            self._pool.shutdown()
            self._pool = None
        return self.reports[first:]

    def run_day(self, day: int) -> DayReport:
        """Simulates one day: new subscribers, sessions in rounds, churn, renewals; writes
        its logs (not the state: `run` does)."""
        started = time.perf_counter()
        date = self.first_date + dt.timedelta(days=day)
        day_start = int(dt.datetime(date.year, date.month, date.day,
                                    tzinfo=dt.timezone.utc).timestamp())
        self._now = float(day_start + _SECONDS_PER_DAY + _SLACK_S)
        if self.served_log and os.path.exists(self.served_log):
            os.unlink(self.served_log)  # A day that did not finish: it is run again.
        report = DayReport(date.isoformat())
        joiners = self._join(day)
        report.joined = len(joiners)
        self._write_profiles(date, day_start, joiners)
        sessions = self._sessions(day, day_start)
        report.subscribers = int(self._present().sum())
        report.visitors = len({session.user for session in sessions})
        report.sessions = len(sessions)
        day_tag = f"{date:%Y%m%d}"
        rounds: dict[int, list[_Session]] = {}
        for session in sessions:
            rounds.setdefault(session.index, []).append(session)
        report.rounds = len(rounds)
        outcomes: list[_Outcome] = []
        assert self._pool is not None  # run() made it.
        for index in sorted(rounds):
            outcomes += self._pool.map(lambda s: self._session(day, day_tag, s), rounds[index])
            mark = time.perf_counter()
            if self.publish is not None:
                self.publish.flush()
            if self.settle is not None:
                self.settle()
            report.settle_seconds += time.perf_counter() - mark
        self._write_events(date, outcomes, report)
        self._churn_and_renewals(day, date, day_start, report)
        present = self._present()
        report.mean_satisfaction = float(self.satisfaction[present].mean()
                                         if present.any() else 0.0)
        if self.served_log and os.path.exists(self.served_log):
            served_dir = self.raw.served_day(date.isoformat())
            served_dir.mkdir(parents=True, exist_ok=True)
            os.replace(self.served_log, served_dir / part_file())
        report.seconds = round(time.perf_counter() - started, 2)
        report.request_seconds = round(report.request_seconds, 2)
        report.settle_seconds = round(report.settle_seconds, 2)
        return report

    def _present(self) -> np.ndarray:
        """Simulated users still subscribed, `[users]`."""
        return self.subscribed & ~self.left & self.simulated

    def _join(self, day: int) -> np.ndarray:
        """Adds the day's new subscribers; returns their indices (simulated ones only)."""
        count = self.config.joiners_per_day
        if not count:
            return np.zeros(0, dtype=int)
        first = len(self.world.age)
        config = dataclasses.replace(self.world_config, num_users=count)
        _Joiners(self.world, config, np.random.default_rng(
            [self.config.seed, _JOINERS, day])).append_to(self.world)
        users = np.arange(first, first + count)
        # A new subscriber's billing day is their sign-up's: the first renewal comes a
        # cycle later.
        self.billing = np.concatenate([self.billing, np.full(
            count, (self.world_config.days + day) % BILLING_DAYS)])
        self.joined_day = np.concatenate([self.joined_day, np.full(count, day)])
        self.simulated = np.concatenate([self.simulated, np.random.default_rng(
            [self.config.seed, _SAMPLE, day]).random(count) < self.config.sample])
        self.satisfaction = np.concatenate([self.satisfaction,
                                            np.full(count, self.config.behaviour.initial)])
        self.subscribed = np.concatenate([self.subscribed, ~self.world.bot[users]])
        self.left = np.concatenate([self.left, np.zeros(count, dtype=bool)])
        self.left_day = np.concatenate([self.left_day, np.full(count, -1)])
        self.cancelled_day = np.concatenate([self.cancelled_day, np.full(count, -1)])
        for name in self.totals:
            self.totals[name] = np.concatenate([self.totals[name], np.zeros(count)])
        joined = users[self.simulated[users] & self.subscribed[users]]
        if self.sign_up is not None and len(joined):
            self.sign_up([self.world.profile(int(user)) for user in joined])
        return joined

    def _write_profiles(self, date: dt.date, day_start: int, joiners: np.ndarray) -> None:
        """users.jsonl with everyone who has joined so far; the day's new profiles as its
        profile updates."""
        self.out.mkdir(parents=True, exist_ok=True)
        joined = np.flatnonzero((self.joined_day < 0) | self.simulated)
        temporary = self.raw.users.with_suffix(".tmp")
        with temporary.open("w") as handle:
            for user in joined:
                handle.write(json.dumps(self.world.profile(int(user))) + "\n")
        os.replace(temporary, self.raw.users)
        updates_dir = self.raw.profile_updates_day(date.isoformat())
        updates_dir.mkdir(parents=True, exist_ok=True)
        with (updates_dir / part_file()).open("w") as handle:
            for user in joiners:
                handle.write(json.dumps({**self.world.profile(int(user)),
                                         UPDATED_TS: day_start}) + "\n")

    def _sessions(self, day: int, day_start: int) -> list[_Session]:
        """The day's sessions of simulated users still subscribed: the generator's timing,
        devices and binge lengths, at a rate set by satisfaction; ordered by round, then
        user.

        Each user's draws are their row of the day's uniform matrix (inverse CDFs of the
        generator's laws), so a user's sessions do not depend on who else is active, and a
        slightly higher rate adds sessions without moving the others.
        """
        world, config = self.world, self.world_config
        slots = MAX_SESSIONS_PER_DAY
        uniforms = np.random.default_rng([self.config.seed, day, _SESSIONS]).random(
            (len(world.age), 1 + _DRAWS_PER_SESSION * slots))
        users = np.flatnonzero(self._present())
        weekend = dt.datetime.fromtimestamp(day_start, dt.timezone.utc).weekday() >= 5
        # Activity decays from the generator's first day for its users, from sign-up for
        # new subscribers.
        age = np.where(self.joined_day[users] < 0, config.days + day,
                       day - self.joined_day[users])
        base = (config.sessions_per_user_day * world.activity[users]
                * np.exp(-world.decay[users] * age) * (1.3 if weekend else 1.0))
        rate = session_rate(base, self.satisfaction[users], self.config.behaviour)
        counts = np.minimum(stats.poisson.ppf(uniforms[users, 0], rate), slots).astype(int)
        user = np.repeat(users, counts)
        slot = np.arange(len(user)) - np.repeat(np.cumsum(counts) - counts, counts)
        draws = uniforms[user[:, None], 1 + _DRAWS_PER_SESSION * slot[:, None]
                         + np.arange(_DRAWS_PER_SESSION)]
        hour = np.clip(world.evening_hour[user] + 2.5 * special.ndtri(draws[:, 0]), 0, 23.9)
        start = day_start + (hour * 3600 + np.floor(draws[:, 1] * 3600)).astype(
            np.int64) % _SECONDS_PER_DAY
        device = np.minimum((draws[:, 2:3] > world.device_cdf[user]).sum(axis=1),
                            len(F.DEVICE_TYPES) - 1)
        wanted = 1 + np.minimum(stats.poisson.ppf(draws[:, 3], world.binge[user]),
                                _MAX_PLAYS_PER_SESSION - 1).astype(int)
        order = np.lexsort((slot, start, user))  # Each user's sessions in time order.
        first_of_user = np.searchsorted(user[order], user[order], side="left")
        index = np.empty(len(user), dtype=int)
        index[order] = np.arange(len(user)) - first_of_user
        sessions = [_Session(int(user[i]), int(slot[i]), int(index[i]), int(start[i]),
                             int(((start[i] - day_start) // 3600) % 24), int(device[i]),
                             int(wanted[i])) for i in range(len(user))]
        return sorted(sessions, key=lambda s: (s.index, s.user))

    def _request_profile(self, user: int) -> dict[str, Any] | None:
        """What a new subscriber's requests carry: their sign-up profile."""
        if self.joined_day[user] < 0:
            return None
        profile = self.world.profile(user)
        return {F.AGE: profile[F.AGE], F.COUNTRY: profile[F.COUNTRY],
                F.SUBSCRIPTION_TIER: profile[F.SUBSCRIPTION_TIER],
                F.PREFERRED_GENRES: profile[F.PREFERRED_GENRES].split("|")}

    def _session(self, day: int, day_tag: str, session: _Session) -> _Outcome:
        """One session: ask for a slate, pick and watch up to `wanted` titles, publish."""
        behaviour = self.config.behaviour
        rng = np.random.default_rng([self.config.seed, day, _CHOICES, session.user,
                                     session.slot])
        watching = np.random.default_rng([self.config.seed, day, _WATCHING, session.user,
                                          session.slot])
        assert self.client is not None  # run() checked.
        mark = time.perf_counter()
        titles, error = self.client.slate(self.user_id(session.user), self.config.slate_size,
                                          F.DEVICE_TYPES[session.device], session.hour,
                                          self._request_profile(session.user))
        request_seconds = time.perf_counter() - mark
        slate = np.array([self.title_index.get(title, -1) for title in titles], dtype=int)
        picks, taken, looks = [], set(), 0
        clock = session.start
        starts = []
        for _ in range(session.wanted):
            chosen = pick(self.world, session.user, slate, taken, behaviour, rng)
            looks += chosen.looks
            if not chosen.found:
                break
            taken.add(chosen.title)
            picks.append(chosen)
            clock += int(chosen.looks * behaviour.seconds_per_look)
            starts.append(clock)
        if picks:
            title = np.array([p.title for p in picks])
            users = np.full(len(picks), session.user)
            devices = np.full(len(picks), session.device)
            engaged, watched, liked = self.world.watch(users, title, devices, watching)
            # Plays follow each other: the looks before each, the watch, a 30-300 s pause.
            offsets = np.concatenate([[0], np.cumsum(
                watched[:-1].astype(np.int64) + 2 + watching.integers(30, 300,
                                                                      len(picks) - 1))])
            false = np.zeros(len(picks), dtype=bool)
            plays = Plays(user=users, title=title, device=devices,
                          start=np.array(starts) + offsets, watched=watched, engaged=engaged,
                          liked=liked, ghost_session=false, ghost_title=false, overlong=false)
            counts = {UNKNOWN_USER: 0, UNKNOWN_TITLE: 0, OVERLONG_WATCH: 0, DUPLICATE: 0}
            events = [{"event_id": f"s{day_tag}-{session.user:06d}-{session.slot:03d}-{n:03d}",
                       **event} for n, (event, _) in enumerate(
                          play_events(self.world, plays, day_tag, watching, counts))]
        else:
            engaged, watched, events = np.zeros(0, dtype=bool), np.zeros(0), []
        value = session_value(int(engaged.sum()), looks, not picks, behaviour)
        # A round runs one session per user: these elements are this thread's own.
        user = session.user
        self.satisfaction[user] = updated_satisfaction(self.satisfaction[user], value,
                                                       behaviour)
        outcome = _Outcome(user, session.index, events, len(picks),
                           sum(p.from_slate for p in picks), int(engaged.sum()),
                           sum(bool(e) and p.from_slate for p, e in zip(picks, engaged)), looks,
                           float(watched.sum()), not picks, error, request_seconds)
        for name in _TOTALS:
            self.totals[name][user] += _TOTALS[name](outcome)
        if events and self.publish is not None:
            self.publish(events)
        return outcome

    def _write_events(self, date: dt.date, outcomes: list[_Outcome],
                      report: DayReport) -> None:
        events_dir = self.raw.events_day(date.isoformat())
        events_dir.mkdir(parents=True, exist_ok=True)
        with (events_dir / part_file()).open("w") as handle:
            # A fixed order, whatever finished first.
            for outcome in sorted(outcomes, key=lambda o: (o.user, o.index)):
                for event in outcome.events:
                    handle.write(json.dumps(event) + "\n")
                report.plays += outcome.plays
                report.plays_from_slate += outcome.from_slate
                report.engaged_plays += outcome.engaged
                report.engaged_from_slate += outcome.engaged_from_slate
                report.looks += outcome.looks
                report.watch_seconds += outcome.watch_seconds
                report.sessions_without_play += outcome.found_nothing
                report.request_seconds += outcome.request_seconds
                if outcome.error:
                    report.request_errors[outcome.error] = (
                        report.request_errors.get(outcome.error, 0) + 1)
        for user in {outcome.user for outcome in outcomes}:
            self.totals["active_days"][user] += 1

    def _churn_and_renewals(self, day: int, date: dt.date, day_start: int,
                            report: DayReport) -> None:
        """Who cancels today (the daily hazard), and on billing days who renews."""
        behaviour = self.config.behaviour
        rng = np.random.default_rng([self.config.seed, day, _CHURN])
        users = len(self.satisfaction)
        leave_draw, renew_draw = rng.random(users), rng.random(users)
        present = self._present()
        new = (self.joined_day >= 0) & (day - self.joined_day < BILLING_DAYS)
        leaving = present & (leave_draw < churn_probability(
            self.satisfaction, self.world.decay > 0, behaviour, new))
        self.left |= leaving
        self.left_day[leaving] = day
        due = (present & ~leaving & (self.joined_day < day)
               & (self.billing == (self.world_config.days + day) % BILLING_DAYS))
        renews = due & (renew_draw < renewal_probability(self.satisfaction, behaviour))
        lapses = due & ~renews
        self.subscribed &= ~(leaving | lapses)
        self.cancelled_day[leaving | lapses] = day
        subscriptions_dir = self.raw.subscriptions_day(date.isoformat())
        subscriptions_dir.mkdir(parents=True, exist_ok=True)
        with (subscriptions_dir / part_file()).open("w") as handle:
            for user in np.flatnonzero(leaving | due):
                event = RENEWED if renews[user] else CANCELLED
                handle.write(json.dumps({F.USER_ID: self.user_id(int(user)),
                                         "ts": day_start + _SECONDS_PER_DAY - 1,
                                         "event": event}) + "\n")
        report.left = int(leaving.sum())
        report.renewed = int(renews.sum())
        report.cancelled = int((leaving | lapses).sum())

    def user_outcomes(self) -> list[dict[str, Any]]:
        """Per simulated user so far: cohort, joining day, totals, satisfaction, and the days
        they left (cancelled on their own) and their subscription ended (-1: not)."""
        rows = []
        for user in np.flatnonzero(self.simulated & ~self.world.bot):
            rows.append({F.USER_ID: self.user_id(int(user)),
                         "cohort": ESTABLISHED if self.joined_day[user] < 0 else NEW,
                         "joined_day": int(self.joined_day[user]),
                         **{name: float(self.totals[name][user]) for name in _TOTAL_NAMES},
                         "satisfaction": float(self.satisfaction[user]),
                         "left_day": int(self.left_day[user]),
                         "cancelled_day": int(self.cancelled_day[user])})
        return rows

    def save_state(self) -> None:
        """Writes the users' state, the reports and the per-user outcomes (each file whole,
        replaced atomically; `loop.json` last, as it says how many days are done)."""
        self.out.mkdir(parents=True, exist_ok=True)
        arrays = {"satisfaction": self.satisfaction, "subscribed": self.subscribed,
                  "left": self.left, "billing": self.billing, "joined_day": self.joined_day,
                  "simulated": self.simulated, "left_day": self.left_day,
                  "cancelled_day": self.cancelled_day,
                  **{f"total_{name}": values for name, values in self.totals.items()}}
        temporary = self.out / f".{_STATE}"
        with temporary.open("wb") as handle:
            np.savez(handle, days=len(self.reports), **arrays)
        os.replace(temporary, self.out / _STATE)
        temporary = self.out / f".{_OUTCOMES}"
        temporary.write_text("".join(json.dumps(row) + "\n" for row in self.user_outcomes()))
        os.replace(temporary, self.out / _OUTCOMES)
        temporary = self.out / f".{_REPORTS}"
        temporary.write_text(json.dumps(
            {"config": self.config.to_dict(), "world": self.world_config.to_dict(),
             "days": [dataclasses.asdict(report) for report in self.reports]}, indent=1) + "\n")
        os.replace(temporary, self.out / _REPORTS)

    def resume(self) -> int:
        """Continues from the state on disk in `out_dir`, if any: the days already run (their
        new subscribers drawn again), the users' state and the reports.

        Returns:
            The days already run (0 when there is no state).

        Raises:
            ValueError: the state was written by a run of another config (other than its
                `workers`) or world, or the loop has already run days.
        """
        path = self.out / _REPORTS
        if not path.exists():
            return 0
        require(not self.reports, "loop", "a new ClosedLoop (resume before running days)",
                len(self.reports))
        saved = json.loads(path.read_text())
        # How many sessions run at once changes nothing a user does.
        config = {**saved["config"], "workers": self.config.workers}
        require(config == self.config.to_dict()
                and saved["world"] == self.world_config.to_dict(), "out_dir",
                "the state of a run with this LoopConfig (workers aside) and world, or a new "
                "folder", str(self.out))
        reports = [DayReport(**day) for day in saved["days"]]
        with np.load(self.out / _STATE) as state:
            require(int(state["days"]) == len(reports), "out_dir",
                    f"a state of {len(reports)} days (loop.json)", int(state["days"]))
            for day in range(len(reports)):
                self._join(day)  # The same people, from the same streams.
            for name in ("satisfaction", "subscribed", "left", "billing", "joined_day",
                         "simulated", "left_day", "cancelled_day"):
                setattr(self, name, state[name].copy())
            self.totals = {name: state[f"total_{name}"].copy() for name in _TOTAL_NAMES}
        self.reports = reports
        return len(reports)


_TOTALS: dict[str, Callable[[_Outcome], float]] = {
    "sessions": lambda outcome: 1.0,
    "plays": lambda outcome: outcome.plays,
    "plays_from_slate": lambda outcome: outcome.from_slate,
    "engaged_plays": lambda outcome: outcome.engaged,
    "engaged_from_slate": lambda outcome: outcome.engaged_from_slate,
    "watch_seconds": lambda outcome: outcome.watch_seconds,
    "looks": lambda outcome: outcome.looks,
    "sessions_without_play": lambda outcome: float(outcome.found_nothing),
    "request_errors": lambda outcome: float(bool(outcome.error)),
}
"""Per-user running totals, from each session's outcome."""
_TOTAL_NAMES = (*_TOTALS, "active_days")
"""The totals kept per user: the sessions' and the days with a session."""


class StreamPublisher:
    """An `EventSink` that buffers sessions' events and XADDs them to the project's event
    stream in batches (`serving.consumer.publish`: one pipeline per batch), counting what it
    sent.

    Args:
        redis_url: the event queue.
        batch: events per pipeline; `flush` sends a smaller remainder. Small enough that the
            consumer applies most of a round's events while the round runs (what is left at
            its end, the round waits for).
    """

    def __init__(self, redis_url: str, batch: int = 100) -> None:
        import redis

        require(batch >= 1, "batch", ">= 1", batch)
        self._client = redis.Redis.from_url(redis_url)  # Thread-safe: a connection per call.
        self._batch = batch
        self._lock = threading.Lock()
        self._buffer: list[dict[str, Any]] = []
        self.published = 0
        self.pipelines = 0

    def __call__(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            self._buffer.extend(events)
            if len(self._buffer) < self._batch:
                return
            full, self._buffer = self._buffer, []
        self._send(full)

    def flush(self) -> None:
        """Sends whatever is buffered."""
        with self._lock:
            rest, self._buffer = self._buffer, []
        if rest:
            self._send(rest)

    def _send(self, events: list[dict[str, Any]]) -> None:
        from serving.consumer import publish

        publish(self._client, events)
        with self._lock:
            self.published += len(events)
            self.pipelines += 1


def wait_until_consumed(updaters: Any, publisher: StreamPublisher, timeout_s: float = 300.0,
                        poll_s: float = 0.01) -> None:
    """Blocks until running `serving.consumer.ProfileUpdater`s (one, or a list of the
    consumers of one group) have finished every event the publisher sent (a
    `ClosedLoop.settle`: the next round starts on an up-to-date store).

    Raises:
        TimeoutError: the consumers did not catch up within `timeout_s`.
    """
    group = updaters if isinstance(updaters, (list, tuple)) else [updaters]
    deadline = time.monotonic() + timeout_s
    while True:
        finished = sum(counts.applied + counts.duplicates + sum(counts.dead_lettered.values())
                       for counts in (updater.counts for updater in group))
        if finished >= publisher.published:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the profile consumers finished {finished} of "
                               f"{publisher.published} events within {timeout_s} s")
        time.sleep(poll_s)
