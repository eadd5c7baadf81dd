"""The closed loop against the real stack: the tiny world's models behind the local model
server, the recommendation service over HTTP, a Redis event stream and the profile consumer,
and the day logs read back by Beam ingestion; and the loop alone against a stub service (its
random streams, rounds, new subscribers, resuming)."""

import json
import threading

import numpy as np
import pytest

from recs.contract import features as F

DAYS = 2
JOINERS = 3


@pytest.fixture(scope="module")
def loop_run(tiny_world, server, redis_url, tmp_path_factory):
    """Two simulated days of the tiny world's users, and of three new subscribers a day,
    against the running service."""
    import redis

    from recs.data.catalogue import read_jsonl
    from serving.app import build_app
    from serving.config import ServiceConfig
    from serving.consumer import ProfileUpdater
    from serving.api.service import ServiceServer
    from serving.online.store import RedisProfileStore, load_store
    from simulation import ClosedLoop, LoopConfig, StreamPublisher, wait_until_consumed
    from tfx_pipeline.world import WorldConfig

    url = redis_url.rsplit("/", 1)[0] + "/5"  # A database of its own.
    client = redis.Redis.from_url(url)
    client.flushdb()
    load_store(RedisProfileStore(url), str(tiny_world.raw / "users.jsonl"),
               tiny_world.examples_glob)
    out = tmp_path_factory.mktemp("loop")
    served_log = out / "served.jsonl"
    config = ServiceConfig(model_server=server.rest_url, serving_dir=str(tiny_world.serving_dir),
                           store=url, profile_changes=url, served_log=str(served_log))
    durations = {row[F.TITLE_ID]: float(row[F.DURATION_SECONDS])
                 for row in read_jsonl(str(tiny_world.raw / "titles.jsonl"))}
    with ServiceServer(build_app(config)) as service:
        send = StreamPublisher(url, batch=50)
        loop = ClosedLoop(WorldConfig().generator,
                          LoopConfig(days=DAYS, workers=4, joiners_per_day=JOINERS),
                          out / "world")
        updater = ProfileUpdater(client, RedisProfileStore(url), durations, clock=loop.now)
        loop.attach(service.url, publish=send, served_log=str(served_log),
                    settle=lambda: wait_until_consumed(updater, send, timeout_s=60),
                    sign_up=RedisProfileStore(url).upsert_profiles)
        stop = threading.Event()
        consumer = threading.Thread(target=updater.run, args=(stop,), daemon=True)
        consumer.start()
        reports = loop.run()
        stop.set()
        consumer.join(timeout=30)
    updater.drain()
    counts = updater.counts  # The running consumer's and the drain's together.
    yield {"reports": reports, "out": out / "world", "counts": counts,
           "store": RedisProfileStore(url), "loop": loop, "publisher": send}
    client.flushdb()


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_each_session_asks_the_service_once_and_the_log_is_rotated_by_day(loop_run):
    out, reports = loop_run["out"], loop_run["reports"]
    assert len(reports) == DAYS and sum(r.sessions for r in reports) > 0
    for report in reports:
        assert report.request_errors == {}
        served = _lines(out / "served" / f"day={report.date}" / "part-00000.jsonl")
        # One served list per session, each for a user of the world, at most the 10 asked
        # for (fewer when the tiny catalogue's candidates are mostly finished titles).
        assert len(served) == report.sessions
        assert all(line["user_id"].startswith("u") and 0 < len(line["items"]) <= 10
                   for line in served)


def test_plays_come_from_the_slate_and_from_browsing(loop_run):
    reports = loop_run["reports"]
    plays = sum(r.plays for r in reports)
    from_slate = sum(r.plays_from_slate for r in reports)
    assert 0 < from_slate < plays
    assert 0 < sum(r.engaged_plays for r in reports) <= plays
    assert sum(r.watch_seconds for r in reports) > 0


def test_plays_flow_through_the_queue_into_the_profile_store(loop_run):
    out, counts, store = loop_run["out"], loop_run["counts"], loop_run["store"]
    events = [event for report in loop_run["reports"] for event in
              _lines(out / "events" / f"day={report.date}" / "part-00000.jsonl")]
    # Every event published was applied by the consumer (nothing refused: the simulated clock
    # is the arrival time), and the store now holds the titles the loop's users started.
    assert counts.applied == len(events) and counts.dead_lettered == {}
    starts = [e for e in events if e["event_type"] == "play_start"]
    assert starts
    last = starts[-1]
    assert last[F.TITLE_ID] in store.history(last[F.USER_ID])


def test_the_day_logs_are_what_ingestion_reads(loop_run, tmp_path):
    from monitoring.outcomes import read_records
    from transforms.ingestion import IngestionConfig, run_ingestion

    out = loop_run["out"]
    report = run_ingestion(IngestionConfig(events_glob=str(out / "events" / "*" / "*"),
                                           users_path=str(out / "users.jsonl"),
                                           titles_path=str(out / "titles.jsonl"),
                                           output_dir=str(tmp_path / "ingested")))
    assert report.balanced and report.events_dead_lettered == 0
    assert sorted(report.records_per_span) == [r.date for r in loop_run["reports"]]
    # A record per (user, title, session): every pair the loop played, none other; two
    # simulated sessions of a user close enough together are one session to ingestion.
    records = read_records(str(tmp_path / "ingested" / "examples" / "*" / "*.tfrecord.gz"))
    played = {(e[F.USER_ID], e[F.TITLE_ID]) for report in loop_run["reports"]
              for e in _lines(out / "events" / f"day={report.date}" / "part-00000.jsonl")}
    assert {(u.decode(), t.decode()) for u, t in zip(records[F.USER_ID],
                                                     records[F.TITLE_ID])} == played
    assert len(played) <= report.records_written <= sum(r.plays for r in loop_run["reports"])


def test_cancellations_and_renewals_are_written_when_they_happen(loop_run):
    out, loop = loop_run["out"], loop_run["loop"]
    for day, report in enumerate(loop_run["reports"]):
        decisions = _lines(out / "subscriptions" / f"day={report.date}" / "part-00000.jsonl")
        assert len(decisions) == report.renewed + report.cancelled
        for decision in decisions:
            user = int(decision["user_id"][1:])
            billing_day = loop.billing[user] == (loop.world_config.days + day) % 30
            if decision["event"] == "renewed":
                assert billing_day and loop.cancelled_day[user] == -1
            else:  # Left on their own that day, or did not renew on their billing day.
                assert decision["event"] == "cancelled" and loop.cancelled_day[user] == day
                assert loop.left_day[user] == day or billing_day
    # New subscribers pay at sign-up: none renews within the first cycle.
    renewed = {d["user_id"] for report in loop_run["reports"] for d in _lines(
        out / "subscriptions" / f"day={report.date}" / "part-00000.jsonl")
        if d["event"] == "renewed"}
    assert not renewed & {loop.user_id(u) for u in (loop.joined_day >= 0).nonzero()[0]}


def test_new_subscribers_are_served_and_their_plays_reach_the_store(loop_run):
    out, loop, store = loop_run["out"], loop_run["loop"], loop_run["store"]
    joiners = [loop.user_id(int(u)) for u in (loop.joined_day >= 0).nonzero()[0]]
    assert len(joiners) == DAYS * JOINERS
    served = [line for report in loop_run["reports"] for line in _lines(
        out / "served" / f"day={report.date}" / "part-00000.jsonl")]
    new_lists = [line for line in served if line["user_id"] in joiners]
    # Served by the models from what they gave at sign-up (no popularity fallback).
    assert new_lists and all(line["fallback"] is None for line in new_lists)
    profiles = {row["user_id"] for row in _lines(out / "users.jsonl")}
    assert set(joiners) <= profiles
    starts = [e for report in loop_run["reports"] for e in _lines(
        out / "events" / f"day={report.date}" / "part-00000.jsonl")
        if e["event_type"] == "play_start" and e["user_id"] in joiners]
    assert starts and all(e[F.TITLE_ID] in store.history(e[F.USER_ID]) for e in starts)


def test_events_go_to_the_queue_in_batches(loop_run):
    publisher, reports = loop_run["publisher"], loop_run["reports"]
    # Fewer pipelines than sessions with a play: batches of up to 50 events, flushed at each
    # round's end.
    assert publisher.published == loop_run["counts"].applied
    assert 0 < publisher.pipelines < sum(r.sessions - r.sessions_without_play for r in reports)


# The loop alone, against a stub service that answers at once.

class _StubService:
    """Answers each slate request with `titles(user index)`; records who asked with a
    profile."""

    def __init__(self, titles):
        self.titles = titles
        self.with_profile = []

    def slate(self, user_id, k, device_type, hour, profile=None):
        if profile is not None:
            self.with_profile.append((user_id, tuple(sorted(profile))))
        return self.titles(int(user_id[1:]))[:k], ""


_SMALL_WORLD = dict(num_users=200, num_titles=60, days=2, seed=5)


def _stub_loop(out, slate="popular", **config):
    """A loop whose service shows everyone the most popular titles, or each user the titles
    the hidden truth says they like most ("best") or least ("worst")."""
    from recs.data.synthetic import GeneratorConfig
    from simulation import ClosedLoop, LoopConfig

    loop = ClosedLoop(GeneratorConfig(**_SMALL_WORLD), LoopConfig(**{"days": 3, "workers": 3,
                                                                    **config}), out)
    ids = [row[F.TITLE_ID] for row in loop.world.titles.rows]
    popular = [row[F.TITLE_ID] for row in sorted(loop.world.titles.rows,
                                                 key=lambda row: -row[F.POPULARITY])]

    def by_taste(user):
        affinity = loop.world.affinity(np.full(len(ids), user), np.arange(len(ids)))
        order = np.argsort(-affinity if slate == "best" else affinity)
        return [ids[title] for title in order]

    loop.client = _StubService(lambda user: popular if slate == "popular" else by_taste(user))
    return loop


def _day_logs(out):
    return {str(path.relative_to(out)): path.read_text()
            for path in sorted(out.glob("*/day=*/*.jsonl"))}


def test_a_users_sessions_do_not_depend_on_who_else_is_active(tmp_path):
    everyone, some = _stub_loop(tmp_path / "a"), _stub_loop(tmp_path / "b")
    some.left[::2] = True  # Half the users gone: the others' draws must not move.
    day_start = 1_800_000_000
    kept = {(s.user, s.slot, s.start, s.device, s.wanted)
            for s in everyone._sessions(0, day_start) if s.user % 2}
    assert kept == {(s.user, s.slot, s.start, s.device, s.wanted)
                    for s in some._sessions(0, day_start)}
    assert kept and all(user % 2 for user, *_ in kept)


def test_sessions_run_in_rounds_in_time_order(tmp_path):
    sessions = _stub_loop(tmp_path)._sessions(0, 1_800_000_000)
    assert [s.index for s in sessions] == sorted(s.index for s in sessions)
    by_user = {}
    for session in sessions:
        by_user.setdefault(session.user, []).append(session)
    for mine in by_user.values():
        # Rounds 0, 1, 2, ... in the order of the sessions' start times.
        assert [s.index for s in mine] == list(range(len(mine)))
        assert sorted(mine, key=lambda s: s.start) == sorted(mine, key=lambda s: s.index)


def test_two_runs_shown_the_same_slates_are_identical(tmp_path):
    first, second = (_stub_loop(tmp_path / name, joiners_per_day=4) for name in "ab")
    first.run(), second.run()
    assert first.user_outcomes() == second.user_outcomes()
    assert _day_logs(tmp_path / "a") == _day_logs(tmp_path / "b")


def test_another_slate_changes_what_users_do_from_the_same_start(tmp_path):
    good, bad = (_stub_loop(tmp_path / "good", slate="best"),
                 _stub_loop(tmp_path / "bad", slate="worst"))
    day_start = 1_800_000_000
    # The same first day's sessions (the same streams, nothing has happened yet) ...
    assert ([(s.user, s.start) for s in good._sessions(0, day_start)]
            == [(s.user, s.start) for s in bad._sessions(0, day_start)])
    good.run(), bad.run()
    # ... but titles they dislike are started and enjoyed from the slate less often.
    from_slate = [sum(row["engaged_from_slate"] for row in loop.user_outcomes())
                  for loop in (good, bad)]
    assert from_slate[0] > 2 * from_slate[1]


def test_new_subscribers_join_by_the_generators_rule_and_send_their_profile(tmp_path):
    loop = _stub_loop(tmp_path, joiners_per_day=5)
    signed_up = []
    loop.sign_up = signed_up.extend
    loop.run()
    users = _SMALL_WORLD["num_users"] + 3 * 5
    # Every per-user array of the world grew by the same people.
    for name, values in vars(loop.world).items():
        if isinstance(values, np.ndarray) and name != "centroids":
            assert len(values) == users, name
    assert len(loop.satisfaction) == len(loop.joined_day) == users
    joined = np.flatnonzero(loop.joined_day >= 0)
    assert loop.joined_day[joined].tolist() == [0] * 5 + [1] * 5 + [2] * 5
    # Their own draws: new people, not copies of one another.
    assert len({tuple(loop.world.user_latent[u].round(6)) for u in joined}) == 15
    signed = {row["user_id"] for row in signed_up}
    assert signed == {loop.user_id(int(u)) for u in joined if not loop.world.bot[u]}
    asked = {user for user, _ in loop.client.with_profile}
    assert asked and asked <= signed
    assert {fields for _, fields in loop.client.with_profile} == {
        ("age", "country", "preferred_genres", "subscription_tier")}
    updates = _lines(tmp_path / "profile_updates" / "day=2026-01-07" / "part-00000.jsonl")
    assert [row["user_id"] for row in updates] == [loop.user_id(200 + n) for n in range(5)
                                                   if not loop.world.bot[200 + n]]
    rows = {row["user_id"]: row for row in loop.user_outcomes()}
    assert {rows[u]["cohort"] for u in signed} == {"new"}


def test_a_resumed_run_continues_where_it_stopped(tmp_path):
    straight = _stub_loop(tmp_path / "straight", joiners_per_day=3)
    straight.run()
    interrupted = _stub_loop(tmp_path / "resumed", joiners_per_day=3)
    interrupted.run(1)
    resumed = _stub_loop(tmp_path / "resumed", joiners_per_day=3, workers=1)  # Any workers.
    assert resumed.resume() == 1
    resumed.run(2)
    assert resumed.user_outcomes() == straight.user_outcomes()
    assert _day_logs(tmp_path / "resumed") == _day_logs(tmp_path / "straight")
    assert [r.date for r in resumed.reports] == [r.date for r in straight.reports]


def test_resume_refuses_the_state_of_another_run(tmp_path):
    _stub_loop(tmp_path, seed=1).run(1)
    with pytest.raises(ValueError, match="out_dir"):
        _stub_loop(tmp_path, seed=2).resume()
    assert _stub_loop(tmp_path / "empty").resume() == 0


def test_a_sample_simulates_the_same_share_of_users(tmp_path):
    half, again = (_stub_loop(tmp_path / name, sample=0.5) for name in "ab")
    assert np.array_equal(half.simulated, again.simulated)
    assert 0.35 < half.simulated.mean() < 0.65
    half.run(1)
    visited = {int(row["user_id"][1:]) for row in half.user_outcomes() if row["sessions"]}
    assert visited and all(half.simulated[user] for user in visited)


@pytest.mark.parametrize("field, value", [("joiners_per_day", -1), ("sample", 0.0),
                                          ("sample", 1.5), ("workers", 0)])
def test_bad_loop_settings_are_refused(field, value):
    from simulation import LoopConfig

    with pytest.raises(ValueError, match=field):
        LoopConfig(**{field: value})


def test_the_publisher_sends_events_in_batches(redis_url):
    import redis

    from recs.contract.events import EVENT_STREAM
    from simulation import StreamPublisher

    url = redis_url.rsplit("/", 1)[0] + "/6"
    client = redis.Redis.from_url(url)
    client.flushdb()
    publisher = StreamPublisher(url, batch=5)
    publisher([{"n": 1}, {"n": 2}, {"n": 3}])
    assert (publisher.published, client.xlen(EVENT_STREAM)) == (0, 0)  # Still buffered.
    publisher([{"n": 4}, {"n": 5}, {"n": 6}])  # 6 >= 5: one pipeline of all six.
    assert (publisher.published, publisher.pipelines, client.xlen(EVENT_STREAM)) == (6, 1, 6)
    publisher([{"n": 7}])
    publisher.flush()
    assert (publisher.published, publisher.pipelines, client.xlen(EVENT_STREAM)) == (7, 2, 7)
    client.flushdb()
