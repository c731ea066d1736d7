use std::borrow::Cow;

use arrow::array::{Array, BooleanArray, Float64Array};
use chrono::TimeZone as _;
use watchpost_schema::KQL_TYPE_METADATA_KEY;

use super::*;

const WORKSPACE: &str = "0b4a5c3e-1f2d-4e6a-9b8c-7d6e5f4a3b2c";

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

fn post(body: &str) -> ValidatedPost<'_> {
    ValidatedPost {
        workspace_id: WORKSPACE.to_string(),
        table: "MyRecord_CL".to_string(),
        table_kind: TableKind::Custom,
        time_generated_field: None,
        resource_id: None,
        body: Cow::Borrowed(body.as_bytes()),
    }
}

fn decode_new(body: &str) -> DecodedBatch {
    decode(&post(body), &TableSchema::default(), received()).unwrap()
}

fn decode_into(body: &str, columns: &[(&str, KqlType)]) -> DecodedBatch {
    let schema = table(columns);
    decode(&post(body), &schema, received()).unwrap()
}

/// A table that has the standard columns plus `columns`.
fn table(columns: &[(&str, KqlType)]) -> TableSchema {
    let mut all: Vec<ColumnDef> = standard_columns().into();
    all.extend(columns.iter().map(|(name, kql_type)| ColumnDef::new(*name, *kql_type)));
    TableSchema::new(all)
}

fn reject(body: &str) -> DataCollectorError {
    decode(&post(body), &TableSchema::default(), received()).unwrap_err()
}

fn payload_columns(decoded: &DecodedBatch) -> Vec<(String, KqlType)> {
    decoded
        .batch
        .schema()
        .fields()
        .iter()
        .skip(6)
        .map(|field| (field.name().clone(), KqlType::of_field(field).unwrap()))
        .collect()
}

fn new_payload_columns(decoded: &DecodedBatch) -> Vec<String> {
    let standard = standard_columns();
    decoded.new_columns.iter().filter(|column| !standard.contains(column)).map(|column| column.name.clone()).collect()
}

fn strings(decoded: &DecodedBatch, name: &str) -> Vec<Option<String>> {
    let column = decoded.batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    let array = column.as_any().downcast_ref::<StringArray>().unwrap();
    array.iter().map(|value| value.map(str::to_string)).collect()
}

fn reals(decoded: &DecodedBatch, name: &str) -> Vec<Option<f64>> {
    let column = decoded.batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    column.as_any().downcast_ref::<Float64Array>().unwrap().iter().collect()
}

fn bools(decoded: &DecodedBatch, name: &str) -> Vec<Option<bool>> {
    let column = decoded.batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    column.as_any().downcast_ref::<BooleanArray>().unwrap().iter().collect()
}

fn nanos(decoded: &DecodedBatch, name: &str) -> Vec<Option<i64>> {
    let column = decoded.batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    column.as_any().downcast_ref::<TimestampNanosecondArray>().unwrap().iter().collect()
}

fn rfc3339_nanos(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text).unwrap().timestamp_nanos_opt().unwrap()
}

fn owned(values: &[Option<&str>]) -> Vec<Option<String>> {
    values.iter().map(|value| value.map(str::to_string)).collect()
}

#[test]
fn standard_columns_come_first() {
    let mut post = post(r#"[{"a":"x"},{"a":"y"}]"#);
    post.resource_id = Some("/subscriptions/S".to_string());
    let decoded = decode(&post, &TableSchema::default(), received()).unwrap();
    assert_eq!(decoded.n_rows, 2);
    let names: Vec<_> = decoded.batch.schema().fields().iter().map(|field| field.name().clone()).collect();
    assert_eq!(names, ["TenantId", "SourceSystem", "TimeGenerated", "_TimeReceived", "Type", "_ResourceId", "a_s"]);
    assert_eq!(strings(&decoded, "TenantId"), owned(&[Some(WORKSPACE), Some(WORKSPACE)]));
    assert_eq!(strings(&decoded, "SourceSystem"), owned(&[Some("RestAPI"), Some("RestAPI")]));
    assert_eq!(strings(&decoded, "Type"), owned(&[Some("MyRecord_CL"), Some("MyRecord_CL")]));
    assert_eq!(strings(&decoded, "_ResourceId"), owned(&[Some("/subscriptions/S"), Some("/subscriptions/S")]));
    let now = received().timestamp_nanos_opt().unwrap();
    assert_eq!(nanos(&decoded, "TimeGenerated"), [Some(now), Some(now)]);
    assert_eq!(nanos(&decoded, "_TimeReceived"), [Some(now), Some(now)]);
    // Fields are built by ColumnDef::arrow_field, so they carry kql.type.
    let schema = decoded.batch.schema();
    let field = schema.field_with_name("TimeGenerated").unwrap();
    assert_eq!(field, &ColumnDef::new("TimeGenerated", KqlType::Datetime).arrow_field());
    assert_eq!(field.metadata().get(KQL_TYPE_METADATA_KEY).map(String::as_str), Some("datetime"));
    // A new table gains the standard columns too.
    let new_names: Vec<_> = decoded.new_columns.iter().map(|column| column.name.as_str()).collect();
    assert_eq!(new_names, ["TenantId", "SourceSystem", "TimeGenerated", "_TimeReceived", "Type", "_ResourceId", "a_s"]);
}

#[test]
fn resource_id_defaults_to_empty_string() {
    let decoded = decode_new(r#"{"a":"x"}"#);
    assert_eq!(strings(&decoded, "_ResourceId"), owned(&[Some("")]));
}

#[test]
fn existing_table_gains_only_missing_columns() {
    let decoded = decode_into(r#"{"a":"x","b":1}"#, &[("a_s", KqlType::String)]);
    assert_eq!(decoded.new_columns, [ColumnDef::new("b_d", KqlType::Real)]);
}

#[test]
fn doc_example_1_new_table_infers_types() {
    let decoded = decode_new(r#"{"number":42,"boolean":true,"string":"hello"}"#);
    assert_eq!(
        payload_columns(&decoded),
        [
            ("number_d".to_string(), KqlType::Real),
            ("boolean_b".to_string(), KqlType::Bool),
            ("string_s".to_string(), KqlType::String)
        ]
    );
    assert_eq!(reals(&decoded, "number_d"), [Some(42.0)]);
    assert_eq!(bools(&decoded, "boolean_b"), [Some(true)]);
}

#[test]
fn doc_example_2_strings_convert_into_existing_columns() {
    let existing = [("number_d", KqlType::Real), ("boolean_b", KqlType::Bool), ("string_s", KqlType::String)];
    let decoded = decode_into(r#"{"number":"2","boolean":"False","string":"hello"}"#, &existing);
    assert!(decoded.new_columns.is_empty(), "{:?}", decoded.new_columns);
    assert_eq!(reals(&decoded, "number_d"), [Some(2.0)]);
    assert_eq!(bools(&decoded, "boolean_b"), [Some(false)]);
    assert_eq!(strings(&decoded, "string_s"), owned(&[Some("hello")]));
}

#[test]
fn doc_example_3_unconvertible_values_add_columns() {
    let existing = [("number_d", KqlType::Real), ("boolean_b", KqlType::Bool), ("string_s", KqlType::String)];
    let decoded = decode_into(r#"{"number":"5","boolean":5,"string":10}"#, &existing);
    assert_eq!(new_payload_columns(&decoded), ["boolean_d", "string_d"]);
    assert_eq!(reals(&decoded, "number_d"), [Some(5.0)]);
    assert_eq!(reals(&decoded, "boolean_d"), [Some(5.0)]);
    assert_eq!(reals(&decoded, "string_d"), [Some(10.0)]);
}

#[test]
fn doc_example_4_new_table_keeps_strings() {
    let decoded = decode_new(r#"{"number":"42","boolean":"true","string":"hello"}"#);
    assert_eq!(
        payload_columns(&decoded),
        [
            ("number_s".to_string(), KqlType::String),
            ("boolean_s".to_string(), KqlType::String),
            ("string_s".to_string(), KqlType::String)
        ]
    );
    assert_eq!(strings(&decoded, "number_s"), owned(&[Some("42")]));
}

#[test]
fn existing_number_column_takes_numeric_text() {
    let decoded =
        decode_into(r#"[{"number":"42"},{"number":"-1.5e2"},{"number":"n/a"}]"#, &[("number_d", KqlType::Real)]);
    assert_eq!(reals(&decoded, "number_d"), [Some(42.0), Some(-150.0), None]);
    assert_eq!(strings(&decoded, "number_s"), owned(&[None, None, Some("n/a")]));
    assert_eq!(new_payload_columns(&decoded), ["number_s"]);
}

#[test]
fn bool_for_string_only_column_adds_bool_column() {
    let decoded = decode_into(r#"{"boolean":true}"#, &[("boolean_s", KqlType::String)]);
    assert_eq!(new_payload_columns(&decoded), ["boolean_b"]);
    assert_eq!(bools(&decoded, "boolean_b"), [Some(true)]);
}

#[test]
fn existing_columns_convert_in_order() {
    let existing = [
        ("v_s", KqlType::String),
        ("v_g", KqlType::Guid),
        ("v_t", KqlType::Datetime),
        ("v_b", KqlType::Bool),
        ("v_d", KqlType::Real),
    ];
    let body = r#"[{"v":"1"},{"v":"TRUE"},{"v":"2024-05-01T10:00:00Z"},
        {"v":"9909ED01-A74C-4874-8ABF-D2678E3AE23D"},{"v":"text"}]"#;
    let decoded = decode_into(body, &existing);
    assert!(decoded.new_columns.is_empty());
    assert_eq!(reals(&decoded, "v_d"), [Some(1.0), None, None, None, None]);
    assert_eq!(bools(&decoded, "v_b"), [None, Some(true), None, None, None]);
    assert_eq!(nanos(&decoded, "v_t"), [None, None, Some(rfc3339_nanos("2024-05-01T10:00:00Z")), None, None]);
    assert_eq!(
        strings(&decoded, "v_g"),
        owned(&[None, None, None, Some("9909ed01-a74c-4874-8abf-d2678e3ae23d"), None])
    );
    assert_eq!(strings(&decoded, "v_s"), owned(&[None, None, None, None, Some("text")]));
    // Batch columns follow first use, not table order.
    let names: Vec<_> = payload_columns(&decoded).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["v_d", "v_b", "v_t", "v_g", "v_s"]);
}

#[test]
fn first_row_creating_a_column_decides_for_later_rows() {
    let decoded = decode_new(r#"[{"x":"hello"},{"x":"2019-09-12T20:00:00Z"}]"#);
    assert_eq!(strings(&decoded, "x_s"), owned(&[Some("hello"), Some("2019-09-12T20:00:00Z")]));
    assert_eq!(new_payload_columns(&decoded), ["x_s"]);

    let decoded = decode_new(r#"[{"x":"2019-09-12T20:00:00Z"},{"x":"hello"},{"x":"2019-09-13T20:00:00Z"}]"#);
    assert_eq!(new_payload_columns(&decoded), ["x_t", "x_s"]);
    assert_eq!(
        nanos(&decoded, "x_t"),
        [Some(rfc3339_nanos("2019-09-12T20:00:00Z")), None, Some(rfc3339_nanos("2019-09-13T20:00:00Z"))]
    );
    assert_eq!(strings(&decoded, "x_s"), owned(&[None, Some("hello"), None]));

    let decoded = decode_new(r#"[{"n":1},{"n":"7"}]"#);
    assert_eq!(reals(&decoded, "n_d"), [Some(1.0), Some(7.0)]);
}

#[test]
fn dates_and_guids_are_inferred() {
    let body = r#"{"when":"2019-09-12T20:00:00.625Z","spaced":"2019-09-12 20:00:00+02:00","day":"2019-09-12",
        "id":"9909ED01-A74C-4874-8ABF-D2678E3AE23D","compact":"9909ED01A74C48748ABFD2678E3AE23D"}"#;
    let decoded = decode_new(body);
    assert_eq!(
        payload_columns(&decoded),
        [
            ("when_t".to_string(), KqlType::Datetime),
            ("spaced_t".to_string(), KqlType::Datetime),
            ("day_s".to_string(), KqlType::String),
            ("id_g".to_string(), KqlType::Guid),
            ("compact_g".to_string(), KqlType::Guid)
        ]
    );
    assert_eq!(nanos(&decoded, "when_t"), [Some(rfc3339_nanos("2019-09-12T20:00:00.625Z"))]);
    assert_eq!(nanos(&decoded, "spaced_t"), [Some(rfc3339_nanos("2019-09-12T18:00:00Z"))]);
    let guid = Some("9909ed01-a74c-4874-8abf-d2678e3ae23d");
    assert_eq!(strings(&decoded, "id_g"), owned(&[guid]));
    assert_eq!(strings(&decoded, "compact_g"), owned(&[guid]));
}

#[test]
fn nested_values_become_compact_json_strings() {
    let decoded = decode_new(r#"{"Tags": {"env": "test", "idx": 0}, "List": [1, 2.50, "a b"]}"#);
    assert_eq!(strings(&decoded, "Tags_s"), owned(&[Some(r#"{"env":"test","idx":0}"#)]));
    assert_eq!(strings(&decoded, "List_s"), owned(&[Some(r#"[1,2.50,"a b"]"#)]));
}

#[test]
fn nulls_are_skipped() {
    let decoded = decode_new(r#"[{"a":null,"b":1},{"a":"x","b":null}]"#);
    assert_eq!(strings(&decoded, "a_s"), owned(&[None, Some("x")]));
    assert_eq!(reals(&decoded, "b_d"), [Some(1.0), None]);
    let decoded = decode_new(r#"{"a":null}"#);
    assert!(payload_columns(&decoded).is_empty());
    assert_eq!(decoded.n_rows, 1);
}

#[test]
fn missing_properties_are_null() {
    let decoded = decode_new(r#"[{"a":"x"},{"b":true},{"a":"y","b":false}]"#);
    assert_eq!(strings(&decoded, "a_s"), owned(&[Some("x"), None, Some("y")]));
    assert_eq!(bools(&decoded, "b_b"), [None, Some(true), Some(false)]);
}

#[test]
fn numbers_render_as_text_in_string_typed_target() {
    // `x_d` exists as a string column (e.g. created by another API): the
    // number is stored as its JSON text.
    let decoded = decode_into(r#"{"x":1.50,"y":true}"#, &[("x_d", KqlType::String), ("y_b", KqlType::String)]);
    assert_eq!(strings(&decoded, "x_d"), owned(&[Some("1.50")]));
    assert_eq!(strings(&decoded, "y_b"), owned(&[Some("true")]));
}

#[test]
fn unstorable_existing_column_drops_value_with_warning() {
    let decoded = decode_into(r#"{"x":1}"#, &[("x_d", KqlType::Long)]);
    assert!(decoded.batch.column_by_name("x_d").is_none());
    assert_eq!(decoded.warnings.len(), 1, "{:?}", decoded.warnings);
    assert!(decoded.warnings[0].contains("x_d"));
}

#[test]
fn escaped_strings_and_names_are_unescaped() {
    let decoded = decode_new(r#"{"na\u006de":"line\nbreak \"q\"","plain":"caf\u00e9"}"#);
    assert_eq!(strings(&decoded, "name_s"), owned(&[Some("line\nbreak \"q\"")]));
    assert_eq!(strings(&decoded, "plain_s"), owned(&[Some("café")]));
}

#[test]
fn names_are_sanitised() {
    let decoded = decode_new(r#"{"a b.c":"x","Computer":"host1","ünï":"y"}"#);
    let names: Vec<_> = payload_columns(&decoded).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["a_b_c_s", "Computer_s", "_n__s"]);
}

#[test]
fn long_names_up_to_the_limit_are_kept() {
    let name = "n".repeat(MAX_PROPERTY_NAME_CHARS);
    let decoded = decode_new(&format!(r#"{{"{name}":"x"}}"#));
    assert_eq!(strings(&decoded, &format!("{name}_s")), owned(&[Some("x")]));
    let error = reject(&format!(r#"{{"{name}n":"x"}}"#));
    assert_eq!((error.status, error.code), (400, Some("InvalidDataFormat")));
}

#[test]
fn reserved_and_empty_names_are_rejected() {
    for body in [
        r#"{"tenant":"x"}"#,
        r#"[{"a":1},{"TimeGenerated":"2024-05-01T10:00:00Z"}]"#,
        r#"{"RawData":"x"}"#,
        r#"{"":"x"}"#,
    ] {
        let error = reject(body);
        assert_eq!((error.status, error.code), (400, Some("InvalidDataFormat")), "{body}");
    }
    // Only the exact names are reserved.
    decode_new(r#"{"Tenant":"x","timegenerated":"y"}"#);
}

#[test]
fn invalid_bodies_are_rejected() {
    for body in ["", "  ", "[1,2]", r#""text""#, "42", "{", r#"[{"a":1},3]"#, r#"{"a":1} {"b":2}"#, "[[]]", "null"] {
        let error = reject(body);
        assert_eq!((error.status, error.code), (400, Some("InvalidDataFormat")), "{body:?}");
    }
}

#[test]
fn rejection_messages_say_where() {
    let error = reject("[{\"a\":1},\n 3]");
    assert!(error.message.contains("line 2 column 2"), "{}", error.message);
    let error = reject("{\"a\": tru}");
    assert!(error.message.contains("line 1 column"), "{}", error.message);
}

#[test]
fn non_utf8_bodies_are_rejected() {
    let body = b"[{\"a\":\"caf\xE9\"}]";
    let post = ValidatedPost { body: Cow::Borrowed(body), ..post("") };
    let error = decode(&post, &TableSchema::default(), received()).unwrap_err();
    assert_eq!((error.status, error.code), (400, Some("InvalidDataFormat")));
    assert!(error.message.contains("UTF-8"), "{}", error.message);
}

#[test]
fn escapes_inside_nested_values_are_kept_and_strings_unescaped() {
    let decoded = decode_new(r#"{"n": { "q" : "a \"b\" \u00e9" , "l": [ true , null ] }, "s": "tab\there \u00e9"}"#);
    assert_eq!(strings(&decoded, "n_s"), owned(&[Some(r#"{"q":"a \"b\" \u00e9","l":[true,null]}"#)]));
    assert_eq!(strings(&decoded, "s_s"), owned(&[Some("tab\there \u{e9}")]));
}

#[test]
fn empty_array_gives_no_rows() {
    let decoded = decode_new(" [ ] ");
    assert_eq!(decoded.n_rows, 0);
    assert_eq!(decoded.batch.num_rows(), 0);
}

#[test]
fn byte_order_mark_is_ignored() {
    let decoded = decode_new("\u{feff}{\"a\":\"x\"}");
    assert_eq!(strings(&decoded, "a_s"), owned(&[Some("x")]));
}

#[test]
fn duplicate_properties_keep_the_last_value() {
    let decoded = decode_new(r#"[{"a":"first","a":"second"},{"a":"third"}]"#);
    assert_eq!(strings(&decoded, "a_s"), owned(&[Some("second"), Some("third")]));
}

#[test]
fn long_values_are_truncated_with_a_warning() {
    let long = "é".repeat(MAX_VALUE_BYTES); // 2 bytes each
    let decoded = decode_new(&format!(r#"[{{"a":"{long}"}},{{"a":"short"}}]"#));
    let values = strings(&decoded, "a_s");
    assert_eq!(values[0].as_ref().unwrap().len(), MAX_VALUE_BYTES);
    assert_eq!(values[1].as_deref(), Some("short"));
    assert_eq!(decoded.warnings.len(), 1);
    assert!(decoded.warnings[0].contains("truncated"), "{:?}", decoded.warnings);
}

#[test]
fn column_limit_drops_values_of_new_columns() {
    let existing: Vec<(String, KqlType)> =
        (0..MAX_TABLE_COLUMNS - 7).map(|idx| (format!("c{idx}_s"), KqlType::String)).collect();
    let existing: Vec<(&str, KqlType)> = existing.iter().map(|(name, kql_type)| (name.as_str(), *kql_type)).collect();
    // 6 standard + 493 payload = 499: one more column fits.
    let decoded = decode_into(r#"[{"c0":"kept","fits":"x","over":"y"},{"over":"z","c1":1}]"#, &existing);
    assert_eq!(new_payload_columns(&decoded), ["fits_s"]);
    assert_eq!(strings(&decoded, "c0_s"), owned(&[Some("kept"), None]));
    assert!(decoded.batch.column_by_name("over_s").is_none());
    assert!(decoded.batch.column_by_name("c1_d").is_none());
    assert_eq!(decoded.warnings.len(), 2, "{:?}", decoded.warnings);
    assert!(decoded.warnings.iter().any(|warning| warning.contains("`over_s`") && warning.contains("2 value(s)")));
    assert!(decoded.warnings.iter().any(|warning| warning.contains("`c1_d`")));
}

fn decode_with_time_field(body: &str, field: &str) -> DecodedBatch {
    let mut post = post(body);
    post.time_generated_field = Some(field.to_string());
    decode(&post, &TableSchema::default(), received()).unwrap()
}

#[test]
fn time_generated_field_in_window_is_used() {
    let body = r#"[{"EventTime":"2024-04-29T12:00:00Z"},{"EventTime":"2024-05-02T11:59:59.5+00:00"},
        {"EventTime":"2024-04-29T11:59:59Z"},{"EventTime":"2024-05-02T12:00:01Z"},{"EventTime":"garbage"},
        {"Other":1},{"EventTime":null},{"EventTime":12345}]"#;
    let decoded = decode_with_time_field(body, "EventTime");
    let now = received().timestamp_nanos_opt().unwrap();
    assert_eq!(
        nanos(&decoded, "TimeGenerated"),
        [
            Some(rfc3339_nanos("2024-04-29T12:00:00Z")),
            Some(rfc3339_nanos("2024-05-02T11:59:59.5Z")),
            Some(now),
            Some(now),
            Some(now),
            Some(now),
            Some(now),
            Some(now)
        ]
    );
    // The property is kept as its own column too.
    assert_eq!(nanos(&decoded, "EventTime_t")[2], Some(rfc3339_nanos("2024-04-29T11:59:59Z")));
    assert_eq!(nanos(&decoded, "_TimeReceived"), vec![Some(now); 8]);
}

#[test]
fn time_generated_field_missing_from_records_uses_receive_time() {
    let decoded = decode_with_time_field(r#"{"a":"x"}"#, "DateValue");
    assert_eq!(nanos(&decoded, "TimeGenerated"), [Some(received().timestamp_nanos_opt().unwrap())]);
}

#[test]
fn oversized_body_is_rejected_by_decode() {
    let big = " ".repeat(MAX_BODY_BYTES + 1);
    let error = reject(&big);
    assert_eq!(error.status, 413);
}
