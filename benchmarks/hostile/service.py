"""Hostile clients of the recommendation service (`recs serve`), and what its load shedding buys.

`run` generates a seeded corpus by code, one class of input at a time, throws it at a running
service over raw sockets (so that it can send what no HTTP library would), interleaves valid
requests whose answers it checks, and counts what came back:

    wrong_types       `"k": true`, `"k": "5"`, `"k": 5.5`, a profile's `"age": false`   422
    out_of_range      k 0 or 101, hour 24, diversity 1.5, a 129-character user_id      422
    non_finite        NaN, Infinity, -Infinity literals, 1e400                         400
    huge_numbers      integers of 20 to 5000 digits                                    400/422
    deep_nesting      arrays and objects nested 1,000 to 7,000 deep                    400/413/422
    unknown_fields    fields the schema does not have, at every level                  422
    bad_utf8          invalid or overlong UTF-8, a byte-order mark, UTF-16             400
    lone_surrogates   "\\ud800" and "\\udfff" escapes in values and in keys            400
    not_an_object     an empty body, null, a list, text/plain, random bytes            400/415/422
    oversized         a body over the cap, declared or streamed chunked                413
    malformed_http    broken request lines, bad Content-Length or chunks, huge heads   4xx
    wrong_route       unknown paths, wrong methods, percent-encoded garbage            400/404/405
    slow_clients      idle sockets, heads or bodies that never end, a byte at a time   408
    bursts            many valid requests at once, above the concurrency limit         200/503

An answer to a hostile input is refused (a 4xx with the `{"error": ...}` envelope), shed
(503 with Retry-After), closed (the connection ended with no answer: allowed for malformed
HTTP, slow clients and oversized bodies only, whose senders may see the close before the
answer), a server error (any other 5xx), accepted (a 2xx: the service took it as valid) or
unenveloped (a 4xx without the envelope). A valid request is answered (200 with items for its
user), shed, or lost. `crashes` counts health probes that found the service not answering
after a hostile input.

`shedding_p99` measures what the concurrency limit (`ServiceConfig.max_in_flight`) buys:
closed-loop clients in another process, each sending one valid request after another on a
kept-alive connection, against the default limit and against none.

    python benchmarks/hostile/service.py                # both, over the cached tiny world
    python benchmarks/hostile/service.py --sweep        # limits x clients, to place the default
"""

import argparse
import concurrent.futures
import contextlib
import dataclasses
import http.client
import json
import multiprocessing
import pathlib
import random
import socket
import threading
import time
import urllib.parse
from typing import Callable, Iterator

from recs.contract.layout import RunLayout

ENDPOINT = "/v1/recommendations"
_Service = contextlib.AbstractContextManager[str]
"""A running service's base URL while the context lasts."""
DEVICES = ("tv", "mobile", "tablet", "web")
_CLASSES = ("wrong_types", "out_of_range", "non_finite", "huge_numbers", "deep_nesting",
            "unknown_fields", "bad_utf8", "lone_surrogates", "not_an_object", "oversized",
            "malformed_http", "wrong_route", "slow_clients", "bursts")
_CLOSE_ALLOWED = ("malformed_http", "slow_clients", "oversized")
_EXPECTED = {"wrong_types": {422}, "out_of_range": {422}, "non_finite": {400},
             "huge_numbers": {400, 422}, "deep_nesting": {400, 413, 422},
             "unknown_fields": {422}, "bad_utf8": {400}, "lone_surrogates": {400},
             "not_an_object": {400, 415, 422}, "oversized": {413},
             "malformed_http": {400, 404, 405, 408, 413, 431}, "wrong_route": {400, 404, 405},
             "slow_clients": {408}}


@dataclasses.dataclass(frozen=True)
class _Answer:
    status: int | None  # None: the connection closed (or timed out) without a response.
    headers: dict[str, str]
    body: bytes
    timed_out: bool = False

    def envelope(self) -> bool:
        try:
            body = json.loads(self.body)
        except ValueError:
            return False
        return (isinstance(body, dict) and isinstance(body.get("error"), str)
                and self.headers.get("content-type", "").startswith("application/json"))

    def shed(self) -> bool:
        return self.status == 503 and "retry-after" in self.headers and self.envelope()


@dataclasses.dataclass(frozen=True)
class _Hostile:
    """One hostile input: the bytes to send, in parts with pauses for slow clients."""

    kind: str
    parts: tuple[bytes, ...]
    pause_s: float = 0.0  # Between parts.
    linger_s: float = 0.0  # After the last part, before giving up on an answer.


def _exchange(address: tuple[str, int], parts: tuple[bytes, ...], pause_s: float = 0.0,
              timeout_s: float = 30.0) -> _Answer:
    """Sends `parts` on a new connection and reads one response (or the close)."""
    with socket.create_connection(address, timeout=timeout_s) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for index, part in enumerate(parts):
                if index and pause_s:
                    time.sleep(pause_s)
                if part:
                    connection.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # Refused mid-send: the answer, if any, is waiting to be read.
        received = b""
        try:
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                received += chunk
                if _complete(received):
                    break
        except ConnectionResetError:
            pass
        except socket.timeout:
            return dataclasses.replace(_parse(received), timed_out=True)
    return _parse(received)


def _complete(received: bytes) -> bool:
    head, separator, body = received.partition(b"\r\n\r\n")
    if not separator:
        return False
    length = _parse(head + separator).headers.get("content-length")
    return length is not None and len(body) >= int(length)


def _parse(received: bytes) -> _Answer:
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        return _Answer(None, {}, b"")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return _Answer(status, headers, body)


def _post(body: bytes, content_type: bytes | None = b"application/json",
          path: bytes = ENDPOINT.encode(), extra: bytes = b"") -> bytes:
    head = [b"POST " + path + b" HTTP/1.1", b"Host: service", b"Connection: close",
            b"Content-Length: %d" % len(body)]
    if content_type is not None:
        head.append(b"Content-Type: " + content_type)
    return b"\r\n".join(head) + b"\r\n" + extra + b"\r\n" + body


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _valid_body(rng: random.Random, users: list[str]) -> tuple[dict, bytes]:
    request = {"user_id": rng.choice(users), "k": rng.randint(1, 20),
               "context": {"device_type": rng.choice(DEVICES), "hour": rng.randrange(24)},
               "diversity": rng.choice([0, 0.0, 0.3, 1])}
    return request, _json(request)


# One generator per class: each draws one input of its class from `rng`.

def _wrong_types(rng: random.Random, user: str) -> bytes:
    field, value = rng.choice([
        ("k", True), ("k", False), ("k", "5"), ("k", None), ("k", [5]),
        ("k", {"v": 5}), ("k", 5.5), ("k", 1e-300), ("diversity", "0.5"), ("diversity", True), ("diversity", None),
        ("diversity", [0.5]), ("user_id", 5), ("user_id", None), ("user_id", ["u"]),
        ("user_id", True), ("context", "tv"), ("context", ["tv"]), ("context", 3),
        ("hour", True), ("hour", "8"), ("hour", 8.5), ("device_type", 1),
        ("age", False), ("age", "31"), ("age", 31.5), ("country", 7), ("genres", "drama"),
        ("genres", [1]), ("genres", [None]), ("profile", "new"), ("profile", [])])
    body: dict = {"user_id": user}
    profile = {"age": 31, "country": "de", "subscription_tier": "basic"}
    if field in ("hour", "device_type"):
        body["context"] = {field: value}
    elif field in ("age", "country"):
        body["profile"] = {**profile, field: value}
    elif field == "genres":
        body["profile"] = {**profile, "preferred_genres": value}
    else:
        body[field] = value
    return _post(_json(body))


def _out_of_range(rng: random.Random, user: str) -> bytes:
    body = rng.choice([
        {"user_id": user, "k": rng.choice([0, -1, 101, 10**6, -(2**63)])},
        {"user_id": user, "context": {"hour": rng.choice([24, -1, 1000])}},
        {"user_id": user, "context": {"device_type": rng.choice(["toaster", "", "TV"])}},
        {"user_id": user, "diversity": rng.choice([1.5, -0.1, 1e308, -1e-300 - 1])},
        {"user_id": "u" * rng.randint(129, 4000)},
        {"user_id": rng.choice(["", "u 1", "u;drop", "u/../x", "u\n", "u\x00"])},
        {"user_id": user, "profile": {"age": rng.choice([-1, 121, 2**40]), "country": "de",
                                      "subscription_tier": "basic"}},
        {"user_id": user, "profile": {"age": 30, "country": "", "subscription_tier": "b"}},
        {"user_id": user, "profile": {"age": 30, "country": "x" * 65,
                                      "subscription_tier": "b"}},
        {"user_id": user, "profile": {"age": 30, "country": "de", "subscription_tier": "b",
                                      "preferred_genres": ["a", "b", "c", "d"]}},
        {"user_id": user, "profile": {"age": 30, "country": "de", "subscription_tier": "b",
                                      "preferred_genres": ["drama|comedy"]}},
        {"user_id": user, "profile": {"age": 30, "country": "de"}}])
    return _post(_json(body))


def _non_finite(rng: random.Random, user: str) -> bytes:
    literal = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"nan",
                          b"inf", b"1e999999"])
    field = rng.choice([b'"k": %s', b'"diversity": %s', b'"context": {"hour": %s}',
                        b'"profile": {"age": %s, "country": "de", "subscription_tier": "b"}'])
    return _post(b'{"user_id": "%s", %s}' % (user.encode(), field % literal))


def _huge_numbers(rng: random.Random, user: str) -> bytes:
    digits = rng.choice([20, 40, 400, 4300, 5000])
    number = (b"-" if rng.random() < 0.3 else b"") + b"9" * digits
    field = rng.choice([b'"k": %s', b'"diversity": %s', b'"context": {"hour": %s}'])
    return _post(b'{"user_id": "%s", %s}' % (user.encode(), field % number))


def _deep_nesting(rng: random.Random, user: str) -> bytes:
    depth = rng.choice([1000, 1025, 2000, 5000, 7000])
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    nested = opener * depth + b"1" + closer * depth
    where = rng.choice([b"%s", b'{"user_id": "' + user.encode() + b'", "context": %s}',
                        b'{"user_id": "' + user.encode() + b'", "extra": %s}'])
    return _post(where.replace(b"%s", nested))


def _unknown_fields(rng: random.Random, user: str) -> bytes:
    body = rng.choice([
        {"user_id": user, "colour": "red"}, {"user_id": user, "": 1},
        {"user_id": user, "__proto__": {"admin": True}}, {"user_id": user, "K": 5},
        {"user_id": user, "context": {"device_type": "tv", "region": "eu"}},
        {"user_id": user, "profile": {"age": 3, "country": "de", "subscription_tier": "b",
                                      "email": "x@y"}},
        {"user_id": user, "x" * rng.randint(100, 5000): 1}])
    return _post(_json(body))


def _bad_utf8(rng: random.Random, user: str) -> bytes:
    broken = rng.choice([b"\xff", b"\xc0\xaf", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80",
                         b"\x80", b"\xfe\xff"])
    body = rng.choice([b'{"user_id": "%s"}' % (user.encode() + broken),
                       b'{"user_id": "%s", "profile": {"age": 3, "country": "%s", '
                       b'"subscription_tier": "b"}}' % (user.encode(), broken),
                       b'{"user_id": "%s", "%s": 1}' % (user.encode(), broken),
                       b"\xef\xbb\xbf" + _json({"user_id": user}),
                       json.dumps({"user_id": user}).encode("utf-16")])
    return _post(body)


def _lone_surrogates(rng: random.Random, user: str) -> bytes:
    escape = rng.choice([b"\\ud800", b"\\udfff", b"\\udbff", b"\\ud800\\ud800",
                         b"\\udc00\\ud800"])
    body = rng.choice([b'{"user_id": "%s"}' % (user.encode() + escape),
                       b'{"user_id": "%s", "profile": {"age": 3, "country": "%s", '
                       b'"subscription_tier": "b"}}' % (user.encode(), escape),
                       b'{"user_id": "%s", "%s": 1}' % (user.encode(), escape),
                       b'{"user_id": "%s", "context": {"device_type": "%s"}}'
                       % (user.encode(), escape)])
    return _post(body)


def _not_an_object(rng: random.Random, user: str) -> bytes:
    valid = _json({"user_id": user})
    return rng.choice([
        _post(b""), _post(b"null"), _post(b"[]"), _post(b'"u"'), _post(b"1"), _post(b"true"),
        _post(b"{}"), _post(b"{"), _post(b'{"user_id": "%s"} x' % user.encode()),
        _post(valid, content_type=None), _post(valid, content_type=b"text/plain"),
        _post(valid, content_type=b"application/x-www-form-urlencoded"),
        _post(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2000)))),
        _post(bytes(rng.getrandbits(8) if rng.random() < 0.05 else byte for byte in valid))])


def _oversized(rng: random.Random, user: str, cap: int) -> bytes:
    padding = b" " * (cap + rng.randint(1, 4 * cap))
    body = b'{"user_id": "%s"%s}' % (user.encode(), padding)
    if rng.random() < 0.5:
        return _post(body)
    chunks = [body[i:i + 4096] for i in range(0, len(body), 4096)]
    head = (b"POST %s HTTP/1.1\r\nHost: service\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            % ENDPOINT.encode())
    return head + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def _malformed_http(rng: random.Random, user: str) -> bytes:
    valid = _json({"user_id": user})
    path = ENDPOINT.encode()
    return rng.choice([
        b"GARBAGE\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        b"POST " + path + b" HTTP/9.9\r\nHost: s\r\n\r\n",
        b"POST " + path + b"\r\n\r\n",
        b"POST " + path + b" HTTP/1.1\r\nHost: s\r\nContent-Length: abc\r\n\r\n" + valid,
        b"POST " + path + b" HTTP/1.1\r\nHost: s\r\nContent-Length: -1\r\n\r\n" + valid,
        b"POST " + path + b" HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\n"
        b"Content-Length: 50\r\n\r\n" + valid,
        b"POST " + path + b" HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + valid + b"\r\n0\r\n\r\n",
        b"POST " + path + b" HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n" + valid + b"\r\n0\r\n\r\n",
        b"POST " + path + b" HTTP/1.1\r\nHost: s\r\nBad Header Name: 1\r\n\r\n",
        b"POST " + path + b" HTTP/1.1\r\nHost: s\r\nX-A: \x00\x01\r\n\r\n",
        b"POST /" + b"a" * rng.randint(70_000, 200_000) + b" HTTP/1.1\r\nHost: s\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: s\r\n" + b"".join(
            b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(rng.randint(700, 2000))) + b"\r\n",
        _post(valid, extra=b"Content-Length: 2\r\n"),
        b"\r\n" * rng.randint(1, 50)])


def _wrong_route(rng: random.Random, user: str) -> bytes:
    method, path = rng.choice([
        (b"GET", ENDPOINT.encode()), (b"PUT", ENDPOINT.encode()),
        (b"DELETE", ENDPOINT.encode()), (b"PATCH", b"/healthz"), (b"POST", b"/readyz"),
        (b"GET", b"/v2/recommendations"), (b"GET", b"/%ff%fe"), (b"GET", b"/%ed%a0%80"),
        (b"GET", b"/../../etc/passwd"), (b"GET", b"/" + b"%00" * 10),
        (b"BREW", b"/coffee"), (b"GET", b"/" + bytes(rng.choice(b"abc%/.") for _ in range(40)))])
    body = _json({"user_id": user}) if method in (b"PUT", b"POST", b"PATCH") else b""
    return (b"%s %s HTTP/1.1\r\nHost: s\r\nConnection: close\r\nContent-Type: "
            b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (method, path, len(body), body))


def _slow_client(rng: random.Random, user: str) -> _Hostile:
    valid = _post(_json({"user_id": user}))
    head, _, body = valid.partition(b"\r\n\r\n")
    variant = rng.choice(["idle", "partial_head", "partial_body", "drip_head"])
    if variant == "idle":
        return _Hostile("slow_clients", (b"",), linger_s=60.0)
    if variant == "partial_head":
        return _Hostile("slow_clients", (head[: rng.randint(1, len(head))],), linger_s=60.0)
    if variant == "partial_body":
        return _Hostile("slow_clients", (head + b"\r\n\r\n" + body[: len(body) // 2],),
                        linger_s=60.0)
    # One byte every 0.25 s for 60 s: each arrives well within any read timeout, the head
    # never does.
    drip = (head + b"\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(40)))[:240]
    return _Hostile("slow_clients", tuple(drip[i:i + 1] for i in range(len(drip))),
                    pause_s=0.25, linger_s=60.0)


_GENERATORS: dict[str, Callable[[random.Random, str], bytes]] = {
    "wrong_types": _wrong_types, "out_of_range": _out_of_range, "non_finite": _non_finite,
    "huge_numbers": _huge_numbers, "deep_nesting": _deep_nesting,
    "unknown_fields": _unknown_fields, "bad_utf8": _bad_utf8,
    "lone_surrogates": _lone_surrogates, "not_an_object": _not_an_object,
    "malformed_http": _malformed_http, "wrong_route": _wrong_route}


class _Tally:
    """Counts of one run; thread-safe, as slow clients and bursts report from threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = {"inputs": 0, "crashes": 0, "server_errors": 0, "lost": 0,
                       "duplicated": 0, "valid": 0, "shed": 0, "accepted_hostile": 0,
                       "unenveloped": 0, "unexpected_status": 0, "no_answer": 0}
        self.by_class: dict[str, dict] = {kind: {"inputs": 0, "statuses": {}}
                                          for kind in _CLASSES}
        self.request_ids: set[str] = set()

    def add(self, name: str, kind: str | None = None, amount: int = 1) -> None:
        with self.lock:
            self.counts[name] += amount
            if kind is not None and name != "inputs":
                entry = self.by_class[kind]
                entry[name] = entry.get(name, 0) + amount

    def hostile(self, kind: str, answer: _Answer) -> None:
        with self.lock:
            self.counts["inputs"] += 1
            entry = self.by_class[kind]
            entry["inputs"] += 1
            key = "closed" if answer.status is None else str(answer.status)
            entry["statuses"][key] = entry["statuses"].get(key, 0) + 1
        if answer.status is None:
            if kind not in _CLOSE_ALLOWED or answer.timed_out:
                self.add("no_answer", kind)
        elif answer.shed():
            self.add("shed", kind)
        elif answer.status >= 500:
            self.add("server_errors", kind)
        elif answer.status < 400:
            self.add("accepted_hostile", kind)
        elif not answer.envelope():
            self.add("unenveloped", kind)
        elif answer.status not in _EXPECTED[kind]:
            self.add("unexpected_status", kind)

    def valid(self, request: dict, answer: _Answer, kind: str | None = None) -> None:
        """Checks the answer to a valid request: 200 with 1..k items for its user, once."""
        self.add("valid", kind)
        if answer.shed():
            self.add("shed", kind)
            return
        if answer.status is not None and answer.status >= 500:
            self.add("server_errors", kind)
        try:
            body = json.loads(answer.body)
            correct = (answer.status == 200 and body["user_id"] == request["user_id"]
                       and 1 <= len(body["items"]) <= request["k"])
            request_id = body["request_id"] if correct else None
        except (ValueError, KeyError, TypeError):
            correct, request_id = False, None
        if not correct:
            self.add("lost", kind)
            return
        with self.lock:
            duplicated = request_id in self.request_ids
            self.request_ids.add(request_id)
        if duplicated:
            self.add("duplicated", kind)


def _healthy(address: tuple[str, int]) -> bool:
    try:
        answer = _exchange(address, (b"GET /healthz HTTP/1.1\r\nHost: s\r\n"
                                     b"Connection: close\r\n\r\n",), timeout_s=10.0)
    except OSError:
        return False
    return answer.status == 200


def run(service_url: str, users: list[str], seed: int = 0, count: int = 300,
        max_body_bytes: int = 16 * 1024, burst: int = 32) -> dict:
    """Throws `count` seeded hostile inputs at a running service, with valid requests between.

    Slow clients wait for the service to cut them off, so a service started with short
    header and body timeouts (`ServiceConfig.header_timeout_s`, `body_timeout_s`) finishes
    sooner; their connections are held in background threads meanwhile.

    Args:
        service_url: the service's base URL, `http://host:port`.
        users: user ids the service's profile store knows (valid requests use them).
        seed: seeds every choice, so a run can be replayed.
        count: hostile inputs to send, spread evenly over the classes.
        max_body_bytes: the service's body cap; oversized inputs go beyond it.
        burst: valid requests sent at once by each input of the `bursts` class; above the
            concurrency limit, some of them are shed.

    Returns:
        {"inputs", "crashes", "server_errors", "lost", "duplicated", "valid", "shed",
        "accepted_hostile", "unenveloped", "unexpected_status", "no_answer", "by_class"}:
        ints, and per class its inputs, answers by status and its share of each count.
    """
    parsed = urllib.parse.urlsplit(service_url)
    address = (parsed.hostname or "127.0.0.1", parsed.port or 80)
    rng = random.Random(seed)
    tally = _Tally()
    slow = concurrent.futures.ThreadPoolExecutor(max_workers=32)
    bursts = concurrent.futures.ThreadPoolExecutor(max_workers=burst)
    pending = []

    def draw_valid() -> tuple[dict, bytes]:
        return _valid_body(random.Random(rng.getrandbits(64)), users)

    def valid_request(drawn: tuple[dict, bytes], kind: str | None = None) -> None:
        request, body = drawn
        tally.valid(request, _exchange(address, (_post(body),)), kind)

    def slow_client(hostile: _Hostile) -> None:
        tally.hostile("slow_clients", _exchange(address, hostile.parts, hostile.pause_s,
                                                timeout_s=hostile.linger_s))

    def burst_of_valid() -> None:
        tally.add("inputs")
        with tally.lock:
            tally.by_class["bursts"]["inputs"] += 1
        drawn = [draw_valid() for _ in range(burst)]  # Here: rng is not shared by threads.
        list(bursts.map(lambda one: valid_request(one, "bursts"), drawn))

    try:
        for index in range(count):
            kind = _CLASSES[index % len(_CLASSES)]
            user = rng.choice(users)
            if kind == "slow_clients":
                pending.append(slow.submit(slow_client, _slow_client(rng, user)))
            elif kind == "bursts":
                burst_of_valid()
            else:
                raw = (_oversized(rng, user, max_body_bytes) if kind == "oversized"
                       else _GENERATORS[kind](rng, user))
                tally.hostile(kind, _exchange(address, (raw,)))
            if rng.random() < 0.4:
                valid_request(draw_valid())
            if index % 10 == 9 and not _healthy(address):
                tally.add("crashes")
        for future in pending:
            future.result()
        for _ in range(5):  # After everything, the service still answers correctly.
            valid_request(draw_valid())
        if not _healthy(address):
            tally.add("crashes")
    finally:
        slow.shutdown(wait=True)
        bursts.shutdown(wait=True)
    return {**tally.counts, "by_class": tally.by_class}


def _percentile(values: list[float], q: float) -> float:
    """The q-th percentile by linear interpolation between order statistics (NumPy's
    default), without importing NumPy into the load-generating process."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _closed_loop(url: str, users: list[str], clients: int, seconds: float, seed: int,
                 shed_backoff_s: float) -> list[tuple[int, float, bool]]:
    """`clients` threads, each sending one valid request after another on a kept-alive
    connection for `seconds`; returns (status, latency ms, from the fallback) per answer.
    A shed client waits `shed_backoff_s` before its next request. Runs in its own process
    (see `_load`), so that the clients do not share the service's interpreter."""
    parsed = urllib.parse.urlsplit(url)
    results: list[tuple[int, float, bool]] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        start.wait()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            _, body = _valid_body(rng, users)
            began = time.perf_counter()
            try:
                connection.request("POST", ENDPOINT, body,
                                   {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection(parsed.hostname, parsed.port,
                                                        timeout=60)
                status, answer = 0, b""
            elapsed = 1000.0 * (time.perf_counter() - began)
            fallback = status == 200 and json.loads(answer).get("fallback") is not None
            with lock:
                results.append((status, elapsed, fallback))
            if status == 503:
                time.sleep(shed_backoff_s)
        connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _load(url: str, users: list[str], clients: int, seconds: float, seed: int,
          shed_backoff_s: float) -> dict:
    """Closed-loop load from a fresh spawned process; the figures of admitted requests."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        results = pool.submit(_closed_loop, url, users, clients, seconds, seed,
                              shed_backoff_s).result()
    admitted = [ms for status, ms, _ in results if status == 200]
    shed = sum(1 for status, _, _ in results if status == 503)
    return {"clients": clients, "requests": len(results), "admitted": len(admitted),
            "shed_share": round(shed / max(1, len(results)), 4),
            "fallback_share": round(sum(1 for *_, fallback in results if fallback)
                                    / max(1, len(admitted)), 4),
            "errors": sum(1 for status, _, _ in results if status not in (200, 503)),
            "p50_ms": round(_percentile(admitted, 50), 1) if admitted else None,
            "p99_ms": round(_percentile(admitted, 99), 1) if admitted else None,
            "admitted_per_s": round(len(admitted) / seconds, 1)}


def shedding_p99(service_factory: Callable[[int | None], _Service],
                 users: list[str], clients: int = 50, seconds: float = 15.0,
                 limit: int | None = None, seed: int = 0, shed_backoff_s: float = 0.1
                 ) -> dict:
    """p50/p99 of admitted requests, and the shed share, at `clients` closed-loop clients
    with the concurrency limit and without one.

    Args:
        service_factory: `service_factory(max_in_flight)` is a context manager that runs a
            service with that `ServiceConfig.max_in_flight` (None: no limit) and yields its
            base URL; `tiny_world` makes one.
        users: user ids the service knows.
        clients: concurrent clients, each with one request in flight at a time.
        seconds: length of each measurement, after a warm-up.
        limit: the limit to measure; None takes `ServiceConfig().max_in_flight`.
        seed: seeds the requests.
        shed_backoff_s: a shed client waits this long before its next request (a client
            that retried at once would measure its own retry loop).

    Returns:
        {"clients", "seconds", "shed_backoff_s", "limited": figures, "unlimited": figures},
        figures holding "max_in_flight", "requests", "admitted", "shed_share",
        "fallback_share", "errors", "p50_ms", "p99_ms", "admitted_per_s".
    """
    if limit is None:
        from serving.config import ServiceConfig

        limit = ServiceConfig().max_in_flight
    figures = {"clients": clients, "seconds": seconds, "shed_backoff_s": shed_backoff_s}
    for name, max_in_flight in (("limited", limit), ("unlimited", None)):
        with service_factory(max_in_flight) as url:
            _load(url, users, clients, 3.0, seed + 1, shed_backoff_s)  # Warm-up.
            figures[name] = {"max_in_flight": max_in_flight,
                             **_load(url, users, clients, seconds, seed, shed_backoff_s)}
    return figures


@contextlib.contextmanager
def tiny_world(world: pathlib.Path) -> Iterator[Callable[..., _Service]]:
    """Serves a tiny world's models (`tests/conftest.py` builds one) and loads its profiles
    once; yields `service(**ServiceConfig fields)`, a context manager that runs a service
    over them on a free port and yields its URL.

    Example:
        with tiny_world(pathlib.Path("/work/tiny_world_cache")) as service:
            with service(max_in_flight=None, header_timeout_s=1.0) as url:
                print(run(url, users(world)))
    """
    from serving.clients import RestClient
    from serving.config import ServiceConfig
    from serving.model_server import ModelRegistry, ModelServer
    from serving.online.recommender import Recommender, load_catalogue
    from serving.online.policy import OnlinePolicy
    from serving.api.service import ServiceServer, create_app
    from serving.online.store import SqliteProfileStore, load_store

    layout = RunLayout(world)
    registry = ModelRegistry(str(layout.serving), ("ranker", "retrieval"))
    registry.load()
    store = SqliteProfileStore(":memory:")
    load_store(store, str(layout.users), layout.examples_glob)
    catalogue = load_catalogue(str(layout.serving), "retrieval")
    try:
        with ModelServer(registry) as models:
            @contextlib.contextmanager
            def service(**overrides) -> Iterator[str]:
                config = ServiceConfig(model_server=models.rest_url, **overrides)
                app = create_app(OnlinePolicy(
                    Recommender(RestClient(models.rest_url), store, catalogue), config))
                with ServiceServer(app) as running:
                    yield running.url

            yield service
    finally:
        store.close()


def users(world: pathlib.Path) -> list[str]:
    """The user ids of a tiny world's profile store."""
    lines = RunLayout(world).users.read_text().splitlines()
    return [json.loads(line)["user_id"] for line in lines if line.strip()]


def _sweep(service: Callable[..., _Service], known: list[str], seconds: float,
           limits: list[int | None], clients: list[int]) -> list[dict]:
    rows = []
    for limit in limits:
        with service(max_in_flight=limit) as url:
            _load(url, known, max(clients), 3.0, 1, 0.1)  # Warm-up.
            for count in clients:
                row = {"max_in_flight": limit, **_load(url, known, count, seconds, 0, 0.1)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=pathlib.Path,
                        default=pathlib.Path("/work/tiny_world_cache"))
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--sweep", action="store_true",
                        help="p50/p99 and shed share for several limits and client counts")
    parser.add_argument("--limits", default="2,4,8,16,none")
    parser.add_argument("--clients", default="10,25,50")
    args = parser.parse_args()
    known = users(args.world)
    with tiny_world(args.world) as service:
        if args.sweep:
            limits = [None if part == "none" else int(part) for part in args.limits.split(",")]
            _sweep(service, known, args.seconds, limits,
                   [int(part) for part in args.clients.split(",")])
            return
        with service(header_timeout_s=1.0, body_timeout_s=1.0, keep_alive_s=1.0) as url:
            print(json.dumps(run(url, known, args.seed, args.count), indent=2), flush=True)
        print(json.dumps(shedding_p99(lambda limit: service(max_in_flight=limit), known,
                                      seconds=args.seconds), indent=2))


if __name__ == "__main__":
    main()
