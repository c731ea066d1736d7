"""Graceful shutdown writes Parquet segments that other tools can read.

Rows are posted (three requests, the last one adding a column), the server
gets SIGTERM, and every segment under
DATA_DIR/workspaces/<ws>/tables/<Table>/ is read with pyarrow and with
DuckDB: row count, values, TimeGenerated ascending within each file, and
agreement with catalog.json. A restart then serves the rows exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import signal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import STANDARD_COLUMNS, kusto_datetime, unique_log_type, utcnow


def make_rows(count: int, seed: int = 7):
    rng = random.Random(seed)
    now = utcnow().replace(microsecond=0)
    rows = []
    for i in range(count):
        when = now - dt.timedelta(seconds=rng.randrange(60, 20 * 3600), microseconds=rng.randrange(1, 999_999))
        rows.append(
            {
                "EventId": f"seg-{i:03d}",
                "N": i * 1.5,
                "Flag": i % 3 == 0,
                "Host": f"host-{i % 4}",
                "When": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
        )
    rng.shuffle(rows)
    return rows


def to_utc(value) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def test_sigterm_flushes_readable_segments_and_restart_serves_them_once(make_server):
    server = make_server()
    log_type = unique_log_type("Seg")
    table = f"{log_type}_CL"
    rows = make_rows(60)
    batches = [rows[:25], rows[25:45], [dict(r, Extra=f"extra-{r['EventId']}") for r in rows[45:]]]
    for batch in batches:
        server.ingest(log_type, batch, time_generated_field="When")
    by_id = {r["EventId"]: r for r in batches[0] + batches[1] + batches[2]}
    assert server.count(table) == 60

    assert server.stop(signal.SIGTERM) == 0, server.stderr_tail()

    # --- the files and the catalogue ---------------------------------------------
    table_dir = server.data_dir / "workspaces" / server.workspace_id / "tables" / table
    files = sorted(table_dir.glob("*.parquet"))
    assert files, f"no segment in {table_dir}; data dir has {sorted(p.name for p in server.data_dir.rglob('*'))}"
    catalog = json.loads((server.data_dir / "catalog.json").read_text())
    entries = [t for t in catalog["tables"] if t["name"] == table and t["workspace"] == server.workspace_id]
    assert len(entries) == 1, catalog["tables"]
    listed = {s["file"]: s for s in entries[0]["segments"]}
    on_disk = {str(f.relative_to(server.data_dir)) for f in files}
    assert on_disk == set(listed), f"catalog {sorted(listed)} vs disk {sorted(on_disk)}"

    # --- pyarrow -----------------------------------------------------------------------
    seen = {}
    for path in files:
        segment = pq.read_table(path)
        meta = listed[str(path.relative_to(server.data_dir))]
        assert segment.num_rows == meta["n_rows"]
        names = segment.column_names
        assert names[: len(STANDARD_COLUMNS)] == STANDARD_COLUMNS, names
        assert {"EventId_s", "N_d", "Flag_b", "Host_s", "When_t", "Extra_s"} <= set(names)
        schema = segment.schema
        assert pa.types.is_timestamp(schema.field("TimeGenerated").type)
        assert pa.types.is_timestamp(schema.field("When_t").type)
        assert pa.types.is_floating(schema.field("N_d").type)
        assert pa.types.is_boolean(schema.field("Flag_b").type)
        # String columns come back as strings, or as dictionaries of strings
        # exactly when the catalogue lists them as kept dictionary-encoded.
        text = schema.field("EventId_s").type
        text = text.value_type if pa.types.is_dictionary(text) else text
        assert pa.types.is_string(text) or pa.types.is_large_string(text), schema.field("EventId_s")
        declared = {f.name for f in schema if pa.types.is_dictionary(f.type)}
        assert declared == set(meta.get("dictionary", [])), (declared, meta.get("dictionary"))
        assert all(pa.types.is_string(schema.field(name).type.value_type) for name in declared)
        # Nanoseconds since the epoch, as stored (KQL keeps 100 ns ticks).
        times = segment.column("TimeGenerated").cast(pa.int64()).to_pylist()
        assert times == sorted(times), f"{path.name}: TimeGenerated not ascending"
        if times:
            assert meta["min_time_ns"] == times[0], (meta, times[0])
            assert meta["max_time_ns"] == times[-1], (meta, times[-1])
        # Python datetimes hold microseconds; the segment keeps nanoseconds.
        as_micros = pa.schema(
            [f.with_type(pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f for f in segment.schema]
        )
        for record in segment.cast(as_micros, safe=False).to_pylist():
            event_id = record["EventId_s"]
            assert event_id not in seen, f"{event_id} in two segments"
            seen[event_id] = record
    assert set(seen) == set(by_id)
    for event_id, record in seen.items():
        source = by_id[event_id]
        expected_time = dt.datetime.strptime(source["When"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
        assert to_utc(record["TimeGenerated"]) == expected_time
        assert to_utc(record["When_t"]) == expected_time
        assert record["N_d"] == source["N"]
        assert record["Flag_b"] == source["Flag"]
        assert record["Host_s"] == source["Host"]
        assert record["Extra_s"] == source.get("Extra") or (record["Extra_s"] in (None, "") and "Extra" not in source)
        assert record["Type"] == table
        assert record["TenantId"] == server.workspace_id
        assert record["SourceSystem"] == "RestAPI"

    # --- DuckDB --------------------------------------------------------------------------
    paths = [str(p) for p in files]
    con = duckdb.connect()
    assert con.execute("SELECT count(*) FROM read_parquet(?)", [paths]).fetchone()[0] == 60
    got = con.execute(
        "SELECT EventId_s, N_d, Flag_b, Host_s FROM read_parquet(?, union_by_name = true) ORDER BY EventId_s", [paths]
    ).fetchall()
    assert got == sorted((r["EventId"], r["N"], r["Flag"], r["Host"]) for r in by_id.values())
    assert con.execute(
        "SELECT count(*) FROM read_parquet(?, union_by_name = true) WHERE Extra_s LIKE 'extra-%'", [paths]
    ).fetchone()[0] == 15
    for path in paths:
        ordered = con.execute(
            "SELECT epoch_ns(TimeGenerated::TIMESTAMP_NS) FROM read_parquet(?, file_row_number = true) ORDER BY file_row_number",
            [path],
        ).fetchall()
        values = [v for (v,) in ordered]
        assert values == sorted(values), f"{path}: TimeGenerated not ascending (duckdb)"
    con.close()

    # --- restart: the rows are there exactly once ------------------------------------------
    server.start()
    assert server.count(table) == 60
    result = server.query(f"{table} | summarize n = count() by EventId_s | where n != 1")
    assert result.rows == []
    one = by_id["seg-003"]
    [row] = server.query(f"{table} | where EventId_s == 'seg-003'").dicts()
    expected_time = dt.datetime.strptime(one["When"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    assert row["TimeGenerated"] == kusto_datetime(expected_time)
    # Stop with SIGINT this time, start again: still exactly once, no new segment needed.
    assert server.stop(signal.SIGINT) == 0, server.stderr_tail()
    assert sorted(table_dir.glob("*.parquet")) == files, "a shutdown with nothing buffered wrote segments"
    server.start()
    assert server.count(table) == 60
    assert server.query(f"{table} | summarize dcount(EventId_s)").scalar() == 60
