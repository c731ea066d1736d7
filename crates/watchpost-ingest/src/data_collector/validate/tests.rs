use std::io::Write as _;

use chrono::TimeZone as _;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::*;
use crate::data_collector::sign;

const WORKSPACE: &str = "0b4a5c3e-1f2d-4e6a-9b8c-7d6e5f4a3b2c";
const INACTIVE_WORKSPACE: &str = "11111111-2222-3333-4444-555555555555";
const PRIMARY: &[u8] = b"primary key bytes";
const SECONDARY: &[u8] = b"secondary key bytes";
const DATE: &str = "Mon, 04 Apr 2016 08:00:00 GMT";

struct TestKeys;

impl WorkspaceKeys for TestKeys {
    fn keys(&self, workspace_id: &str) -> Option<WorkspaceKeyState> {
        match workspace_id {
            WORKSPACE => Some(WorkspaceKeyState::Active { primary: PRIMARY.to_vec(), secondary: SECONDARY.to_vec() }),
            INACTIVE_WORKSPACE => Some(WorkspaceKeyState::Inactive),
            _ => None,
        }
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2016, 4, 4, 8, 5, 0).unwrap()
}

/// A request that passes validation; tests change one thing at a time.
struct Fixture {
    method: &'static str,
    path: &'static str,
    query: Option<&'static str>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Fixture {
    fn new(body: &[u8]) -> Fixture {
        let mut fixture = Fixture {
            method: "POST",
            path: "/api/logs",
            query: Some("api-version=2016-04-01"),
            headers: vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("Log-Type".to_string(), "MyRecord".to_string()),
                ("x-ms-date".to_string(), DATE.to_string()),
                ("time-generated-field".to_string(), String::new()),
            ],
            body: body.to_vec(),
        };
        fixture.sign_with(PRIMARY, body.len());
        fixture
    }

    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn set_header(&mut self, name: &str, value: &str) {
        self.remove_header(name);
        self.headers.push((name.to_string(), value.to_string()));
    }

    fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(header_name, _)| !header_name.eq_ignore_ascii_case(name));
    }

    fn sign_with(&mut self, key: &[u8], content_length: usize) {
        let content_type = self.header("Content-Type").unwrap_or("").to_string();
        let date = self.header("x-ms-date").unwrap_or("").to_string();
        let signature = sign(key, content_length, &content_type, &date);
        self.set_header("Authorization", &format!("SharedKey {WORKSPACE}:{signature}"));
    }

    fn validate(&self) -> Result<ValidatedPost<'_>, DataCollectorError> {
        let request = DataCollectorRequest {
            method: self.method,
            path: self.path,
            query: self.query,
            headers: &self.headers,
            body: &self.body,
        };
        validate(&request, &TestKeys, now(), Some(Duration::from_secs(15 * 60)))
    }

    fn error(&self) -> DataCollectorError {
        self.validate().expect_err("request should be rejected")
    }
}

fn assert_rejected(fixture: &Fixture, status: u16, code: Option<&str>) {
    let error = fixture.error();
    assert_eq!((error.status, error.code), (status, code), "{error:?}");
}

#[test]
fn accepts_a_valid_request() {
    let body = br#"[{"a":1}]"#;
    let fixture = Fixture::new(body);
    let post = fixture.validate().unwrap();
    assert_eq!(post.workspace_id, WORKSPACE);
    assert_eq!(post.table, "MyRecord_CL");
    assert_eq!(post.time_generated_field, None);
    assert_eq!(post.resource_id, None);
    assert_eq!(post.body.as_ref(), body);
    assert!(matches!(post.body, Cow::Borrowed(_)));
}

#[test]
fn carries_optional_headers() {
    let mut fixture = Fixture::new(b"{}");
    fixture.set_header("time-generated-field", "EventTime");
    fixture.set_header("x-ms-AzureResourceId", "/subscriptions/S/resourceGroups/RG");
    let post = fixture.validate().unwrap();
    assert_eq!(post.time_generated_field.as_deref(), Some("EventTime"));
    assert_eq!(post.resource_id.as_deref(), Some("/subscriptions/S/resourceGroups/RG"));
    fixture.set_header("x-ms-AzureResourceId", "");
    assert_eq!(fixture.validate().unwrap().resource_id, None);
}

#[test]
fn accepts_double_slash_path_and_query_in_path() {
    let mut fixture = Fixture::new(b"{}");
    fixture.path = "//api/logs";
    fixture.validate().unwrap();
    fixture.path = "/api/logs?api-version=2016-04-01";
    fixture.query = None;
    fixture.validate().unwrap();
}

#[test]
fn rejects_wrong_path_and_method() {
    let mut fixture = Fixture::new(b"{}");
    fixture.path = "/api/other";
    assert_rejected(&fixture, 404, None);
    fixture.path = "/api/logs";
    fixture.method = "GET";
    assert_rejected(&fixture, 405, None);
}

#[test]
fn api_version_is_checked_first() {
    let mut fixture = Fixture::new(b"{}");
    fixture.remove_header("Authorization");
    fixture.query = None;
    assert_rejected(&fixture, 400, Some("MissingApiVersion"));
    fixture.query = Some("other=1");
    assert_rejected(&fixture, 400, Some("MissingApiVersion"));
    fixture.query = Some("api-version=2023-01-01");
    assert_rejected(&fixture, 400, Some("InvalidApiVersion"));
}

#[test]
fn authorization_must_be_present_and_well_formed() {
    let mut fixture = Fixture::new(b"{}");
    fixture.remove_header("Log-Type");
    fixture.remove_header("Authorization");
    assert_rejected(&fixture, 403, Some("InvalidAuthorization"));
    fixture.set_header("Authorization", "Bearer token");
    assert_rejected(&fixture, 403, Some("InvalidAuthorization"));
    fixture.set_header("Authorization", &format!("SharedKey {WORKSPACE}"));
    assert_rejected(&fixture, 403, Some("InvalidAuthorization"));
}

#[test]
fn workspace_must_exist_and_be_active() {
    let mut fixture = Fixture::new(b"{}");
    fixture.remove_header("Content-Type");
    let signature = "p9rltWgAbXzQtX8iV4P1E95fvA3n7imvysp16fPUXKE=";
    fixture.set_header("Authorization", &format!("SharedKey 99999999-2222-3333-4444-555555555555:{signature}"));
    assert_rejected(&fixture, 400, Some("InvalidCustomerId"));
    fixture.set_header("Authorization", &format!("SharedKey not-a-guid:{signature}"));
    assert_rejected(&fixture, 400, Some("InvalidCustomerId"));
    fixture.set_header("Authorization", &format!("SharedKey {INACTIVE_WORKSPACE}:{signature}"));
    assert_rejected(&fixture, 400, Some("InactiveCustomer"));
}

#[test]
fn upper_case_workspace_id_is_normalised() {
    let mut fixture = Fixture::new(b"{}");
    let authorization = fixture.header("Authorization").unwrap().replace(WORKSPACE, &WORKSPACE.to_uppercase());
    fixture.set_header("Authorization", &authorization);
    assert_eq!(fixture.validate().unwrap().workspace_id, WORKSPACE);
}

#[test]
fn content_type_rules() {
    let mut fixture = Fixture::new(b"{}");
    fixture.remove_header("Log-Type");
    fixture.remove_header("Content-Type");
    assert_rejected(&fixture, 400, Some("MissingContentType"));
    fixture.set_header("Content-Type", "text/plain");
    assert_rejected(&fixture, 400, Some("UnsupportedContentType"));

    // Parameters and letter case are accepted; the value is signed as sent.
    let mut fixture = Fixture::new(b"{}");
    fixture.set_header("Content-Type", "Application/JSON; charset=utf-8");
    assert_rejected(&fixture, 403, Some("InvalidAuthorization"));
    fixture.sign_with(PRIMARY, 2);
    fixture.validate().unwrap();
}

#[test]
fn log_type_rules() {
    let mut fixture = Fixture::new(b"{}");
    fixture.remove_header("x-ms-date");
    fixture.remove_header("Log-Type");
    assert_rejected(&fixture, 400, Some("MissingLogType"));
    fixture.set_header("Log-Type", "");
    assert_rejected(&fixture, 400, Some("MissingLogType"));
    fixture.set_header("Log-Type", "bad-name");
    assert_rejected(&fixture, 400, Some("InvalidLogType"));
    fixture.set_header("Log-Type", &"a".repeat(101));
    assert_rejected(&fixture, 400, Some("InvalidLogType"));

    let mut fixture = Fixture::new(b"{}");
    fixture.set_header("Log-Type", &"a".repeat(100));
    assert_eq!(fixture.validate().unwrap().table, format!("{}_CL", "a".repeat(100)));
    fixture.set_header("Log-Type", "Foo_CL");
    assert_eq!(fixture.validate().unwrap().table, "Foo_CL_CL");
}

#[test]
fn standard_table_header_names_the_table_itself() {
    let mut fixture = Fixture::new(b"{}");
    fixture.set_header("Log-Type", "Syslog");
    let post = fixture.validate().unwrap();
    assert_eq!((post.table.as_str(), post.table_kind), ("Syslog_CL", TableKind::Custom));
    fixture.set_header(STANDARD_TABLE_HEADER, "false");
    assert_eq!(fixture.validate().unwrap().table, "Syslog_CL");
    for value in ["true", " TRUE "] {
        fixture.set_header(STANDARD_TABLE_HEADER, value);
        let post = fixture.validate().unwrap();
        assert_eq!((post.table.as_str(), post.table_kind), ("Syslog", TableKind::Standard));
    }
    fixture.set_header("Log-Type", "Heartbeat");
    assert_eq!(fixture.validate().unwrap().table, "Heartbeat");

    for log_type in ["MyRecord", "Syslog_CL"] {
        fixture.set_header("Log-Type", log_type);
        let error = fixture.error();
        assert_eq!((error.status, error.code), (400, Some("InvalidLogType")), "{error:?}");
        assert!(error.message.contains("is not a standard table"), "{}", error.message);
        assert!(error.message.contains("CommonSecurityLog"), "the message lists the tables: {}", error.message);
    }
    fixture.set_header("Log-Type", "syslog");
    assert!(fixture.error().message.contains("did you mean `Syslog`?"));
    fixture.set_header("Log-Type", "Syslog");
    fixture.set_header(STANDARD_TABLE_HEADER, "yes");
    let error = fixture.error();
    assert_eq!((error.status, error.code), (400, Some("InvalidLogType")));
    assert!(error.message.contains("must be `true` or `false`"), "{}", error.message);
}

#[test]
fn date_rules() {
    let mut fixture = Fixture::new(b"{}");
    fixture.remove_header("x-ms-date");
    assert_rejected(&fixture, 403, Some("InvalidAuthorization"));
    fixture.set_header("x-ms-date", "yesterday");
    assert_rejected(&fixture, 403, Some("InvalidAuthorization"));

    // Out of the 15-minute window, even when correctly signed.
    let mut fixture = Fixture::new(b"{}");
    fixture.set_header("x-ms-date", "Mon, 04 Apr 2016 07:40:00 GMT");
    fixture.sign_with(PRIMARY, 2);
    let error = fixture.error();
    assert_eq!(error.code, Some("InvalidAuthorization"));
    assert!(error.message.contains("away from the server clock"), "{error:?}");

    // A disabled window accepts it.
    let request = DataCollectorRequest {
        method: "POST",
        path: "/api/logs",
        query: fixture.query,
        headers: &fixture.headers,
        body: &fixture.body,
    };
    validate(&request, &TestKeys, now(), None).unwrap();
    validate(&request, &TestKeys, now(), Some(Duration::ZERO)).unwrap();
}

#[test]
fn lenient_date_form_is_accepted() {
    let mut fixture = Fixture::new(b"{}");
    fixture.set_header("x-ms-date", "Mon, 4 Apr 2016 08:00:00 GMT");
    fixture.sign_with(PRIMARY, 2);
    fixture.validate().unwrap();
}

#[test]
fn signature_rules() {
    let mut fixture = Fixture::new(b"{}");
    fixture.sign_with(SECONDARY, 2);
    fixture.validate().unwrap();
    fixture.sign_with(b"some other key", 2);
    assert_rejected(&fixture, 403, Some("InvalidAuthorization"));
    fixture.sign_with(PRIMARY, 3);
    assert_rejected(&fixture, 403, Some("InvalidAuthorization"));
}

#[test]
fn signature_over_character_count_is_accepted() {
    let body = r#"{"name":"Zoë ☃"}"#;
    assert_ne!(body.len(), body.chars().count());
    let mut fixture = Fixture::new(body.as_bytes());
    fixture.validate().unwrap();
    fixture.sign_with(PRIMARY, body.chars().count());
    fixture.validate().unwrap();
    fixture.sign_with(PRIMARY, body.chars().count() + 1);
    assert_rejected(&fixture, 403, Some("InvalidAuthorization"));
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn gzip_body_is_signed_compressed_and_decompressed() {
    let json = br#"[{"a":"b"}]"#;
    let compressed = gzip(json);
    let mut fixture = Fixture::new(&compressed);
    fixture.set_header("Content-Encoding", "gzip");
    let post = fixture.validate().unwrap();
    assert_eq!(post.body.as_ref(), json);

    // Signed over the decompressed length: rejected.
    fixture.sign_with(PRIMARY, json.len());
    assert_rejected(&fixture, 403, Some("InvalidAuthorization"));
}

#[test]
fn corrupt_gzip_and_unknown_encodings_are_rejected() {
    let mut fixture = Fixture::new(b"not gzip at all");
    fixture.set_header("Content-Encoding", "gzip");
    assert_rejected(&fixture, 400, Some("InvalidDataFormat"));
    fixture.set_header("Content-Encoding", "br");
    assert_rejected(&fixture, 400, Some("InvalidDataFormat"));
    fixture.set_header("Content-Encoding", "identity");
    fixture.validate().unwrap();
}

#[test]
fn oversized_bodies_are_rejected() {
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let fixture = Fixture::new(&big);
    assert_rejected(&fixture, 413, Some("RequestTooLarge"));

    // A small gzip body that inflates past the limit.
    let mut fixture = Fixture::new(&gzip(&big));
    fixture.set_header("Content-Encoding", "gzip");
    let content_length = fixture.body.len();
    fixture.sign_with(PRIMARY, content_length);
    assert_rejected(&fixture, 413, Some("RequestTooLarge"));
    assert!(fixture.error().body_json().starts_with(r#"{"Error":"RequestTooLarge","Message":"#));
}
