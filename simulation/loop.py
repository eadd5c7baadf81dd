"""The closed loop: simulated subscribers asking the running recommendation service for slates.

    for each simulated day:
      users draw their sessions (rate from the generator's truth and their satisfaction)
      each session: POST /v1/recommendations over HTTP -> pick from the slate or browse
        (`simulation.behaviour`) -> watch (`World.watch`) -> raw playback events
        -> published to the event queue (Redis stream; the profile consumer applies them)
        -> appended to the day's event log (the generator's layout, which ingestion reads)
      satisfaction moves sessions, churn and, on billing days, renewals
      the service's served-list log is rotated into the day's partition

It continues a generated world (`recs.data.synthetic.world_after`): the same users and titles,
starting the day after the generated logs end, so the served models were trained on these
users' past. Which experiment arm a user is in is the service's business; the simulator never
looks.

Seeded: a user's sessions and choices come from a random stream of (seed, day, user), so two
runs against the same service state make the same choices; what the service shows can still
differ with timing (the profile consumer and cache run concurrently).

Layout written under `out_dir` (the generator's, so `recs ingest` and the pipeline read it):

    users.jsonl, titles.jsonl                 the world's profiles and catalogue
    events/day=D/part-00000.jsonl             the day's raw playback events
    profile_updates/day=D/part-00000.jsonl    (none are made: empty)
    subscriptions/day=D/part-00000.jsonl      renewal decisions {user_id, ts, event}
    served/day=D/part-00000.jsonl             the service's served lists (when rotated here)
    loop.json                                 the per-day report
"""

import concurrent.futures
import dataclasses
import datetime as dt
import json
import os
import pathlib
import threading
import time
from typing import Any, Callable

import numpy as np

from recs.config import Config, require
from recs.contract import features as F
from recs.data.synthetic import (DUPLICATE, GeneratorConfig, Plays, UNKNOWN_TITLE, UNKNOWN_USER,
                                 OVERLONG_WATCH, World, play_events, world_after)
from simulation.behaviour import (BILLING_DAYS, BehaviourConfig, billing_days,
                                  churn_probability, pick, renewal_probability, session_rate,
                                  session_value, updated_satisfaction)

RENEWED, CANCELLED = "renewed", "cancelled"
"""Subscription decisions, as written to `subscriptions/`."""
_SECONDS_PER_DAY = 86_400
_MAX_PLAYS_PER_SESSION = 12
_SLACK_S = 12 * 3600


@dataclasses.dataclass(frozen=True)
class LoopConfig(Config):
    """A closed-loop run.

    Attributes:
        days: simulated days.
        seed: the simulation's randomness (the world's comes from its `GeneratorConfig`).
        slate_size: titles asked for per session (`k`).
        behaviour: the reaction rules' constants.
        workers: users simulated concurrently (each user's sessions stay in order).
        request_timeout_s: a slate request slower than this counts as failed; the user then
            browses as if shown nothing.
    """

    days: int = 14
    seed: int = 11
    slate_size: int = 10
    behaviour: BehaviourConfig = BehaviourConfig()
    workers: int = 8
    request_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        require(self.days > 0, "days", "> 0", self.days)
        require(1 <= self.slate_size <= 100, "slate_size", "in [1, 100]", self.slate_size)
        require(self.workers >= 1, "workers", ">= 1", self.workers)
        require(self.request_timeout_s > 0, "request_timeout_s", "> 0",
                self.request_timeout_s)


@dataclasses.dataclass
class DayReport:
    """What happened on one simulated day."""

    date: str
    subscribers: int = 0
    visitors: int = 0
    sessions: int = 0
    request_errors: dict[str, int] = dataclasses.field(default_factory=dict)
    plays: int = 0
    plays_from_slate: int = 0
    engaged_plays: int = 0
    sessions_without_play: int = 0
    looks: int = 0
    watch_seconds: float = 0.0
    left: int = 0
    renewed: int = 0
    cancelled: int = 0
    mean_satisfaction: float = 0.0
    seconds: float = 0.0
    """Wall-clock time the day took to simulate."""


@dataclasses.dataclass(frozen=True)
class _Session:
    user: int
    index: int
    start: int
    hour: int
    device: int
    wanted: int


@dataclasses.dataclass
class _Outcome:
    """One session's result, as the day's report and the event log need it."""

    events: list[dict[str, Any]]
    plays: int
    from_slate: int
    engaged: int
    looks: int
    watch_seconds: float
    found_nothing: bool
    error: str


class SlateClient:
    """POSTs `/v1/recommendations` to the service; a failure is a string, not an exception
    (the simulated user just sees no slate).

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

    def slate(self, user_id: str, k: int, device_type: str, hour: int
              ) -> tuple[list[str], str]:
        """(title ids, "") or ([], the failure: an HTTP status or an exception's name)."""
        import urllib3

        body = json.dumps({"user_id": user_id, "k": k,
                           "context": {"device_type": device_type, "hour": hour}}).encode()
        try:
            response = self._pool.request("POST", self.url, body=body,
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


class ClosedLoop:
    """Runs simulated days against a recommendation service.

    Args:
        world: the generated world it continues (the service's models were trained on it).
        config: days, seed, behaviour.
        out_dir: where the day logs go (see the module docstring).

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
        self.client: SlateClient | None = None
        self.publish: Callable[[list[dict[str, Any]]], None] | None = None
        self.served_log = ""
        self.settle: Callable[[], None] | None = None
        users = len(self.world.age)
        self.satisfaction = np.full(users, config.behaviour.initial)
        self.subscribed = ~self.world.bot
        self.left = np.zeros(users, dtype=bool)
        self.billing = billing_days(users, config.seed)
        self.title_index = {row[F.TITLE_ID]: index
                            for index, row in enumerate(self.world.titles.rows)}
        self.reports: list[DayReport] = []
        self._now = 0.0

    def attach(self, service_url: str,
               publish: Callable[[list[dict[str, Any]]], None] | None = None,
               served_log: str = "", settle: Callable[[], None] | None = None) -> None:
        """Points the loop at a running service (again, e.g. after it restarted with new
        experiments); the users' state carries on.

        Args:
            service_url: the recommendation service.
            publish: sends a session's raw events to the event queue (`StreamPublisher`);
                None writes the logs only.
            served_log: the service's served-list log file; each day's is moved into
                `served/day=D/` when the day ends (the service reopens the file on each
                write).
            settle: called at each day's end before the clock moves on, e.g.
                `wait_until_consumed`, so the consumer never sees a day's events after the
                clock has left that day behind.
        """
        self.client = SlateClient(service_url, self.config.workers,
                                  self.config.request_timeout_s)
        self.publish, self.served_log, self.settle = publish, served_log, settle

    @property
    def first_date(self) -> dt.date:
        """The first simulated day: the day after the generated logs end."""
        return (dt.date.fromisoformat(self.world_config.start_date)
                + dt.timedelta(days=self.world_config.days))

    def now(self) -> float:
        """The simulated clock (seconds since the epoch) that the profile consumer takes as
        the events' arrival time: the end of the day being simulated plus `_SLACK_S`, as
        late-evening sessions run on past midnight."""
        return self._now

    def run(self, days: int | None = None) -> list[DayReport]:
        """Simulates `days` more days (default `config.days`), continuing from the last day
        run; returns their reports (all days' are in `loop.json`).

        Raises:
            ValueError: no service attached.
        """
        require(self.client is not None, "service", "attached first (ClosedLoop.attach)",
                None)
        if not self.reports:
            self._write_tables()
        first = len(self.reports)
        for day in range(first, first + (self.config.days if days is None else days)):
            self.reports.append(self.run_day(day))
            (self.out / "loop.json").write_text(json.dumps(
                {"config": self.config.to_dict(), "world": self.world_config.to_dict(),
                 "days": [dataclasses.asdict(report) for report in self.reports]},
                indent=1) + "\n")
        return self.reports[first:]

    def _write_tables(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with (self.out / "users.jsonl").open("w") as handle:
            for user in range(len(self.world.age)):
                handle.write(json.dumps(self.world.profile(user)) + "\n")
        with (self.out / "titles.jsonl").open("w") as handle:
            for row in self.world.titles.rows:
                handle.write(json.dumps(row) + "\n")

    def run_day(self, day: int) -> DayReport:
        """Simulates one day: sessions, churn, renewals; writes its logs."""
        started = time.perf_counter()
        date = self.first_date + dt.timedelta(days=day)
        day_start = int(dt.datetime(date.year, date.month, date.day,
                                    tzinfo=dt.timezone.utc).timestamp())
        self._now = float(day_start + _SECONDS_PER_DAY + _SLACK_S)
        report = DayReport(date.isoformat())
        sessions = self._sessions(day, day_start)
        by_user: dict[int, list[_Session]] = {}
        for session in sessions:
            by_user.setdefault(session.user, []).append(session)
        report.subscribers = int((self.subscribed & ~self.left).sum())
        report.visitors = len(by_user)
        report.sessions = len(sessions)
        day_tag = f"{date:%Y%m%d}"
        outcomes: dict[int, list[_Outcome]] = {}
        with concurrent.futures.ThreadPoolExecutor(self.config.workers) as pool:
            futures = {pool.submit(self._user_sessions, day, day_tag, user, user_sessions): user
                       for user, user_sessions in by_user.items()}
            for future in concurrent.futures.as_completed(futures):
                outcomes[futures[future]] = future.result()
        events_dir = self.out / "events" / f"day={date.isoformat()}"
        events_dir.mkdir(parents=True, exist_ok=True)
        with (events_dir / "part-00000.jsonl").open("w") as handle:
            for user in sorted(outcomes):  # A fixed order, whatever finished first.
                for outcome in outcomes[user]:
                    for event in outcome.events:
                        handle.write(json.dumps(event) + "\n")
                    report.plays += outcome.plays
                    report.plays_from_slate += outcome.from_slate
                    report.engaged_plays += outcome.engaged
                    report.looks += outcome.looks
                    report.watch_seconds += outcome.watch_seconds
                    report.sessions_without_play += outcome.found_nothing
                    if outcome.error:
                        report.request_errors[outcome.error] = (
                            report.request_errors.get(outcome.error, 0) + 1)
        updates_dir = self.out / "profile_updates" / f"day={date.isoformat()}"
        updates_dir.mkdir(parents=True, exist_ok=True)
        (updates_dir / "part-00000.jsonl").write_text("")
        if self.settle is not None:
            self.settle()
        self._churn_and_renewals(day, date, day_start, report)
        report.mean_satisfaction = float(self.satisfaction[self.subscribed].mean()
                                         if self.subscribed.any() else 0.0)
        if self.served_log and os.path.exists(self.served_log):
            served_dir = self.out / "served" / f"day={date.isoformat()}"
            served_dir.mkdir(parents=True, exist_ok=True)
            os.replace(self.served_log, served_dir / "part-00000.jsonl")
        report.seconds = round(time.perf_counter() - started, 2)
        return report

    def _sessions(self, day: int, day_start: int) -> list[_Session]:
        """The day's sessions of subscribers who have not left: the generator's timing,
        devices and binge lengths, at a rate set by satisfaction."""
        world, config = self.world, self.world_config
        rng = np.random.default_rng([self.config.seed, day, 0])
        users = np.flatnonzero(self.subscribed & ~self.left)
        weekend = dt.datetime.fromtimestamp(day_start, dt.timezone.utc).weekday() >= 5
        base = (config.sessions_per_user_day * world.activity[users]
                * np.exp(-world.decay[users] * (config.days + day)) * (1.3 if weekend else 1.0))
        counts = rng.poisson(session_rate(base, self.satisfaction[users],
                                          self.config.behaviour))
        user = np.repeat(users, counts)
        hour = np.clip(rng.normal(world.evening_hour[user], 2.5), 0, 23.9)
        start = day_start + (hour * 3600 + rng.integers(0, 3600, len(user))).astype(
            np.int64) % _SECONDS_PER_DAY
        device = np.minimum((rng.random((len(user), 1)) > world.device_cdf[user]).sum(axis=1),
                            len(F.DEVICE_TYPES) - 1)
        wanted = 1 + np.minimum(rng.poisson(world.binge[user]), _MAX_PLAYS_PER_SESSION - 1)
        order = np.lexsort((start, user))
        index = np.zeros(len(user), dtype=int)
        for position in range(1, len(order)):  # Each user's sessions numbered in time order.
            if user[order[position]] == user[order[position - 1]]:
                index[order[position]] = index[order[position - 1]] + 1
        return [_Session(int(user[i]), int(index[i]), int(start[i]),
                         int(((start[i] - day_start) // 3600) % 24), int(device[i]),
                         int(wanted[i])) for i in order]

    def _user_sessions(self, day: int, day_tag: str, user: int,
                       sessions: list[_Session]) -> list[_Outcome]:
        return [self._session(day, day_tag, session) for session in sessions]

    def _session(self, day: int, day_tag: str, session: _Session) -> _Outcome:
        """One session: ask for a slate, pick and watch up to `wanted` titles, publish."""
        behaviour = self.config.behaviour
        rng = np.random.default_rng([self.config.seed, day, 1, session.user, session.index])
        user_id = f"u{session.user:06d}"
        assert self.client is not None  # run() checked.
        titles, error = self.client.slate(user_id, self.config.slate_size,
                                          F.DEVICE_TYPES[session.device], session.hour)
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
            engaged, watched, liked = self.world.watch(users, title, devices, rng)
            # Plays follow each other: the looks before each, the watch, a 30-300 s pause.
            offsets = np.concatenate([[0], np.cumsum(watched[:-1].astype(np.int64) + 2
                                                     + rng.integers(30, 300, len(picks) - 1))])
            false = np.zeros(len(picks), dtype=bool)
            plays = Plays(user=users, title=title, device=devices,
                          start=np.array(starts) + offsets, watched=watched, engaged=engaged,
                          liked=liked, ghost_session=false, ghost_title=false, overlong=false)
            counts = {UNKNOWN_USER: 0, UNKNOWN_TITLE: 0, OVERLONG_WATCH: 0, DUPLICATE: 0}
            events = [{"event_id": f"s{day_tag}-{session.user:06d}-{session.index:03d}-{n:03d}",
                       **event} for n, (event, _) in enumerate(
                          play_events(self.world, plays, day_tag, rng, counts))]
        else:
            engaged, watched, events = np.zeros(0, dtype=bool), np.zeros(0), []
        value = session_value(int(engaged.sum()), looks, not picks, behaviour)
        # One thread runs a user's sessions at a time: this element is its own.
        self.satisfaction[session.user] = updated_satisfaction(
            self.satisfaction[session.user], value, behaviour)
        if events and self.publish is not None:
            self.publish(events)
        return _Outcome(events, len(picks), sum(p.from_slate for p in picks),
                        int(engaged.sum()), looks, float(watched.sum()), not picks, error)

    def _churn_and_renewals(self, day: int, date: dt.date, day_start: int,
                            report: DayReport) -> None:
        behaviour = self.config.behaviour
        rng = np.random.default_rng([self.config.seed, day, 2])
        staying = self.subscribed & ~self.left
        leaving = staying & (rng.random(len(staying)) < churn_probability(
            self.satisfaction, self.world.decay > 0, behaviour))
        self.left |= leaving
        report.left = int(leaving.sum())
        due = self.subscribed & (self.billing == (self.world_config.days + day) % BILLING_DAYS)
        renews = ~self.left & (rng.random(len(due)) < renewal_probability(self.satisfaction,
                                                                          behaviour))
        subscriptions_dir = self.out / "subscriptions" / f"day={date.isoformat()}"
        subscriptions_dir.mkdir(parents=True, exist_ok=True)
        with (subscriptions_dir / "part-00000.jsonl").open("w") as handle:
            for user in np.flatnonzero(due):
                event = RENEWED if renews[user] else CANCELLED
                handle.write(json.dumps({F.USER_ID: f"u{user:06d}",
                                         "ts": day_start + _SECONDS_PER_DAY - 1,
                                         "event": event}) + "\n")
        report.renewed = int((due & renews).sum())
        report.cancelled = int((due & ~renews).sum())
        self.subscribed &= ~(due & ~renews)


class StreamPublisher:
    """A `ClosedLoop.publish` that XADDs each session's events to the project's event stream
    (`serving.consumer.publish`), counting what it sent.

    Args:
        redis_url: the event queue.
    """

    def __init__(self, redis_url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(redis_url)  # Thread-safe: a connection per call.
        self._lock = threading.Lock()
        self.published = 0

    def __call__(self, events: list[dict[str, Any]]) -> None:
        from serving.consumer import publish

        publish(self._client, events)
        with self._lock:
            self.published += len(events)


def wait_until_consumed(updater: Any, publisher: StreamPublisher, timeout_s: float = 300.0,
                        poll_s: float = 0.05) -> None:
    """Blocks until a running `serving.consumer.ProfileUpdater` has finished every event the
    publisher sent (a `ClosedLoop.settle`: the next day starts on an up-to-date store).

    Raises:
        TimeoutError: the consumer did not catch up within `timeout_s`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        counts = updater.counts
        finished = counts.applied + counts.duplicates + sum(counts.dead_lettered.values())
        if finished >= publisher.published:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the profile consumer finished {finished} of "
                               f"{publisher.published} events within {timeout_s} s")
        time.sleep(poll_s)
