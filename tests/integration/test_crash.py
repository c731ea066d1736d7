"""Crash safety: kill -9 mid-stream, restart, retry, and count.

Several rounds over one data directory. In each, client threads post
batches of events with unique ids, each batch under its own Idempotency-Key,
and record which were acknowledged (200). At a random moment the server is
SIGKILLed. It is restarted on the same data dir; every batch that was not
acknowledged is retried with the same key until it is; and then every event
of every batch must be present exactly once: none lost (acknowledged means
durable) and none doubled (a retry of a batch that was in fact stored must be
answered `repeated=true` and store nothing).

Some rounds flush to Parquet while the clients post (flush_interval_seconds=1,
a small flush_buffer_mib), so the restart reads segments *and* replays the WAL
tail, and idempotency keys must survive both.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
import requests

from conftest import Receipt, build_post, unique_log_type, wait_until

THREADS = 4
BATCH = 15
ROUNDS = [
    {"name": "wal-only", "config": {}},
    {"name": "interval-flush", "config": {"flush_interval_seconds": 1}, "want_segments": True},
    {"name": "small-buffer-flush", "config": {"flush_interval_seconds": 1, "flush_buffer_mib": 1}, "want_segments": True},
    {"name": "wal-only-again", "config": {}},
]
MIN_ACKS_PER_ROUND = 12


@dataclass
class Ledger:
    lock: threading.Lock = field(default_factory=threading.Lock)
    batches: dict[str, list[dict]] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    unacked: set[str] = field(default_factory=set)
    unexpected: list[str] = field(default_factory=list)
    acks_this_round: int = 0

    def register(self, key: str, events: list[dict]):
        with self.lock:
            self.batches[key] = events
            self.unacked.add(key)

    def ack(self, key: str):
        with self.lock:
            self.unacked.discard(key)
            self.acked.add(key)
            self.acks_this_round += 1

    def event_ids(self, keys) -> set[str]:
        with self.lock:
            return {e["EventId"] for k in keys for e in self.batches[k]}


def segment_files(data_dir) -> list[str]:
    try:
        catalog = json.loads((data_dir / "catalog.json").read_text())
    except (OSError, ValueError):
        return []
    return [s["file"] for t in catalog.get("tables", []) for s in t.get("segments", [])]


def poster(server, url: str, log_type: str, ledger: Ledger, stop: threading.Event, tag: str):
    session = requests.Session()
    n = 0
    while not stop.is_set():
        n += 1
        key = f"{tag}-{n}-{uuid.uuid4().hex[:8]}"
        events = [{"EventId": f"{key}-{i}", "Batch": key, "Seq": i, "Payload": "x" * 40} for i in range(BATCH)]
        ledger.register(key, events)
        try:
            data, headers = build_post(server.workspace_id, server.primary_key, log_type, events)
            headers["Idempotency-Key"] = key
            response = session.post(f"{url}/api/logs?api-version=2016-04-01", data=data, headers=headers, timeout=30)
        except requests.RequestException:
            # The server is gone (killed): stop this client.
            return
        if response.status_code == 200:
            receipt = Receipt.parse(response.headers.get("x-watchpost-receipt"))
            if receipt.repeated or receipt.rows != BATCH:
                with ledger.lock:
                    ledger.unexpected.append(f"{key}: first post receipt {receipt}")
            ledger.ack(key)
        elif response.status_code != 503:
            with ledger.lock:
                ledger.unexpected.append(f"{key}: {response.status_code} {response.text[:200]}")


def retry_until_acked(server, log_type: str, ledger: Ledger, keys: list[str]) -> dict[str, bool]:
    """Re-posts each batch with its key until 200; returns key -> repeated."""
    repeated = {}
    session = requests.Session()
    for key in keys:
        events = ledger.batches[key]
        deadline = time.monotonic() + 60
        while True:
            response = server.post(log_type, events, extra_headers={"Idempotency-Key": key}, session=session)
            if response.status_code == 200:
                receipt = Receipt.parse(response.headers.get("x-watchpost-receipt"))
                assert receipt.rows == BATCH, f"{key}: {receipt}"
                repeated[key] = receipt.repeated
                ledger.ack(key)
                break
            assert response.status_code == 503 and time.monotonic() < deadline, (
                f"retry of {key}: {response.status_code} {response.text}"
            )
            time.sleep(0.2)
    return repeated


def present_events(server, table: str) -> tuple[set[str], int, list]:
    ids = set(server.query(f"{table} | distinct EventId_s").column("EventId_s"))
    total = server.count(table)
    duplicates = server.query(f"{table} | summarize n = count() by EventId_s | where n > 1 | take 20").rows
    return ids, total, duplicates


def check_exactly_once(server, table: str, ledger: Ledger, when: str, expect_all: bool):
    ids, total, duplicates = present_events(server, table)
    assert duplicates == [], f"{when}: duplicated events {duplicates}"
    assert total == len(ids), f"{when}: {total} rows but {len(ids)} distinct events"
    acked = ledger.event_ids(ledger.acked)
    registered = ledger.event_ids(ledger.batches)
    lost = acked - ids
    assert not lost, f"{when}: {len(lost)} acknowledged events lost, e.g. {sorted(lost)[:5]}"
    assert ids <= registered, f"{when}: unknown events {sorted(ids - registered)[:5]}"
    if expect_all:
        assert ids == registered, f"{when}: missing {sorted(registered - ids)[:5]}"
    return ids


def test_kill9_rounds_lose_and_duplicate_nothing(make_server, report_metric):
    seed = int(os.environ.get("WATCHPOST_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"crash test seed {seed} (set WATCHPOST_CRASH_SEED to replay)")
    server = make_server(start=False)
    log_type = unique_log_type("Crash")
    table = f"{log_type}_CL"
    ledger = Ledger()
    notes = []

    for number, round_ in enumerate(ROUNDS, 1):
        server.config = round_["config"]
        server.start()
        where = f"round {number} ({round_['name']}, seed {seed})"

        # 1. what earlier rounds acknowledged survived the kill, exactly once
        if ledger.batches:
            check_exactly_once(server, table, ledger, f"{where}, after restart", expect_all=False)
            # 2. acknowledged batches re-posted with their key: repeated, nothing stored
            sample = rng.sample(sorted(ledger.acked), min(5, len(ledger.acked)))
            repeats = retry_until_acked(server, log_type, ledger, sample)
            assert all(repeats.values()), f"{where}: acknowledged batch re-posted was stored again: {repeats}"
            # 3. unacknowledged batches retried with the same key
            pending = sorted(ledger.unacked)
            repeats = retry_until_acked(server, log_type, ledger, pending)
            notes.append(f"{where}: retried {len(pending)} unacknowledged batches, {sum(repeats.values())} had been stored")
            assert not ledger.unacked
            check_exactly_once(server, table, ledger, f"{where}, after retries", expect_all=True)

        # 4. a new stream, killed at a random moment
        ledger.acks_this_round = 0
        stop = threading.Event()
        url = server.url
        threads = [
            threading.Thread(target=poster, args=(server, url, log_type, ledger, stop, f"r{number}t{i}"), daemon=True)
            for i in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: ledger.acks_this_round >= MIN_ACKS_PER_ROUND, 90, message=f"{where}: first acks")
            if round_.get("want_segments"):
                before = len(segment_files(server.data_dir))
                wait_until(lambda: len(segment_files(server.data_dir)) > before, 60, message=f"{where}: a flush")
                floor = ledger.acks_this_round
                wait_until(lambda: ledger.acks_this_round >= floor + 3, 60, message=f"{where}: acks after a flush")
            time.sleep(rng.uniform(0.05, 1.5))
            server.kill()
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        assert not ledger.unexpected, f"{where}: unexpected answers {ledger.unexpected[:5]}"
        notes.append(f"{where}: {ledger.acks_this_round} batches acknowledged before kill -9")

    # Final: restart, retry the last round's unacknowledged batches, check.
    server.config = {}
    server.start()
    check_exactly_once(server, table, ledger, "final restart", expect_all=False)
    retry_until_acked(server, log_type, ledger, sorted(ledger.unacked))
    ids = check_exactly_once(server, table, ledger, "final, after retries", expect_all=True)
    assert len(ids) == BATCH * len(ledger.batches)
    # And a graceful stop (final flush) then start reads it all back once more.
    assert server.stop() == 0, server.stderr_tail()
    server.start()
    check_exactly_once(server, table, ledger, "after graceful restart", expect_all=True)
    assert segment_files(server.data_dir), "no segment was ever written"
    server.stop()
    report_metric(f"crash: {len(ledger.batches)} batches / {len(ids)} events over {len(ROUNDS)} kill -9 rounds, seed {seed}")
    for note in notes:
        print(note)
