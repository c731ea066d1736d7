"""Read-your-writes: a 200 from /api/logs means the rows are queryable now.

50 times: post one unique event, and as soon as the 200 arrives query for
it. It must be found by that first query, every time. We also measure the
time from the 200 to the first query that returns the row (on a correct
server: one query round trip) and report p50/p99.
"""

from __future__ import annotations

import time
import uuid

import requests

from conftest import percentile, unique_log_type

ITERATIONS = 50


def test_acknowledged_event_is_immediately_queryable(server, report_metric):
    log_type = unique_log_type("Ryw")
    table = f"{log_type}_CL"
    session = requests.Session()
    misses = []
    latencies = []
    post_times = []
    for i in range(ITERATIONS):
        event_id = f"ryw-{i}-{uuid.uuid4()}"
        started = time.perf_counter()
        response = server.post(log_type, [{"EventId": event_id, "Seq": i}], session=session)
        acknowledged = time.perf_counter()
        assert response.status_code == 200, response.text
        post_times.append(acknowledged - started)
        attempts = 0
        deadline = acknowledged + 30
        while True:
            attempts += 1
            rows = server.query(f"{table} | where EventId_s == '{event_id}' | project EventId_s, Seq_d").rows
            if rows:
                assert rows == [[event_id, i]], rows
                break
            assert time.perf_counter() < deadline, f"{event_id} still not queryable 30 s after its 200"
        latencies.append(time.perf_counter() - acknowledged)
        if attempts > 1:
            misses.append((event_id, attempts))
    assert server.count(table) == ITERATIONS
    ms = lambda seconds: f"{seconds * 1000:.1f} ms"  # noqa: E731
    report_metric(
        f"read-your-writes: {ITERATIONS} events, 200->queryable p50 {ms(percentile(latencies, 50))}"
        f" p99 {ms(percentile(latencies, 99))} max {ms(max(latencies))};"
        f" post p50 {ms(percentile(post_times, 50))} p99 {ms(percentile(post_times, 99))}"
    )
    assert not misses, f"{len(misses)}/{ITERATIONS} events were not visible to the first query after 200: {misses[:5]}"
