//! Body decoding and type inference (spec 1.4, 1.5, 1.6).
//!
//! The body is checked to be UTF-8 once, then read in one pass by the
//! scanner in `scan.rs`, which hands out each value's kind before reading
//! it: strings arrive unescaped (borrowed unless they had escapes), numbers
//! and nested values as their JSON text, and all go straight into column
//! buffers. Property names are resolved once per distinct name and cached
//! per position, and a cached name is matched against the body's raw bytes,
//! so rows that repeat the previous row's layout decode no names at all.
//!
//! Column choice for a property with base name `p`:
//! * string values first try the columns `p_d`, `p_b`, `p_t`, `p_g`, `p_s`
//!   that exist (in the table, or created by an earlier row of this
//!   request), in that order, converting the text; if none takes it, a new
//!   column gets the inferred suffix (`_t` ISO date-time, `_g` GUID, else
//!   `_s`);
//! * numbers go to `p_d`, booleans to `p_b`, objects and arrays (as compact
//!   JSON text) to `p_s`, created if missing; `null` is skipped.

mod scan;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampNanosecondArray};
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use watchpost_schema::{ColumnDef, KqlType, TableSchema, TIME_GENERATED, TIME_RECEIVED};

use self::scan::{Next, ScanError, Scanner};
use super::columns::{Cell, ColumnData};
use super::error::DataCollectorError;
use super::infer::{parse_bool_text, parse_guid, parse_iso_datetime, parse_numeric_text, sanitise_name};
use super::{
    DecodedBatch, TableKind, ValidatedPost, MAX_BODY_BYTES, MAX_PROPERTY_NAME_CHARS, MAX_TABLE_COLUMNS, MAX_VALUE_BYTES,
};

/// Property names a payload must not use (spec 1.4).
const RESERVED_NAMES: [&str; 3] = ["tenant", "TimeGenerated", "RawData"];

/// How far before receipt a time-generated-field value may lie.
pub(super) const MAX_TIME_GENERATED_AGE_NANOS: i64 = 2 * 86_400 * 1_000_000_000;
/// How far after receipt a time-generated-field value may lie.
pub(super) const MAX_TIME_GENERATED_LEAD_NANOS: i64 = 86_400 * 1_000_000_000;

/// The value of `SourceSystem` for Data Collector rows.
pub(super) const SOURCE_SYSTEM: &str = "RestAPI";

/// Decodes a validated body into rows of `post.table`.
///
/// `table_schema` holds the table's current columns (empty for a new
/// table); `received` is the ingestion time (`_TimeReceived`, and
/// `TimeGenerated` unless the time-generated-field supplies one).
///
/// A post for a standard table ([`TableKind::Standard`]) is decoded by the
/// Watchpost rule instead: properties are the table's columns, converted to
/// their declared types, and the batch never adds a column.
///
/// Errors: 400 `InvalidDataFormat` for a body that is not one JSON object or
/// an array of objects, a reserved, empty or over-long property name (for a
/// standard table: a property that is not a column, or a value that does
/// not convert); 413 for a body over [`MAX_BODY_BYTES`].
pub fn decode(
    post: &ValidatedPost<'_>,
    table_schema: &TableSchema,
    received: DateTime<Utc>,
) -> Result<DecodedBatch, DataCollectorError> {
    if post.body.len() > MAX_BODY_BYTES {
        return Err(DataCollectorError::too_large(format!("the request body is larger than {MAX_BODY_BYTES} bytes")));
    }
    if post.table_kind == TableKind::Standard {
        return super::standard::decode_standard(post, table_schema, received);
    }
    let body: &[u8] = &post.body;
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    // One check of the whole body lets the parser skip per-string checks.
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(error) => {
            return Err(DataCollectorError::invalid_data_format(format!(
                "the body is not valid UTF-8 (at byte {})",
                error.valid_up_to()
            )))
        }
    };
    let mut rows = RowsBuilder::new(
        table_schema,
        post.time_generated_field.as_deref(),
        received.timestamp_nanos_opt().expect("the clock is before 2262"),
    );
    let mut scanner = Scanner::new(text);
    match parse_body(&mut scanner, &mut rows) {
        Ok(()) => rows.finish(post, table_schema),
        Err(ParseFailure::Rejected(error)) => Err(error),
        Err(ParseFailure::Json(error)) => Err(DataCollectorError::invalid_data_format(format!(
            "the body must be a JSON object or an array of JSON objects: {}",
            error.describe(body)
        ))),
    }
}

/// Why parsing stopped.
enum ParseFailure {
    /// Malformed JSON, or a record that is not an object.
    Json(ScanError),
    /// The JSON is fine but its content is refused (a reserved name, ...).
    Rejected(DataCollectorError),
}

impl From<ScanError> for ParseFailure {
    fn from(error: ScanError) -> Self {
        ParseFailure::Json(error)
    }
}

fn not_an_object(scanner: &Scanner<'_>) -> ParseFailure {
    ParseFailure::Json(ScanError { what: "expected an object", offset: scanner.position() })
}

/// Reads the whole body, one object or an array of objects, into `rows`.
fn parse_body(scanner: &mut Scanner<'_>, rows: &mut RowsBuilder<'_>) -> Result<(), ParseFailure> {
    let mut scratch = String::new();
    match scanner.peek()? {
        Next::Object => parse_record(scanner, rows, &mut scratch)?,
        Next::Array => {
            let mut more = scanner.enter_array()?;
            while more {
                if scanner.peek()? != Next::Object {
                    return Err(not_an_object(scanner));
                }
                let start = scanner.position();
                parse_record(scanner, rows, &mut scratch)?;
                if rows.n_rows == 1 {
                    // Most batches repeat one record shape: size the buffers
                    // from the first record.
                    let record_len = scanner.position() - start + 1;
                    rows.reserve_rows(scanner.remaining() / record_len);
                }
                more = scanner.next_element()?;
            }
        }
        _ => return Err(not_an_object(scanner)),
    }
    scanner.finish()?;
    Ok(())
}

/// Reads one record; the scanner stands at its opening brace.
fn parse_record(
    scanner: &mut Scanner<'_>,
    rows: &mut RowsBuilder<'_>,
    scratch: &mut String,
) -> Result<(), ParseFailure> {
    let row = rows.n_rows;
    let mut time_generated = rows.received_nanos;
    let mut position = 0;
    let mut more = scanner.enter_object()?;
    while more {
        let (base, is_time_field) = match rows.cached_key(position) {
            Some((key, base, is_time_field)) if scanner.key_is(key) => (base, is_time_field),
            _ => {
                let name = scanner.key(scratch)?;
                rows.resolve_key(position, name).map_err(ParseFailure::Rejected)?
            }
        };
        position += 1;
        let next = scanner.peek()?;
        let value = match next {
            Next::String => Value::Text(scanner.string(scratch)?),
            Next::Number => Value::Number(scanner.number()?),
            Next::True | Next::False => {
                scanner.literal(next)?;
                Value::Bool(next == Next::True)
            }
            Next::Null => {
                scanner.literal(next)?;
                more = scanner.next_member()?;
                continue;
            }
            Next::Object | Next::Array => Value::Nested(scanner.nested(scratch)?),
        };
        if let Some(nanos) = rows.push_value(row, base, value, is_time_field) {
            time_generated = nanos;
        }
        more = scanner.next_member()?;
    }
    rows.time_generated.push(time_generated);
    rows.n_rows += 1;
    Ok(())
}

/// The standard columns of every Data Collector table, in batch order.
pub(super) fn standard_columns() -> [ColumnDef; 6] {
    [
        ColumnDef::new("TenantId", KqlType::String),
        ColumnDef::new("SourceSystem", KqlType::String),
        ColumnDef::new(TIME_GENERATED, KqlType::Datetime),
        ColumnDef::new(TIME_RECEIVED, KqlType::Datetime),
        ColumnDef::new("Type", KqlType::String),
        ColumnDef::new("_ResourceId", KqlType::String),
    ]
}

/// Column suffixes in conversion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suffix {
    D = 0,
    B = 1,
    T = 2,
    G = 3,
    S = 4,
}

impl Suffix {
    const CONVERSION_ORDER: [Suffix; 5] = [Suffix::D, Suffix::B, Suffix::T, Suffix::G, Suffix::S];

    fn text(self) -> &'static str {
        match self {
            Suffix::D => "_d",
            Suffix::B => "_b",
            Suffix::T => "_t",
            Suffix::G => "_g",
            Suffix::S => "_s",
        }
    }

    fn kql_type(self) -> KqlType {
        match self {
            Suffix::D => KqlType::Real,
            Suffix::B => KqlType::Bool,
            Suffix::T => KqlType::Datetime,
            Suffix::G => KqlType::Guid,
            Suffix::S => KqlType::String,
        }
    }
}

/// Where the values of one `{base}{suffix}` column go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// No such column yet.
    Absent,
    /// The table has it but this batch has not used it yet.
    InTable(KqlType),
    /// Index into `RowsBuilder::columns`.
    Active(usize),
    /// The column limit stopped it from being created; values are dropped.
    Dropped,
}

/// The columns of one sanitised property name.
#[derive(Debug)]
struct BaseEntry {
    name: String,
    slots: [Slot; 5],
}

/// A property name resolved at one position of the previous rows.
#[derive(Debug)]
struct CachedKey {
    key: String,
    base: usize,
    is_time_field: bool,
    /// The key has no character JSON must escape, so its raw text in the
    /// body is the key itself (unless a writer escaped it needlessly, which
    /// the decoding path then handles).
    raw_matchable: bool,
}

/// One JSON value of a record, borrowed from the body.
#[derive(Debug, Clone, Copy)]
enum Value<'v> {
    Bool(bool),
    /// The number's JSON text.
    Number(&'v str),
    /// The unescaped string.
    Text(&'v str),
    /// An object or array's JSON text.
    Nested(&'v str),
}

struct PayloadColumn {
    def: ColumnDef,
    data: ColumnData,
    is_new: bool,
}

/// Why values were dropped or changed, for the warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Issue {
    ColumnLimit,
    TypeMismatch,
    Truncated,
}

struct RowsBuilder<'s> {
    table_columns: HashMap<&'s str, KqlType>,
    time_generated_field: Option<&'s str>,
    received_nanos: i64,
    /// Columns the table has or will have, for the 500-column limit.
    n_table_columns: usize,
    bases: Vec<BaseEntry>,
    base_index: HashMap<String, usize>,
    key_cache: Vec<CachedKey>,
    columns: Vec<PayloadColumn>,
    time_generated: Vec<i64>,
    n_rows: usize,
    issues: BTreeMap<(Issue, String), usize>,
}

impl<'s> RowsBuilder<'s> {
    fn new(table_schema: &'s TableSchema, time_generated_field: Option<&'s str>, received_nanos: i64) -> Self {
        let table_columns: HashMap<&str, KqlType> =
            table_schema.columns.iter().map(|column| (column.name.as_str(), column.kql_type)).collect();
        let n_missing_standard =
            standard_columns().iter().filter(|column| !table_columns.contains_key(column.name.as_str())).count();
        RowsBuilder {
            n_table_columns: table_columns.len() + n_missing_standard,
            table_columns,
            time_generated_field: time_generated_field.filter(|field| !field.is_empty()),
            received_nanos,
            bases: Vec::new(),
            base_index: HashMap::new(),
            key_cache: Vec::new(),
            columns: Vec::new(),
            time_generated: Vec::new(),
            n_rows: 0,
            issues: BTreeMap::new(),
        }
    }

    /// Makes room for about `more_rows` records shaped like those so far.
    fn reserve_rows(&mut self, more_rows: usize) {
        let seen = self.n_rows.max(1);
        self.time_generated.reserve(more_rows);
        for column in &mut self.columns {
            let text_per_row = column.data.text_len().div_ceil(seen);
            column.data.reserve(more_rows, (text_per_row * more_rows).saturating_add(more_rows / 8 * text_per_row));
        }
    }

    /// The key the previous records had at `position`, with its base entry,
    /// when it can be matched against the raw body (it has no escapes).
    fn cached_key(&self, position: usize) -> Option<(&str, usize, bool)> {
        let cached = self.key_cache.get(position)?;
        cached.raw_matchable.then_some((cached.key.as_str(), cached.base, cached.is_time_field))
    }

    /// Returns the base entry of the property `key` at `position`.
    fn resolve_key(&mut self, position: usize, key: &str) -> Result<(usize, bool), DataCollectorError> {
        if let Some(cached) = self.key_cache.get(position) {
            if cached.key == key {
                return Ok((cached.base, cached.is_time_field));
            }
        }
        if RESERVED_NAMES.contains(&key) {
            return Err(DataCollectorError::invalid_data_format(format!("property name `{key}` is reserved")));
        }
        if key.is_empty() {
            return Err(DataCollectorError::invalid_data_format("a property name is empty"));
        }
        if key.chars().count() > MAX_PROPERTY_NAME_CHARS {
            return Err(DataCollectorError::invalid_data_format(format!(
                "a property name is longer than {MAX_PROPERTY_NAME_CHARS} characters"
            )));
        }
        let base_name = sanitise_name(key);
        let is_time_field = self.time_generated_field.is_some_and(|field| field == key || field == base_name);
        let base = match self.base_index.get(base_name.as_ref()) {
            Some(&base) => base,
            None => self.add_base(base_name.into_owned()),
        };
        let raw_matchable = !key.bytes().any(|byte| byte == b'"' || byte == b'\\' || byte < 0x20);
        let cached = CachedKey { key: key.to_string(), base, is_time_field, raw_matchable };
        if position < self.key_cache.len() {
            self.key_cache[position] = cached;
        } else {
            self.key_cache.push(cached);
        }
        Ok((base, is_time_field))
    }

    fn add_base(&mut self, name: String) -> usize {
        let slots = Suffix::CONVERSION_ORDER.map(|suffix| {
            let column_name = format!("{name}{}", suffix.text());
            match self.table_columns.get(column_name.as_str()) {
                Some(&kql_type) => Slot::InTable(kql_type),
                None => Slot::Absent,
            }
        });
        let base = self.bases.len();
        self.base_index.insert(name.clone(), base);
        self.bases.push(BaseEntry { name, slots });
        base
    }

    /// Stores one property value. Returns the `TimeGenerated` it supplies,
    /// if it is the time-generated-field and a date-time within the window.
    fn push_value(&mut self, row: usize, base: usize, value: Value<'_>, is_time_field: bool) -> Option<i64> {
        match value {
            Value::Bool(_) => self.store(row, base, Suffix::B, value),
            Value::Nested(_) => self.store(row, base, Suffix::S, value),
            Value::Number(_) => self.store(row, base, Suffix::D, value),
            Value::Text(text) => {
                self.store_text(row, base, text);
                return is_time_field.then(|| self.time_generated_from(text)).flatten();
            }
        }
        None
    }

    fn time_generated_from(&self, text: &str) -> Option<i64> {
        let nanos = parse_iso_datetime(text)?;
        let earliest = self.received_nanos - MAX_TIME_GENERATED_AGE_NANOS;
        let latest = self.received_nanos + MAX_TIME_GENERATED_LEAD_NANOS;
        (earliest..=latest).contains(&nanos).then_some(nanos)
    }

    /// Stores text in the first existing column that converts it, else in a
    /// new column of the inferred type.
    fn store_text(&mut self, row: usize, base: usize, text: &str) {
        let value = Value::Text(text);
        for suffix in Suffix::CONVERSION_ORDER {
            let kql_type = match self.bases[base].slots[suffix as usize] {
                Slot::Active(column) => self.columns[column].def.kql_type,
                Slot::InTable(kql_type) => kql_type,
                Slot::Absent | Slot::Dropped => continue,
            };
            if let Some(cell) = convert(kql_type, value) {
                let column = self.activate(base, suffix, kql_type, false);
                self.write(column, row, cell);
                return;
            }
        }
        let suffix = if parse_iso_datetime(text).is_some() {
            Suffix::T
        } else if parse_guid(text).is_some() {
            Suffix::G
        } else {
            Suffix::S
        };
        self.store(row, base, suffix, value);
    }

    /// Stores a value in the `suffix` column of `base`, creating it if
    /// needed and allowed.
    fn store(&mut self, row: usize, base: usize, suffix: Suffix, value: Value<'_>) {
        let (kql_type, is_new) = match self.bases[base].slots[suffix as usize] {
            Slot::Active(column) => (self.columns[column].def.kql_type, false),
            Slot::InTable(kql_type) => (kql_type, false),
            Slot::Absent if self.n_table_columns < MAX_TABLE_COLUMNS => (suffix.kql_type(), true),
            Slot::Absent | Slot::Dropped => {
                self.bases[base].slots[suffix as usize] = Slot::Dropped;
                let column_name = format!("{}{}", self.bases[base].name, suffix.text());
                self.note(Issue::ColumnLimit, column_name);
                return;
            }
        };
        let Some(cell) = convert(kql_type, value) else {
            let column_name = format!("{}{}", self.bases[base].name, suffix.text());
            self.note(Issue::TypeMismatch, column_name);
            return;
        };
        let column = self.activate(base, suffix, kql_type, is_new);
        self.write(column, row, cell);
    }

    /// Returns the batch column for a slot, creating the buffer on first use.
    fn activate(&mut self, base: usize, suffix: Suffix, kql_type: KqlType, is_new: bool) -> usize {
        if let Slot::Active(column) = self.bases[base].slots[suffix as usize] {
            return column;
        }
        let name = format!("{}{}", self.bases[base].name, suffix.text());
        let data = ColumnData::for_type(kql_type).expect("convert() only succeeds for storable types");
        let column = self.columns.len();
        self.columns.push(PayloadColumn { def: ColumnDef::new(name, kql_type), data, is_new });
        if is_new {
            self.n_table_columns += 1;
        }
        self.bases[base].slots[suffix as usize] = Slot::Active(column);
        column
    }

    fn write(&mut self, column: usize, row: usize, cell: Cell<'_>) {
        let payload_column = &mut self.columns[column];
        match payload_column.data.set(row, cell) {
            Some(false) => {}
            Some(true) => {
                let column_name = payload_column.def.name.clone();
                self.note(Issue::Truncated, column_name);
            }
            None => {
                let column_name = payload_column.def.name.clone();
                self.note(Issue::TypeMismatch, column_name);
            }
        }
    }

    fn note(&mut self, issue: Issue, column_name: String) {
        *self.issues.entry((issue, column_name)).or_insert(0) += 1;
    }

    fn finish(self, post: &ValidatedPost<'_>, table_schema: &TableSchema) -> Result<DecodedBatch, DataCollectorError> {
        let n_rows = self.n_rows;
        let repeat =
            |text: &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(std::iter::repeat_n(text, n_rows))) };
        let time_generated = TimestampNanosecondArray::from(self.time_generated).with_timezone("UTC");
        let time_received = TimestampNanosecondArray::from(vec![self.received_nanos; n_rows]).with_timezone("UTC");
        let mut arrays: Vec<ArrayRef> = vec![
            repeat(&post.workspace_id),
            repeat(SOURCE_SYSTEM),
            Arc::new(time_generated),
            Arc::new(time_received),
            repeat(&post.table),
            repeat(post.resource_id.as_deref().unwrap_or("")),
        ];
        let mut defs: Vec<ColumnDef> = standard_columns().into();
        let mut new_columns: Vec<ColumnDef> =
            defs.iter().filter(|column| table_schema.column(&column.name).is_none()).cloned().collect();
        for column in self.columns {
            if column.is_new {
                new_columns.push(column.def.clone());
            }
            arrays.push(column.data.finish(n_rows));
            defs.push(column.def);
        }
        let schema = Arc::new(Schema::new(defs.iter().map(ColumnDef::arrow_field).collect::<Vec<_>>()));
        let batch = RecordBatch::try_new(schema, arrays)
            .map_err(|error| DataCollectorError::internal(format!("failed to assemble the record batch: {error}")))?;
        let warnings = warnings(&post.table, &self.issues);
        tracing::debug!(
            table = %post.table,
            n_rows,
            n_new_columns = new_columns.len(),
            n_warnings = warnings.len(),
            "data collector batch decoded"
        );
        Ok(DecodedBatch { batch, new_columns, warnings, n_rows })
    }
}

fn warnings(table: &str, issues: &BTreeMap<(Issue, String), usize>) -> Vec<String> {
    issues
        .iter()
        .map(|((issue, column), n_values)| match issue {
            Issue::ColumnLimit => format!(
                "table `{table}` has {MAX_TABLE_COLUMNS} columns: column `{column}` was not added and {n_values} value(s) were dropped"
            ),
            Issue::TypeMismatch => {
                format!("column `{column}` cannot store Data Collector values: {n_values} value(s) were dropped")
            }
            Issue::Truncated => {
                format!("{n_values} value(s) of column `{column}` were longer than {MAX_VALUE_BYTES} bytes and were truncated")
            }
        })
        .collect()
}

/// Converts a value for a column of `kql_type`, or returns `None` if it
/// does not fit.
fn convert(kql_type: KqlType, value: Value<'_>) -> Option<Cell<'_>> {
    match (kql_type, value) {
        (KqlType::Real, Value::Number(json)) => parse_json_number(json).map(Cell::Real),
        (KqlType::Real, Value::Text(text)) => parse_numeric_text(text).map(Cell::Real),
        (KqlType::Bool, Value::Bool(value)) => Some(Cell::Bool(value)),
        (KqlType::Bool, Value::Text(text)) => parse_bool_text(text).map(Cell::Bool),
        (KqlType::Datetime, Value::Text(text)) => parse_iso_datetime(text).map(Cell::Micros),
        (KqlType::Guid, Value::Text(text)) => parse_guid(text).map(Cell::Guid),
        (KqlType::String, Value::Text(text)) => Some(Cell::Text(text)),
        (KqlType::String, Value::Nested(json)) => Some(Cell::Json(json)),
        (KqlType::String, Value::Number(json)) => Some(Cell::Text(json)),
        (KqlType::String, Value::Bool(value)) => Some(Cell::Text(if value { "true" } else { "false" })),
        _ => None,
    }
}

/// A JSON number as `f64`. Short integers, the common case in logs (ports,
/// counts, event ids), are summed digit by digit: exact, since any integer
/// below 2^53 is, and several times cheaper than the general parser.
fn parse_json_number(json: &str) -> Option<f64> {
    let (negative, digits) = match json.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, json),
    };
    if digits.len() <= 15 && !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
        let value = digits.bytes().fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0')) as f64;
        return Some(if negative { -value } else { value });
    }
    json.parse().ok()
}

#[cfg(test)]
mod number_tests {
    use super::parse_json_number;

    #[test]
    fn integers_and_others_parse_as_the_general_parser_does() {
        for json in [
            "0",
            "-0",
            "7",
            "17477",
            "-42",
            "999999999999999",
            "9999999999999999",
            "12345678901234567890",
            "1.5",
            "-2.5e-3",
            "1E3",
        ] {
            let expected: f64 = json.parse().unwrap();
            let parsed = parse_json_number(json).unwrap();
            assert_eq!(parsed.to_bits(), expected.to_bits(), "{json}");
        }
    }
}
