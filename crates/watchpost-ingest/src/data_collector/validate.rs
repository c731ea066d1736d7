//! Request validation in the spec's order (section 1.7): path and method,
//! api-version, Authorization, workspace, Content-Type, Log-Type, x-ms-date,
//! signature, then body size and encoding.

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::io::Read as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flate2::read::MultiGzDecoder;
use watchpost_schema::standard::{standard_table, standard_tables};

use super::auth::{parse_authorization, verify, SignedRequest};
use super::error::{codes, DataCollectorError};
use super::infer::parse_guid;
use super::{
    DataCollectorRequest, TableKind, ValidatedPost, WorkspaceKeyState, WorkspaceKeys, API_VERSION, MAX_BODY_BYTES,
    MAX_LOG_TYPE_CHARS, STANDARD_TABLE_HEADER,
};

/// Validates a Data Collector request and returns what [`decode`](fn@super::decode)
/// needs.
///
/// Checks, in order (the first failure wins):
/// 1. path `/api/logs` or `//api/logs` (ASCII case-insensitive) → else 404;
///    method `POST` → else 405;
/// 2. `api-version=2016-04-01` → `MissingApiVersion` / `InvalidApiVersion`;
/// 3. `Authorization: SharedKey {workspace}:{base64 signature}` → 403;
/// 4. workspace known and active → `InvalidCustomerId` / `InactiveCustomer`;
/// 5. Content-Type media type `application/json` →
///    `MissingContentType` / `UnsupportedContentType`;
/// 6. Log-Type → `MissingLogType` / `InvalidLogType`; with
///    [`STANDARD_TABLE_HEADER`] `true` it must name a standard table, and a
///    header value other than `true`/`false` is refused (`InvalidLogType`);
/// 7. x-ms-date present, parsable and within `date_window` of `now` → 403
///    (`None` or a zero window turns the window check off);
/// 8. signature (byte count, then character count; either key) → 403;
/// 9. body at most [`MAX_BODY_BYTES`] → 413; `Content-Encoding` gzip is
///    decompressed (at most [`MAX_BODY_BYTES`] again → 413), identity
///    passes, anything else → `InvalidDataFormat`.
pub fn validate<'a>(
    req: &DataCollectorRequest<'a>,
    keys: &dyn WorkspaceKeys,
    now: DateTime<Utc>,
    date_window: Option<Duration>,
) -> Result<ValidatedPost<'a>, DataCollectorError> {
    let (path, path_query) = match req.path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (req.path, None),
    };
    check_path_and_method(path, req.method)?;
    check_api_version(req.query.or(path_query))?;

    let authorization = header(req.headers, "Authorization")
        .ok_or_else(|| DataCollectorError::invalid_authorization("the Authorization header is missing"))?;
    let authorization = parse_authorization(authorization).ok_or_else(|| {
        DataCollectorError::invalid_authorization(
            "the Authorization header is not `SharedKey {WorkspaceId}:{Signature}`",
        )
    })?;
    let workspace_id = normalise_workspace_id(authorization.workspace_id);
    let (primary, secondary) = match keys.keys(&workspace_id) {
        None => {
            return Err(DataCollectorError::bad_request(
                codes::INVALID_CUSTOMER_ID,
                format!("workspace `{workspace_id}` does not exist"),
            ))
        }
        Some(WorkspaceKeyState::Inactive) => {
            return Err(DataCollectorError::bad_request(
                codes::INACTIVE_CUSTOMER,
                format!("workspace `{workspace_id}` is not active"),
            ))
        }
        Some(WorkspaceKeyState::Active { primary, secondary }) => (primary, secondary),
    };

    let content_type = check_content_type(req.headers)?;
    let (table, table_kind) = check_log_type(req.headers)?;
    let date = check_date(req.headers, now, date_window)?;

    // The byte count is what the spec signs; the character count (for
    // clients that sign a string's length) is only worked out when the byte
    // count does not verify, since it costs a pass over the whole body.
    let keys: [&[u8]; 2] = [&primary, &secondary];
    let byte_count = [req.body.len()];
    let by_bytes = SignedRequest { content_type, date, content_lengths: &byte_count };
    if !verify(&authorization.signature, &keys, &by_bytes) {
        let char_count = std::str::from_utf8(req.body).ok().map(|text| [text.chars().count()]);
        let by_chars = char_count.filter(|[chars]| *chars != req.body.len()).is_some_and(|lengths| {
            let signed = SignedRequest { content_type, date, content_lengths: &lengths };
            verify(&authorization.signature, &keys, &signed)
        });
        if !by_chars {
            return Err(DataCollectorError::invalid_authorization("the request signature is not valid"));
        }
    }

    let body = decode_body(req.headers, req.body)?;
    Ok(ValidatedPost {
        workspace_id,
        table,
        table_kind,
        time_generated_field: non_empty_header(req.headers, "time-generated-field"),
        resource_id: non_empty_header(req.headers, "x-ms-AzureResourceId"),
        body,
    })
}

/// Returns the first header called `name` (ASCII case-insensitive).
fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(header_name, _)| header_name.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
}

fn non_empty_header(headers: &[(String, String)], name: &str) -> Option<String> {
    let value = header(headers, name)?.trim();
    (!value.is_empty()).then(|| value.to_string())
}

fn check_path_and_method(path: &str, method: &str) -> Result<(), DataCollectorError> {
    if !path.eq_ignore_ascii_case("/api/logs") && !path.eq_ignore_ascii_case("//api/logs") {
        return Err(DataCollectorError::new(404, None, format!("no such resource `{path}`")));
    }
    if method != "POST" {
        return Err(DataCollectorError::new(405, None, format!("method `{method}` is not allowed, use POST")));
    }
    Ok(())
}

fn check_api_version(query: Option<&str>) -> Result<(), DataCollectorError> {
    let query = query.map(|query| query.strip_prefix('?').unwrap_or(query)).unwrap_or("");
    let api_version = query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        name.eq_ignore_ascii_case("api-version").then_some(value.trim())
    });
    match api_version {
        None | Some("") => Err(DataCollectorError::bad_request(
            codes::MISSING_API_VERSION,
            "the api-version query parameter is missing",
        )),
        Some(API_VERSION) => Ok(()),
        Some(other) => Err(DataCollectorError::bad_request(
            codes::INVALID_API_VERSION,
            format!("api-version `{other}` is not supported, use `{API_VERSION}`"),
        )),
    }
}

/// Lower-cases a GUID workspace id into 8-4-4-4-12 form; other ids pass
/// unchanged.
fn normalise_workspace_id(workspace_id: &str) -> String {
    match parse_guid(workspace_id) {
        Some(guid) => guid.as_str().to_string(),
        None => workspace_id.to_string(),
    }
}

/// Returns the Content-Type value exactly as received (it is signed so).
fn check_content_type(headers: &[(String, String)]) -> Result<&str, DataCollectorError> {
    let content_type = header(headers, "Content-Type").filter(|value| !value.trim().is_empty()).ok_or_else(|| {
        DataCollectorError::bad_request(codes::MISSING_CONTENT_TYPE, "the Content-Type header is missing")
    })?;
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(DataCollectorError::bad_request(
            codes::UNSUPPORTED_CONTENT_TYPE,
            format!("Content-Type `{media_type}` is not supported, use `application/json`"),
        ));
    }
    Ok(content_type)
}

/// Returns the table name, `{Log-Type}_CL`, or `Log-Type` itself when the
/// standard-table header asks for a standard table.
fn check_log_type(headers: &[(String, String)]) -> Result<(String, TableKind), DataCollectorError> {
    let log_type = header(headers, "Log-Type").map(str::trim).unwrap_or("");
    if log_type.is_empty() {
        return Err(DataCollectorError::bad_request(codes::MISSING_LOG_TYPE, "the Log-Type header is missing"));
    }
    let valid_chars = log_type.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    if !valid_chars || log_type.len() > MAX_LOG_TYPE_CHARS {
        return Err(DataCollectorError::bad_request(
            codes::INVALID_LOG_TYPE,
            format!(
                "Log-Type `{log_type}` is invalid: use letters, digits and `_` only, at most {MAX_LOG_TYPE_CHARS} characters"
            ),
        ));
    }
    match table_kind(headers)? {
        TableKind::Custom => Ok((format!("{log_type}_CL"), TableKind::Custom)),
        TableKind::Standard if standard_table(log_type).is_some() => Ok((log_type.to_string(), TableKind::Standard)),
        TableKind::Standard => Err(not_a_standard_table(log_type)),
    }
}

/// Reads [`STANDARD_TABLE_HEADER`]: `true` asks for a standard table;
/// absent, empty or `false` is the API as Azure defines it.
fn table_kind(headers: &[(String, String)]) -> Result<TableKind, DataCollectorError> {
    let value = header(headers, STANDARD_TABLE_HEADER).map(str::trim).unwrap_or("");
    if value.is_empty() || value.eq_ignore_ascii_case("false") {
        return Ok(TableKind::Custom);
    }
    if value.eq_ignore_ascii_case("true") {
        return Ok(TableKind::Standard);
    }
    Err(DataCollectorError::bad_request(
        codes::INVALID_LOG_TYPE,
        format!("the {STANDARD_TABLE_HEADER} header must be `true` or `false`, not `{value}`"),
    ))
}

fn not_a_standard_table(log_type: &str) -> DataCollectorError {
    let names: Vec<&str> = standard_tables().iter().map(|table| table.name.as_str()).collect();
    let hint = names
        .iter()
        .find(|name| name.eq_ignore_ascii_case(log_type))
        .map(|name| format!(" (did you mean `{name}`?)"))
        .unwrap_or_default();
    DataCollectorError::bad_request(
        codes::INVALID_LOG_TYPE,
        format!(
            "Log-Type `{log_type}` is not a standard table Watchpost ships{hint}; with {STANDARD_TABLE_HEADER}: true \
             use one of {}, or leave the header out to write `{log_type}_CL`",
            names.join(", ")
        ),
    )
}

/// Returns the x-ms-date value as received (it is signed so).
fn check_date(
    headers: &[(String, String)],
    now: DateTime<Utc>,
    date_window: Option<Duration>,
) -> Result<&str, DataCollectorError> {
    let date = header(headers, "x-ms-date")
        .ok_or_else(|| DataCollectorError::invalid_authorization("the x-ms-date header is missing"))?;
    let parsed = parse_request_date(date)
        .ok_or_else(|| DataCollectorError::invalid_authorization("the x-ms-date header is not an RFC 1123 date"))?;
    let Some(window) = date_window.filter(|window| !window.is_zero()) else {
        return Ok(date);
    };
    let skew = (now - parsed).abs().to_std().unwrap_or(Duration::MAX);
    if skew > window {
        return Err(DataCollectorError::invalid_authorization(format!(
            "the x-ms-date header is more than {} seconds away from the server clock",
            window.as_secs()
        )));
    }
    Ok(date)
}

/// Parses an HTTP date: the RFC 1123 form (and the obsolete forms HTTP
/// allows), then leniently any RFC 2822 date such as a one-digit day.
fn parse_request_date(date: &str) -> Option<DateTime<Utc>> {
    let date = date.trim();
    if let Ok(system_time) = httpdate::parse_http_date(date) {
        return Some(DateTime::<Utc>::from(system_time));
    }
    DateTime::parse_from_rfc2822(date).ok().map(|date| date.with_timezone(&Utc))
}

fn decode_body<'a>(headers: &[(String, String)], body: &'a [u8]) -> Result<Cow<'a, [u8]>, DataCollectorError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    let encoding = header(headers, "Content-Encoding").map(str::trim).unwrap_or("");
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        return Ok(Cow::Borrowed(body));
    }
    if !encoding.eq_ignore_ascii_case("gzip") && !encoding.eq_ignore_ascii_case("x-gzip") {
        return Err(DataCollectorError::invalid_data_format(format!(
            "Content-Encoding `{encoding}` is not supported, send the body uncompressed or gzip-compressed"
        )));
    }
    let limit = u64::try_from(MAX_BODY_BYTES).expect("30 MB fits in u64") + 1;
    let mut decompressed = Vec::with_capacity(body.len().saturating_mul(4).min(MAX_BODY_BYTES));
    MultiGzDecoder::new(body).take(limit).read_to_end(&mut decompressed).map_err(|error| {
        DataCollectorError::invalid_data_format(format!("the gzip body cannot be decompressed: {error}"))
    })?;
    if decompressed.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(Cow::Owned(decompressed))
}

fn too_large() -> DataCollectorError {
    DataCollectorError::too_large(format!(
        "the request body is larger than {MAX_BODY_BYTES} bytes; split the data into smaller posts"
    ))
}
