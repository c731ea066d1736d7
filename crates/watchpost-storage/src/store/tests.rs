use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, StringArray, TimestampNanosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use watchpost_schema::{ColumnDef, KqlType};

use super::*;
use crate::StorageErrorKind;

const WS: &str = "00000000-0000-0000-0000-000000000001";
const DAY_US: i64 = 86_400 * 1_000_000_000;

fn batch(times_ns: &[i64], names: &[&str], extra: Option<&[f64]>) -> RecordBatch {
    let mut columns =
        vec![ColumnDef::new("TimeGenerated", KqlType::Datetime), ColumnDef::new("Name_s", KqlType::String)];
    if extra.is_some() {
        columns.push(ColumnDef::new("Value_d", KqlType::Real));
    }
    let schema = TableSchema::new(columns).arrow_schema();
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from(times_ns.to_vec()).with_timezone("UTC")),
        Arc::new(StringArray::from(names.to_vec())),
    ];
    if let Some(values) = extra {
        arrays.push(Arc::new(Float64Array::from(values.to_vec())));
    }
    RecordBatch::try_new(schema, arrays).unwrap()
}

fn append(store: &Store, batch: RecordBatch, key: Option<&str>) -> AppendOutcome {
    store
        .append(AppendRequest {
            workspace: WS.into(),
            table: "Demo_CL".into(),
            idempotency_key: key.map(str::to_string),
            received_ns: 10 * DAY_US,
            batch,
        })
        .unwrap()
}

fn row_count(snapshot: &TableSnapshot) -> usize {
    let in_memory: usize = snapshot.batches.iter().map(RecordBatch::num_rows).sum();
    let on_disk: u64 = snapshot.segments.iter().map(|(_, meta)| meta.n_rows).sum();
    in_memory + on_disk as usize
}

fn options() -> StoreOptions {
    StoreOptions { wal_fsync: false, ..StoreOptions::default() }
}

#[test]
fn appended_rows_are_visible_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        append(&store, batch(&[1, 2], &["a", "b"], None), None);
        let snapshot = store.snapshot(WS, "Demo_CL").unwrap();
        assert_eq!(row_count(&snapshot), 2);
    }
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(row_count(&store.snapshot(WS, "Demo_CL").unwrap()), 2);
    let tables = store.tables(WS);
    assert!(tables.contains(&"Demo_CL".to_string()));
    assert!(tables.contains(&"Syslog".to_string()), "standard tables are listed too");
}

#[test]
fn flush_writes_sorted_parquet_and_trims_replay() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        append(&store, batch(&[30, 10], &["c", "a"], None), None);
        append(&store, batch(&[20], &["b"], Some(&[1.5])), None);
        let stats = store.flush().unwrap();
        assert_eq!((stats.segments_written, stats.rows_written), (1, 3));
        assert_eq!(store.buffered_bytes(), 0);
        let snapshot = store.snapshot(WS, "Demo_CL").unwrap();
        assert!(snapshot.batches.is_empty());
        let (path, meta) = &snapshot.segments[0];
        assert_eq!((meta.min_time_ns, meta.max_time_ns), (Some(10), Some(30)));
        let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap()).unwrap().build().unwrap();
        let batches: Vec<_> = reader.map(Result::unwrap).collect();
        let names = as_text(batches[0].column_by_name("Name_s").unwrap());
        assert_eq!(names.iter().flatten().collect::<Vec<_>>(), ["a", "b", "c"]);
        let values = batches[0].column_by_name("Value_d").unwrap();
        assert_eq!(values.null_count(), 2, "rows without the new column read back as nulls");
    }
    let store = Store::open(dir.path(), options()).unwrap();
    let snapshot = store.snapshot(WS, "Demo_CL").unwrap();
    assert_eq!(row_count(&snapshot), 3, "flushed records are not replayed twice");
    assert_eq!(snapshot.schema.columns.len(), 3);
}

#[test]
fn flush_of_rows_already_in_time_order_keeps_every_row() {
    // In-order rows take the path without the sorting copy; nulls and a
    // column added by a later batch must survive it too.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, batch(&[10, 20], &["a", "b"], None), None);
    append(&store, batch(&[20, 40], &["c", "d"], Some(&[1.0, 2.0])), None);
    let stats = store.flush().unwrap();
    assert_eq!(stats.rows_written, 4);
    let snapshot = store.snapshot(WS, "Demo_CL").unwrap();
    let (path, meta) = &snapshot.segments[0];
    assert_eq!((meta.min_time_ns, meta.max_time_ns, meta.n_rows), (Some(10), Some(40), 4));
    let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap()).unwrap().build().unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let names: Vec<String> = batches
        .iter()
        .flat_map(|batch| {
            let names = as_text(batch.column_by_name("Name_s").unwrap());
            names.iter().flatten().map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    let nulls: usize = batches.iter().map(|batch| batch.column_by_name("Value_d").unwrap().null_count()).sum();
    assert_eq!(nulls, 2);
}

#[test]
fn old_segments_gain_new_columns_as_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, batch(&[1], &["old"], None), None);
    store.flush().unwrap();
    append(&store, batch(&[2], &["new"], Some(&[2.0])), None);
    let snapshot = store.snapshot(WS, "Demo_CL").unwrap();
    assert_eq!(snapshot.schema.columns.len(), 3);
    assert_eq!(snapshot.batches[0].schema(), Arc::new(Schema::clone(&snapshot.schema.arrow_schema())));
    assert_eq!(snapshot.segments.len(), 1);
}

#[test]
fn repeated_idempotency_key_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        let first = append(&store, batch(&[1, 2], &["a", "b"], None), Some("req-1"));
        assert!(matches!(first, AppendOutcome::Stored(_)));
        let second = append(&store, batch(&[1, 2], &["a", "b"], None), Some("req-1"));
        assert_eq!(second, AppendOutcome::Repeated(first.receipt().clone()));
        assert_eq!(row_count(&store.snapshot(WS, "Demo_CL").unwrap()), 2);
    }
    // The key survives a restart before and after a flush.
    let store = Store::open(dir.path(), options()).unwrap();
    assert!(matches!(append(&store, batch(&[3], &["c"], None), Some("req-1")), AppendOutcome::Repeated(_)));
    store.flush().unwrap();
    drop(store);
    let store = Store::open(dir.path(), options()).unwrap();
    assert!(matches!(append(&store, batch(&[3], &["c"], None), Some("req-1")), AppendOutcome::Repeated(_)));
    assert_eq!(row_count(&store.snapshot(WS, "Demo_CL").unwrap()), 2);
}

#[test]
fn retention_drops_whole_expired_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, batch(&[DAY_US], &["old"], None), None);
    store.flush().unwrap();
    append(&store, batch(&[95 * DAY_US], &["new"], None), None);
    store.flush().unwrap();
    let old_path = store.snapshot(WS, "Demo_CL").unwrap().segments[0].0.clone();
    assert_eq!(store.enforce_retention(100 * DAY_US).unwrap(), 1);
    assert!(!old_path.exists());
    assert_eq!(row_count(&store.snapshot(WS, "Demo_CL").unwrap()), 1);
    assert!(store.set_retention(WS, "Demo_CL", 1).unwrap());
    assert_eq!(store.enforce_retention(100 * DAY_US).unwrap(), 1);
    drop(store);
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(row_count(&store.snapshot(WS, "Demo_CL").unwrap()), 0);
}

#[test]
fn orphan_segment_files_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let orphan = dir.path().join(format!("workspaces/{WS}/tables/Demo_CL/stray.parquet"));
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::write(&orphan, b"half-written").unwrap();
    let _store = Store::open(dir.path(), options()).unwrap();
    assert!(!orphan.exists());
}

#[test]
fn appends_wait_for_a_flush_when_buffers_are_over_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions { max_buffered_bytes: Some(1), ..options() }).unwrap();
    let store = Arc::new(store);
    append(&store, batch(&[1], &["first"], None), None);
    assert!(store.buffered_bytes() > 1);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiting = {
        let store = store.clone();
        std::thread::spawn(move || {
            append(&store, batch(&[2], &["second"], None), None);
            done_tx.send(()).unwrap();
        })
    };
    // The second append is held back while the first one's rows are buffered.
    assert!(done_rx.recv_timeout(Duration::from_millis(300)).is_err());
    assert_eq!(row_count(&store.snapshot(WS, "Demo_CL").unwrap()), 1);
    store.flush().unwrap();
    done_rx.recv_timeout(Duration::from_secs(10)).expect("the append proceeds once the flush made room");
    waiting.join().unwrap();
    assert_eq!(row_count(&store.snapshot(WS, "Demo_CL").unwrap()), 2);
}

fn append_to(store: &Store, table: &str, batch: RecordBatch) -> StorageResult<AppendOutcome> {
    store.append(AppendRequest {
        workspace: WS.into(),
        table: table.into(),
        idempotency_key: None,
        received_ns: 10 * DAY_US,
        batch,
    })
}

fn syslog_batch(extra_column: Option<&str>) -> RecordBatch {
    let mut columns =
        vec![ColumnDef::new("TimeGenerated", KqlType::Datetime), ColumnDef::new("Computer", KqlType::String)];
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from(vec![1]).with_timezone("UTC")),
        Arc::new(StringArray::from(vec!["host1"])),
    ];
    if let Some(name) = extra_column {
        columns.push(ColumnDef::new(name, KqlType::String));
        arrays.push(Arc::new(StringArray::from(vec!["x"])));
    }
    RecordBatch::try_new(TableSchema::new(columns).arrow_schema(), arrays).unwrap()
}

#[test]
fn standard_tables_exist_empty_and_refuse_undeclared_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let snapshot = store.snapshot(WS, "Syslog").expect("a standard table exists before any row");
    assert_eq!(row_count(&snapshot), 0);
    assert_eq!(snapshot.schema.column("SyslogMessage").unwrap().kql_type, KqlType::String);

    let err = append_to(&store, "Syslog", syslog_batch(Some("Bogus"))).unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::InvalidInput);
    assert!(err.to_string().contains("`Bogus`"), "{err}");
    assert_eq!(row_count(&store.snapshot(WS, "Syslog").unwrap()), 0, "nothing of a refused batch is stored");

    append_to(&store, "Syslog", syslog_batch(None)).unwrap();
    let snapshot = store.snapshot(WS, "Syslog").unwrap();
    assert_eq!(row_count(&snapshot), 1);
    let standard = standard_table("Syslog").unwrap();
    assert_eq!(snapshot.schema, standard.schema, "the rows take the standard shape, in its column order");
}

#[test]
fn declared_tables_persist_grow_and_refuse_retyping() {
    let dir = tempfile::tempdir().unwrap();
    let columns = TableSchema::new(vec![
        ColumnDef::new("TimeGenerated", KqlType::Datetime),
        ColumnDef::new("RawData", KqlType::String),
    ]);
    {
        let store = Store::open(dir.path(), options()).unwrap();
        let info = store.declare_table(WS, "App_CL", &columns, Some(30)).unwrap();
        assert!(info.declared && !info.standard);
        assert_eq!(info.retention_days, 30);
        let more = TableSchema::new(vec![ColumnDef::new("Level", KqlType::Long)]);
        store.declare_table(WS, "App_CL", &more, None).unwrap();
        let retyped = TableSchema::new(vec![ColumnDef::new("RawData", KqlType::Long)]);
        let err = store.declare_table(WS, "App_CL", &retyped, None).unwrap_err();
        assert!(matches!(err, StorageError::ColumnTypeMismatch { .. }), "{err}");
    }
    let store = Store::open(dir.path(), options()).unwrap();
    let info = store.table_info(WS, "App_CL").expect("the declared table survives a restart");
    let names: Vec<&str> = info.schema.columns.iter().map(|column| column.name.as_str()).collect();
    assert_eq!(names, ["TimeGenerated", "RawData", "Level"]);
    assert_eq!(info.retention_days, 30);
    assert!(info.declared);
    let err = append_to(&store, "App_CL", batch(&[1], &["a"], None)).unwrap_err();
    assert!(matches!(err, StorageError::UndeclaredColumns { .. }), "Name_s is not declared: {err}");
}

/// A string column read back from a segment (where dictionary-encoded
/// columns come as dictionaries) as plain strings.
fn as_text(column: &ArrayRef) -> StringArray {
    let text = cast(column, &DataType::Utf8).unwrap();
    text.as_any().downcast_ref::<StringArray>().unwrap().clone()
}
