"""The closed loop against the real stack: the tiny world's models behind the local model
server, the recommendation service over HTTP, a Redis event stream and the profile consumer,
and the day logs read back by Beam ingestion."""

import json
import threading

import pytest

from recs.contract import features as F

DAYS = 2


@pytest.fixture(scope="module")
def loop_run(tiny_world, server, redis_url, tmp_path_factory):
    """Two simulated days of the tiny world's users against the running service."""
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
        send = StreamPublisher(url)
        loop = ClosedLoop(WorldConfig().generator, LoopConfig(days=DAYS, workers=4),
                          out / "world")
        updater = ProfileUpdater(client, RedisProfileStore(url), durations, clock=loop.now)
        loop.attach(service.url, publish=send, served_log=str(served_log),
                    settle=lambda: wait_until_consumed(updater, send, timeout_s=60))
        stop = threading.Event()
        consumer = threading.Thread(target=updater.run, args=(stop,), daemon=True)
        consumer.start()
        reports = loop.run()
        stop.set()
        consumer.join(timeout=30)
    updater.drain()
    counts = updater.counts  # The running consumer's and the drain's together.
    yield {"reports": reports, "out": out / "world", "counts": counts,
           "store": RedisProfileStore(url), "loop": loop}
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


def test_renewals_are_written_on_billing_days(loop_run):
    out = loop_run["out"]
    for report in loop_run["reports"]:
        decisions = _lines(out / "subscriptions" / f"day={report.date}" / "part-00000.jsonl")
        assert len(decisions) == report.renewed + report.cancelled
        assert {d["event"] for d in decisions} <= {"renewed", "cancelled"}
    loop = loop_run["loop"]
    # Who is due is fixed by the seed: the users whose billing day is one of these days.
    due = sum(int(((loop.billing == (loop.world_config.days + day) % 30)
                   & ~loop.world.bot).sum()) for day in range(DAYS))
    assert sum(r.renewed + r.cancelled for r in loop_run["reports"]) == due
