"""The Redis consumer against a seeded hostile stream: every hostile event class as a message
value, undecodable and missing field names, with valid events between them, consumed by a
`recs consume` process that is killed (SIGKILL) twice mid-stream and restarted.

Figures: `inputs` (hostile messages), `crashes` (a consumer run that ended other than by our
kill, or never got through the stream), `server_errors` (messages quarantined by their delivery
count: the consumer failing on a message rather than refusing it), `lost` (valid events not
applied, hostile messages neither dead-lettered nor applied), `duplicated` (valid events applied
twice: a user's like count above what was sent).
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

from benchmarks.hostile import events as H
from recs.contract.layout import RunLayout


def _consumer(redis_url: str, store: str, catalogue: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "recs_cli.main", "consume", "--redis", redis_url, "--store",
         store, "--catalogue", catalogue, "--consumer", "worker", "--until-idle"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def run(redis_url: str, seed: int = 0, count: int = 300, kills: int = 2,
        workdir: str = "") -> dict:
    """Publishes the stream, consumes it with `kills` SIGKILLs, and counts the outcome."""
    import redis

    from serving.consumer import QUARANTINED, publish
    from serving.online.store import SqliteProfileStore

    root = pathlib.Path(workdir or tempfile.mkdtemp(prefix="hostile-consumer-"))
    client = redis.Redis.from_url(redis_url)
    client.delete("recs:events", "recs:events:dead")
    now = int(time.time())
    corpus = H.corpus(seed, count, now - 86_400, 86_400)
    store_path = str(RunLayout(root).store)
    catalogue = root / "titles.jsonl"
    catalogue.write_text("".join(json.dumps(t) + "\n" for t in H.catalogue()))
    store = SqliteProfileStore(store_path)
    store.upsert_profiles(H.profiles())
    hostile = [{b"event": record} for _, record in corpus.hostile]
    hostile += [{b"\xffevent": json.dumps(corpus.valid[0]).encode()}, {b"other": b"x"}]
    hostile_ids, step = set(), max(1, len(corpus.valid) // len(hostile) or 1)
    for index, entry in enumerate(hostile):
        hostile_ids.add(client.xadd("recs:events", entry).decode())
        publish(client, corpus.valid[index * step:(index + 1) * step])
    publish(client, corpus.valid[len(hostile) * step:])
    total = len(hostile) + len(corpus.valid)

    crashes = 0
    for kill in range(kills):
        process = _consumer(redis_url, store_path, str(catalogue))
        target = (kill + 1) * total // (kills + 1)
        deadline = time.monotonic() + 120
        while _done(client) < target and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            time.sleep(0.01)
        if process.poll() is not None:  # Ended on its own before the kill: a crash, or done.
            crashes += int(process.returncode != 0)
        else:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    final = _consumer(redis_url, store_path, str(catalogue))
    output, _ = final.communicate(timeout=600)
    crashes += int(final.returncode != 0)
    counts = json.loads(output.strip().splitlines()[-1]) if final.returncode == 0 else {}

    expected: dict[str, int] = {}
    for event in corpus.valid:
        expected[event["user_id"]] = expected.get(event["user_id"], 0) + 1
    likes = {user: int(store.stats(user)["likes"]) for user in H.USERS}
    dead = client.xrange("recs:events:dead")
    dead_ids = {entry[b"message_id"].decode() for _, entry in dead}
    quarantined = sum(entry[b"reason"] == QUARANTINED.encode() for _, entry in dead)
    return {
        "inputs": len(hostile), "crashes": crashes, "server_errors": quarantined,
        "lost": sum(max(0, n - likes.get(user, 0)) for user, n in expected.items())
        + len(hostile_ids - dead_ids),
        "duplicated": sum(max(0, likes.get(user, 0) - expected.get(user, 0))
                          for user in H.USERS),
        "valid": len(corpus.valid), "kills": kills,
        "dead_letter_entries": len(dead), "last_run_counts": counts,
        "by_class": {**corpus.by_class, "undecodable_field_name": 1, "missing_event_field": 1},
    }


def _done(client) -> int:
    """Messages acknowledged so far (delivered minus pending) in the consumer group."""
    try:
        groups = client.xinfo_groups("recs:events")
    except Exception:  # noqa: BLE001  (the group does not exist before the first read)
        return 0
    group = next((g for g in groups if g["name"] == b"profile-updater"), None)
    if group is None:
        return 0
    return int(group.get("entries-read") or 0) - int(group["pending"])


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"),
                     indent=2))
