//! Rows for a standard table through the Data Collector API (Watchpost
//! rule, [`STANDARD_TABLE_HEADER`](super::STANDARD_TABLE_HEADER) `true`):
//! each property is the column of the same name (case-sensitive), its
//! value converted to the column's declared type the way the Logs Ingestion
//! API converts stream columns. Nothing is inferred, suffixed or dropped: a
//! property that names no column, a column the server fills, or a value
//! that does not convert refuses the whole body, naming the property.
//!
//! Per row, `TimeGenerated` is the value of the `time-generated-field`
//! property under Azure's rules (ISO 8601 with a zone, at most two days
//! before and one day after receipt), else the record's own
//! `TimeGenerated`, else the receipt time. The `time-generated-field`
//! property is stored in the column of its name when the table has one;
//! otherwise it only sets `TimeGenerated` (the one property that may name
//! no column). `TenantId`, `Type`, `_TimeReceived` and `_ResourceId` are
//! the server's, as for `_CL` tables; so are `_ItemId` (a random UUID),
//! `_BilledSize` (the record's compact JSON length) and `_IsBillable`
//! (`true`) in the tables that declare them. `SourceSystem` is `RestAPI`
//! unless a record sets it.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, TimestampNanosecondArray};
use arrow::datatypes::Schema;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use watchpost_schema::standard::standard_table;
use watchpost_schema::{ColumnDef, KqlType, TableSchema, TIME_GENERATED, TIME_RECEIVED};

use super::decode::{standard_columns, MAX_TIME_GENERATED_AGE_NANOS, MAX_TIME_GENERATED_LEAD_NANOS, SOURCE_SYSTEM};
use super::error::{codes, DataCollectorError};
use super::infer::parse_iso_datetime;
use super::{DecodedBatch, ValidatedPost};
use crate::logs_ingestion::{json_records, parse_datetime, ColumnBuilder, RecordsError};

/// Columns the server fills; a body may not set them.
const SERVER_COLUMNS: [&str; 7] = ["TenantId", "Type", TIME_RECEIVED, "_ResourceId", ITEM_ID, BILLED_SIZE, IS_BILLABLE];

/// Per-row standard columns (syslog-cef spec 6), filled when the table
/// declares them: a unique id, the record's size in bytes and `true`.
const ITEM_ID: &str = "_ItemId";
const BILLED_SIZE: &str = "_BilledSize";
const IS_BILLABLE: &str = "_IsBillable";

const SOURCE_SYSTEM_COLUMN: &str = "SourceSystem";

/// Longest value quoted back in an error message, in characters.
const QUOTED_VALUE_CHARS: usize = 80;

/// Decodes the body of a post for the standard table `post.table` into a
/// batch of that table's columns. `table_schema` is the table's current
/// schema (the catalogue's when empty).
pub(super) fn decode_standard(
    post: &ValidatedPost<'_>,
    table_schema: &TableSchema,
    received: DateTime<Utc>,
) -> Result<DecodedBatch, DataCollectorError> {
    let schema = match standard_table(&post.table) {
        Some(standard) if table_schema.columns.is_empty() => &standard.schema,
        Some(_) => table_schema,
        None => {
            return Err(DataCollectorError::bad_request(
                codes::INVALID_LOG_TYPE,
                format!("`{}` is not a standard table Watchpost ships", post.table),
            ))
        }
    };
    let records = parse_records(&post.body)?;
    let time_field = post.time_generated_field.as_deref();
    let used = used_columns(&records, schema, &post.table, time_field)?;
    let received_ns = received.timestamp_nanos_opt().expect("the clock is before 2262");
    let n_rows = records.len();
    let mut time_generated = Vec::with_capacity(n_rows);
    for (idx, record) in records.iter().enumerate() {
        time_generated.push(row_time_generated(idx, record, time_field, received_ns)?);
    }
    let repeat =
        |text: &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(std::iter::repeat_n(text, n_rows))) };
    let default_source = Value::String(SOURCE_SYSTEM.to_string());
    let source_column = ColumnDef::new(SOURCE_SYSTEM_COLUMN, KqlType::String);
    let fixed_arrays: [ArrayRef; 6] = [
        repeat(&post.workspace_id),
        build_column(&records, &source_column, Some(&default_source))?,
        Arc::new(TimestampNanosecondArray::from(time_generated).with_timezone("UTC")),
        Arc::new(TimestampNanosecondArray::from(vec![received_ns; n_rows]).with_timezone("UTC")),
        repeat(&post.table),
        repeat(post.resource_id.as_deref().unwrap_or("")),
    ];
    let mut defs = Vec::with_capacity(6 + used.len());
    let mut arrays = Vec::with_capacity(6 + used.len());
    for (def, array) in standard_columns().into_iter().zip(fixed_arrays) {
        // A standard table without one of these columns does not get it.
        if schema.column(&def.name).is_some() {
            defs.push(def);
            arrays.push(array);
        }
    }
    for column in used {
        arrays.push(build_column(&records, column, None)?);
        defs.push(column.clone());
    }
    for (name, array) in row_columns(&records, schema) {
        if let Some(def) = schema.column(name) {
            defs.push(def.clone());
            arrays.push(array);
        }
    }
    let arrow_schema = Arc::new(Schema::new(defs.iter().map(ColumnDef::arrow_field).collect::<Vec<_>>()));
    let options = RecordBatchOptions::new().with_row_count(Some(n_rows));
    let batch = RecordBatch::try_new_with_options(arrow_schema, arrays, &options)
        .map_err(|error| DataCollectorError::internal(format!("failed to assemble the record batch: {error}")))?;
    tracing::debug!(table = %post.table, n_rows, "standard table batch decoded");
    Ok(DecodedBatch { batch, new_columns: Vec::new(), warnings: Vec::new(), n_rows })
}

/// `_ItemId`, `_BilledSize` and `_IsBillable` for the columns of them the
/// table has. A record's billed size is the length of its compact JSON
/// text, the bytes it took on the wire without whitespace.
fn row_columns(records: &[Map<String, Value>], schema: &TableSchema) -> Vec<(&'static str, ArrayRef)> {
    let n_rows = records.len();
    let mut columns: Vec<(&'static str, ArrayRef)> = Vec::new();
    if schema.column(ITEM_ID).is_some() {
        let ids = (0..n_rows).map(|_| uuid::Uuid::new_v4().to_string());
        columns.push((ITEM_ID, Arc::new(StringArray::from_iter_values(ids))));
    }
    if schema.column(BILLED_SIZE).is_some() {
        let sizes = records.iter().map(|record| compact_json_len(record) as f64);
        columns.push((BILLED_SIZE, Arc::new(Float64Array::from_iter_values(sizes))));
    }
    if schema.column(IS_BILLABLE).is_some() {
        columns.push((IS_BILLABLE, Arc::new(StringArray::from_iter_values(std::iter::repeat_n("true", n_rows)))));
    }
    columns
}

/// The length of `record` as compact JSON, counted as it is written
/// rather than built.
fn compact_json_len(record: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a map of JSON values to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, record);
    count.0
}

/// The body's records: one JSON object or an array of objects.
fn parse_records(body: &[u8]) -> Result<Vec<Map<String, Value>>, DataCollectorError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    json_records(body).map_err(|err| {
        DataCollectorError::invalid_data_format(match err {
            RecordsError::Json(error) => {
                format!("the body must be a JSON object or an array of JSON objects: {error}")
            }
            RecordsError::Shape => "the body must be a JSON object or an array of JSON objects".to_string(),
            RecordsError::Record(idx) => format!("record {idx} of the body is not a JSON object"),
        })
    })
}

/// The table's columns the body sets, in table order, leaving out
/// `TimeGenerated` and `SourceSystem` (built on their own). Refuses a
/// property that names no column (except the `time-generated-field`
/// property) or a column the server fills.
fn used_columns<'s>(
    records: &[Map<String, Value>],
    schema: &'s TableSchema,
    table: &str,
    time_field: Option<&str>,
) -> Result<Vec<&'s ColumnDef>, DataCollectorError> {
    let mut used = vec![false; schema.columns.len()];
    for (idx, record) in records.iter().enumerate() {
        for name in record.keys() {
            if SERVER_COLUMNS.contains(&name.as_str()) {
                return Err(DataCollectorError::invalid_data_format(format!(
                    "record {idx}: property `{name}` is filled by the server, leave it out; nothing was stored"
                )));
            }
            match schema.index_of(name) {
                Some(position) => used[position] = true,
                None if time_field == Some(name.as_str()) => {}
                None => {
                    return Err(DataCollectorError::invalid_data_format(format!(
                        "record {idx}: property `{name}` is not a column of the standard table `{table}`; \
                         nothing was stored"
                    )))
                }
            }
        }
    }
    let columns = schema
        .columns
        .iter()
        .zip(used)
        .filter(|(column, used)| *used && column.name != TIME_GENERATED && column.name != SOURCE_SYSTEM_COLUMN)
        .map(|(column, _)| column)
        .collect();
    Ok(columns)
}

/// One column's values across the records, converted to its type; a record
/// without the property (or with `null`) gets `default`, else null.
fn build_column(
    records: &[Map<String, Value>],
    column: &ColumnDef,
    default: Option<&Value>,
) -> Result<ArrayRef, DataCollectorError> {
    if matches!(column.kql_type, KqlType::Timespan | KqlType::Decimal) {
        return Err(DataCollectorError::invalid_data_format(format!(
            "column `{}` is of type {}, which this API cannot fill; nothing was stored",
            column.name,
            column.kql_type.name()
        )));
    }
    let mut builder = ColumnBuilder::new(column.kql_type, records.len());
    for (idx, record) in records.iter().enumerate() {
        let value = record.get(&column.name).filter(|value| !value.is_null()).or(default);
        if !builder.push(value) {
            return Err(not_convertible(idx, &column.name, value, column.kql_type));
        }
    }
    Ok(builder.finish())
}

/// `TimeGenerated` of one record, in nanoseconds.
fn row_time_generated(
    idx: usize,
    record: &Map<String, Value>,
    time_field: Option<&str>,
    received_ns: i64,
) -> Result<i64, DataCollectorError> {
    let window = received_ns - MAX_TIME_GENERATED_AGE_NANOS..=received_ns + MAX_TIME_GENERATED_LEAD_NANOS;
    let from_field = time_field
        .and_then(|field| record.get(field))
        .and_then(Value::as_str)
        .and_then(parse_iso_datetime)
        .filter(|nanos| window.contains(nanos));
    if let Some(nanos) = from_field {
        return Ok(nanos);
    }
    match record.get(TIME_GENERATED) {
        None | Some(Value::Null) => Ok(received_ns),
        Some(value) => value
            .as_str()
            .and_then(parse_datetime)
            .ok_or_else(|| not_convertible(idx, TIME_GENERATED, Some(value), KqlType::Datetime)),
    }
}

fn not_convertible(idx: usize, name: &str, value: Option<&Value>, kql_type: KqlType) -> DataCollectorError {
    let mut text = value.map(Value::to_string).unwrap_or_default();
    if text.chars().count() > QUOTED_VALUE_CHARS {
        text = format!("{}...", text.chars().take(QUOTED_VALUE_CHARS).collect::<String>());
    }
    DataCollectorError::invalid_data_format(format!(
        "record {idx}: property `{name}` has the value {text}, which is not a valid {}; nothing was stored",
        kql_type.name()
    ))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int32Type, TimestampNanosecondType};
    use chrono::TimeZone as _;

    use super::*;
    use crate::data_collector::{decode, TableKind};

    const WORKSPACE: &str = "0b4a5c3e-1f2d-4e6a-9b8c-7d6e5f4a3b2c";

    fn received() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn nanos(text: &str) -> i64 {
        parse_iso_datetime(text).unwrap()
    }

    fn post<'a>(table: &str, time_field: Option<&str>, body: &'a str) -> ValidatedPost<'a> {
        ValidatedPost {
            workspace_id: WORKSPACE.to_string(),
            table: table.to_string(),
            table_kind: TableKind::Standard,
            time_generated_field: time_field.map(str::to_string),
            resource_id: None,
            body: Cow::Borrowed(body.as_bytes()),
        }
    }

    fn decode_into(table: &str, time_field: Option<&str>, body: &str) -> Result<DecodedBatch, DataCollectorError> {
        let schema = standard_table(table).unwrap().schema.clone();
        decode(&post(table, time_field, body), &schema, received())
    }

    fn strings<'b>(batch: &'b RecordBatch, name: &str) -> Vec<Option<&'b str>> {
        batch.column_by_name(name).unwrap().as_string::<i32>().iter().collect()
    }

    #[test]
    fn syslog_rows_fill_the_columns_with_their_types() {
        let body = r#"[
            {"TimeCollected": "2024-05-01T11:59:58Z", "EventTime": "2024-05-01T11:59:57.5Z", "Computer": "web1",
             "HostName": "web1", "Facility": "authpriv", "SeverityLevel": "info", "SyslogMessage": "pam",
             "ProcessID": 7, "ProcessName": "sudo", "HostIP": "127.0.0.1", "SourceSystem": "Linux", "MG": ""},
            {"SyslogMessage": "second", "ProcessID": "42", "ProcessName": null}
        ]"#;
        let decoded = decode_into("Syslog", Some("TimeCollected"), body).unwrap();
        let batch = &decoded.batch;
        assert_eq!(decoded.n_rows, 2);
        assert!(decoded.new_columns.is_empty());
        let names: Vec<String> = batch.schema().fields().iter().map(|field| field.name().clone()).collect();
        assert_eq!(&names[..6], ["TenantId", "SourceSystem", "TimeGenerated", "_TimeReceived", "Type", "_ResourceId"]);
        assert!(names.iter().all(|name| !name.ends_with("_s") && !name.ends_with("_d")), "{names:?}");
        assert_eq!(strings(batch, "Type"), [Some("Syslog"), Some("Syslog")]);
        assert_eq!(strings(batch, "TenantId"), [Some(WORKSPACE), Some(WORKSPACE)]);
        assert_eq!(strings(batch, "SourceSystem"), [Some("Linux"), Some("RestAPI")]);
        assert_eq!(strings(batch, "SyslogMessage"), [Some("pam"), Some("second")]);
        assert_eq!(strings(batch, "ProcessName"), [Some("sudo"), None]);
        let pids = batch.column_by_name("ProcessID").unwrap().as_primitive::<Int32Type>();
        assert_eq!((pids.value(0), pids.value(1)), (7, 42));
        let times = batch.column_by_name("TimeGenerated").unwrap().as_primitive::<TimestampNanosecondType>();
        let received_ns = received().timestamp_nanos_opt().unwrap();
        assert_eq!((times.value(0), times.value(1)), (nanos("2024-05-01T11:59:58Z"), received_ns));
        let event_time = batch.column_by_name("EventTime").unwrap().as_primitive::<TimestampNanosecondType>();
        assert_eq!(event_time.value(0), nanos("2024-05-01T11:59:57.5Z"));
        assert!(event_time.is_null(1));
        // Syslog has a TimeCollected column, so the time field is kept there too.
        assert!(batch.column_by_name("TimeCollected").is_some());
        // The per-row columns: a distinct UUID each, the compact JSON size, billable.
        let ids = strings(batch, "_ItemId");
        assert!(ids.iter().all(|id| id.is_some_and(|id| uuid::Uuid::parse_str(id).is_ok())), "{ids:?}");
        assert_ne!(ids[0], ids[1]);
        let sizes = batch.column_by_name("_BilledSize").unwrap().as_primitive::<Float64Type>();
        let second = r#"{"SyslogMessage":"second","ProcessID":"42","ProcessName":null}"#;
        assert_eq!(sizes.value(1), second.len() as f64);
        assert!(sizes.value(0) > sizes.value(1));
        assert_eq!(strings(batch, "_IsBillable"), [Some("true"), Some("true")]);
    }

    #[test]
    fn unknown_properties_server_columns_and_bad_values_refuse_the_body() {
        for (body, needle) in [
            (
                r#"[{"SyslogMessage": "ok"}, {"SyslogMessage_s": "x"}]"#,
                "record 1: property `SyslogMessage_s` is not a column",
            ),
            (r#"{"syslogmessage": "x"}"#, "`syslogmessage` is not a column of the standard table `Syslog`"),
            (r#"{"Type": "Syslog"}"#, "`Type` is filled by the server"),
            (r#"{"TenantId": "x"}"#, "`TenantId` is filled by the server"),
            (r#"{"_ItemId": "x"}"#, "`_ItemId` is filled by the server"),
            (r#"{"ProcessID": "seven"}"#, r#"`ProcessID` has the value "seven", which is not a valid int"#),
            (r#"{"ProcessID": 3000000000}"#, "not a valid int"),
            (r#"{"EventTime": "yesterday"}"#, "not a valid datetime"),
            (r#"{"TimeGenerated": 5}"#, "`TimeGenerated` has the value 5"),
            (r#"[{"SyslogMessage": "ok"}, 3]"#, "record 1 of the body is not a JSON object"),
            ("[{", "JSON object"),
        ] {
            let error = decode_into("Syslog", None, body).unwrap_err();
            assert_eq!((error.status, error.code), (400, Some(codes::INVALID_DATA_FORMAT)), "{body}");
            assert!(error.message.contains(needle), "{body}: {}", error.message);
        }
    }

    #[test]
    fn the_time_field_may_name_no_column_and_obeys_the_window() {
        let body = r#"[
            {"TimeCollected": "2024-05-01T11:00:00Z", "Computer": "a", "Category": "Direct Agent", "OSType": "Linux"},
            {"TimeCollected": "2024-04-01T00:00:00Z", "Computer": "b"},
            {"TimeGenerated": "2024-04-01T00:00:00", "Computer": "c"},
            {"TimeCollected": "not a time", "Computer": "d", "IsGatewayInstalled": "false", "ComputerPrivateIPs": ["10.0.0.1"]}
        ]"#;
        let decoded = decode_into("Heartbeat", Some("TimeCollected"), body).unwrap();
        let batch = &decoded.batch;
        assert!(batch.column_by_name("TimeCollected").is_none(), "Heartbeat has no such column");
        let times = batch.column_by_name("TimeGenerated").unwrap().as_primitive::<TimestampNanosecondType>();
        let received_ns = received().timestamp_nanos_opt().unwrap();
        let times: Vec<i64> = times.values().to_vec();
        assert_eq!(times, [nanos("2024-05-01T11:00:00Z"), received_ns, nanos("2024-04-01T00:00:00Z"), received_ns]);
        assert_eq!(strings(batch, "ComputerPrivateIPs")[3], Some(r#"["10.0.0.1"]"#));
        assert!(!batch.column_by_name("IsGatewayInstalled").unwrap().as_boolean().value(3));
        // Without the header the same property is unknown to Heartbeat.
        let error = decode_into("Heartbeat", None, r#"{"TimeCollected": "2024-05-01T11:00:00Z"}"#).unwrap_err();
        assert!(error.message.contains("`TimeCollected` is not a column"), "{}", error.message);
    }
}
