//! The `http` source: events POSTed (or PUT) as JSON, the way Logstash's
//! `http` input, Fluent Bit's `http` input and Vector's `http_server`
//! take them.
//!
//! - A body is one JSON object, a JSON array of objects, or NDJSON (one
//!   object per line); with `format = "lines"` every non-empty line becomes
//!   an event's `message`. `Content-Encoding: gzip` is accepted.
//! - A request is taken whole or not at all: a line or element that is not
//!   a JSON object answers 400 naming it, and nothing of that body enters
//!   the pipeline, so the client can fix and resend it without duplicates.
//! - The answer (200, `{"accepted": N}`) comes once the events are in the
//!   runner's disk buffer, so an acknowledged event survives a crash of
//!   the pipeline; a full pipeline slows the answer down (back-pressure)
//!   instead of dropping anything.
//! - Optional authentication: a bearer `token`, or `username`/`password`
//!   (HTTP Basic), compared in constant time.
//!
//! The request path and the client's address are kept in
//! `[@metadata][http][path]` and `[@metadata][http][remote_ip]` for
//! conditions; they are not sent.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde_json::{json, Map, Value as Json};
use subtle::ConstantTimeEq;
use watchpost_pipeline::{ConfigResult, Options};

use crate::process_sources::Incoming;

/// How a body becomes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// An object, an array of objects, or NDJSON.
    Json,
    /// Every non-empty line is a `message`.
    Lines,
}

#[derive(Clone)]
pub enum HttpAuth {
    Bearer(String),
    Basic { username: String, password: String },
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HttpAuth::Bearer(_) => "Bearer(..)",
            HttpAuth::Basic { .. } => "Basic(..)",
        })
    }
}

#[derive(Debug, Clone)]
pub struct HttpSourceConfig {
    pub id: String,
    pub listen: SocketAddr,
    /// Only this path takes events; any path when `None`.
    pub path: Option<String>,
    pub format: BodyFormat,
    pub auth: Option<HttpAuth>,
    /// Largest body, after gzip is undone.
    pub max_body_bytes: usize,
}

impl HttpSourceConfig {
    pub fn from_options(options: &mut Options, id: String) -> ConfigResult<HttpSourceConfig> {
        let listen = options.string("listen")?.unwrap_or_else(|| "127.0.0.1:9880".to_string());
        let listen = listen.parse().map_err(|_| options.error(format!("listen {listen:?} is not an address:port")))?;
        let path = options.string("path")?;
        if path.as_deref().is_some_and(|p| !p.starts_with('/')) {
            return Err(options.error("path must start with /"));
        }
        let format = match options.string("format")?.as_deref() {
            None | Some("json") | Some("ndjson") => BodyFormat::Json,
            Some("lines") => BodyFormat::Lines,
            Some(other) => return Err(options.error(format!("format {other:?}: use json or lines"))),
        };
        let token = options.secret("token")?;
        let username = options.string("username")?;
        let password = options.secret("password")?;
        let auth = match (token, username, password) {
            (None, None, None) => None,
            (Some(token), None, None) if !token.is_empty() => Some(HttpAuth::Bearer(token)),
            (None, Some(username), Some(password)) => Some(HttpAuth::Basic { username, password }),
            _ => return Err(options.error("authentication is a non-empty token, or username with password")),
        };
        let max_body_bytes = options.u64("max_body_bytes", 10 << 20)? as usize;
        Ok(HttpSourceConfig { id, listen, path, format, auth, max_body_bytes })
    }
}

/// A request's events and where to say that they are buffered. The runner
/// sends `()` after the disk-buffer write that holds them; dropping the
/// sender (a failed write, a stop) answers 503.
pub type Ack = tokio::sync::oneshot::Sender<()>;

/// Binds `config.listen` and serves on a thread of its own until `stop`.
pub fn start(
    config: &HttpSourceConfig,
    out: SyncSender<Incoming>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<SocketAddr> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(config.listen))?;
    let address = listener.local_addr()?;
    let state = Arc::new(Shared { config: config.clone(), out });
    let app = Router::new()
        .fallback(receive)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
        .into_make_service_with_connect_info::<SocketAddr>();
    let id = config.id.clone();
    std::thread::Builder::new().name("http-source".into()).spawn(move || {
        let stopped = async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let served = runtime.block_on(async move { axum::serve(listener, app).with_graceful_shutdown(stopped).await });
        if let Err(err) = served {
            tracing::error!(source = %id, error = %err, "HttpSourceFailed");
        }
    })?;
    tracing::info!(source = %config.id, address = %address, "HttpSourceListening");
    Ok(address)
}

struct Shared {
    config: HttpSourceConfig,
    out: SyncSender<Incoming>,
}

fn answer(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let config = &shared.config;
    if config.path.as_deref().is_some_and(|path| path != uri.path()) {
        return answer(StatusCode::NOT_FOUND, format!("events are taken at {}", config.path.as_deref().unwrap_or("/")));
    }
    if method != Method::POST && method != Method::PUT {
        let mut response = answer(StatusCode::METHOD_NOT_ALLOWED, "send events with POST or PUT");
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST, PUT"));
        return response;
    }
    if let Some(auth) = &config.auth {
        if !authorized(auth, &headers) {
            let mut response = answer(StatusCode::UNAUTHORIZED, "missing or wrong credentials");
            let challenge = match auth {
                HttpAuth::Bearer(_) => "Bearer",
                HttpAuth::Basic { .. } => "Basic realm=\"watchpost\"",
            };
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(challenge));
            return response;
        }
    }
    let body = match content(&headers, body, config.max_body_bytes) {
        Ok(body) => body,
        Err((status, message)) => return answer(status, message),
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return answer(StatusCode::BAD_REQUEST, "the body is not UTF-8");
    };
    let metadata = json!({ "http": { "path": uri.path(), "remote_ip": peer.ip().to_string() } });
    let items = match decode_body(text, config.format, &config.id, &metadata) {
        Ok(items) => items,
        Err(message) => return answer(StatusCode::BAD_REQUEST, message),
    };
    let accepted = items.len();
    if accepted == 0 {
        return (StatusCode::OK, axum::Json(json!({ "accepted": 0 }))).into_response();
    }
    let (ack, acked) = tokio::sync::oneshot::channel();
    let mut request = Incoming::Request { items, ack };
    loop {
        match shared.out.try_send(request) {
            Ok(()) => break,
            Err(TrySendError::Full(back)) => {
                request = back;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(TrySendError::Disconnected(_)) => {
                return answer(StatusCode::SERVICE_UNAVAILABLE, "the pipeline is stopping");
            }
        }
    }
    match acked.await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({ "accepted": accepted }))).into_response(),
        Err(_) => answer(StatusCode::SERVICE_UNAVAILABLE, "the events could not be buffered; send them again"),
    }
}

fn authorized(auth: &HttpAuth, headers: &HeaderMap) -> bool {
    let Some(given) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (scheme, value) = given.split_once(' ').unwrap_or((given, ""));
    match auth {
        HttpAuth::Bearer(token) => {
            scheme.eq_ignore_ascii_case("bearer") && bool::from(value.trim().as_bytes().ct_eq(token.as_bytes()))
        }
        HttpAuth::Basic { username, password } => {
            let expected = format!("{username}:{password}");
            let decoded = base64::engine::general_purpose::STANDARD.decode(value.trim()).unwrap_or_default();
            scheme.eq_ignore_ascii_case("basic") && bool::from(decoded.as_slice().ct_eq(expected.as_bytes()))
        }
    }
}

/// The body with any gzip undone, at most `max` bytes; or the refusal.
fn content(headers: &HeaderMap, body: Bytes, max: usize) -> Result<Bytes, (StatusCode, String)> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    match encoding.trim().to_ascii_lowercase().as_str() {
        "identity" | "" => Ok(body),
        "gzip" | "x-gzip" => {
            let mut out = Vec::new();
            match flate2::read::GzDecoder::new(&body[..]).take(max as u64 + 1).read_to_end(&mut out) {
                Err(err) => Err((StatusCode::BAD_REQUEST, format!("the gzip body is corrupt: {err}"))),
                Ok(n) if n > max => {
                    Err((StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {max} bytes once gunzipped")))
                }
                Ok(_) => Ok(Bytes::from(out)),
            }
        }
        other => Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("Content-Encoding {other:?}: use gzip or none"))),
    }
}

/// A body's events, or why it is refused (naming the line or element).
pub fn decode_body(text: &str, format: BodyFormat, source: &str, metadata: &Json) -> Result<Vec<Incoming>, String> {
    let object = |object: Map<String, Json>, raw: String| {
        let mut object = object;
        match object.get_mut("@metadata") {
            Some(Json::Object(existing)) => {
                if let Json::Object(extra) = metadata {
                    existing.extend(extra.clone());
                }
            }
            _ => {
                object.insert("@metadata".to_string(), metadata.clone());
            }
        }
        Incoming::Object { source: source.to_string(), object, raw }
    };
    let lines = text
        .lines()
        .enumerate()
        .map(|(n, line)| (n + 1, line.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());
    match format {
        BodyFormat::Lines => Ok(lines
            .map(|(_, line)| {
                let mut fields = Map::new();
                fields.insert("message".to_string(), Json::String(line.to_string()));
                object(fields, line.to_string())
            })
            .collect()),
        BodyFormat::Json => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('[') {
                let array: Vec<Json> =
                    serde_json::from_str(text).map_err(|err| format!("the body is not a JSON array: {err}"))?;
                return array
                    .into_iter()
                    .enumerate()
                    .map(|(index, value)| match value {
                        Json::Object(fields) => {
                            let raw = serde_json::to_string(&fields).unwrap_or_default();
                            Ok(object(fields, raw))
                        }
                        other => Err(format!("element {index} of the array is not a JSON object: {other}")),
                    })
                    .collect();
            }
            // One object, possibly spread over several lines.
            if let Ok(fields) = serde_json::from_str::<Map<String, Json>>(text) {
                return Ok(vec![object(fields, text.trim().to_string())]);
            }
            lines
                .map(|(number, line)| match serde_json::from_str::<Json>(line) {
                    Ok(Json::Object(fields)) => Ok(object(fields, line.to_string())),
                    Ok(_) => Err(format!("line {number} is JSON but not an object")),
                    Err(err) => Err(format!("line {number} is not JSON: {err}")),
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str, format: BodyFormat) -> Result<Vec<Map<String, Json>>, String> {
        let items = decode_body(text, format, "h", &json!({"http": {"path": "/x"}}))?;
        Ok(items
            .into_iter()
            .map(|item| match item {
                Incoming::Object { object, .. } => object,
                other => panic!("{other:?}"),
            })
            .collect())
    }

    #[test]
    fn bodies_are_objects_arrays_or_ndjson() {
        let one = decode("{\n  \"a\": 1,\n  \"b\": \"x\"\n}\n", BodyFormat::Json).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!((one[0]["a"].clone(), one[0]["@metadata"]["http"]["path"].clone()), (json!(1), json!("/x")));
        let array = decode(r#"[{"a":1},{"a":2}]"#, BodyFormat::Json).unwrap();
        assert_eq!(array.iter().map(|o| o["a"].clone()).collect::<Vec<_>>(), [json!(1), json!(2)]);
        let ndjson = decode("{\"a\":1}\r\n\n{\"a\":2}\n{\"a\":3}", BodyFormat::Json).unwrap();
        assert_eq!(ndjson.len(), 3);
        let lines = decode("first line\n\nsecond {\n", BodyFormat::Lines).unwrap();
        assert_eq!(
            lines.iter().map(|o| o["message"].clone()).collect::<Vec<_>>(),
            [json!("first line"), json!("second {")]
        );
    }

    #[test]
    fn a_bad_line_or_element_refuses_the_body_and_names_it() {
        let err = decode("{\"a\":1}\n{\"a\":2}\nnot json\n", BodyFormat::Json).unwrap_err();
        assert!(err.starts_with("line 3 is not JSON"), "{err}");
        let err = decode("{\"a\":1}\n[1]\n", BodyFormat::Json).unwrap_err();
        assert_eq!(err, "line 2 is JSON but not an object");
        let err = decode(r#"[{"a":1}, 5]"#, BodyFormat::Json).unwrap_err();
        assert_eq!(err, "element 1 of the array is not a JSON object: 5");
        let err = decode("[{\"a\":1}", BodyFormat::Json).unwrap_err();
        assert!(err.starts_with("the body is not a JSON array"), "{err}");
    }

    #[test]
    fn options_are_checked() {
        let parse = |text: &str| {
            HttpSourceConfig::from_options(&mut Options::new(toml::from_str(text).unwrap(), "source[0]"), "h".into())
        };
        let config = parse("").unwrap();
        assert_eq!(
            (config.listen, config.format, config.path),
            ("127.0.0.1:9880".parse().unwrap(), BodyFormat::Json, None)
        );
        assert!(parse("path = \"events\"").unwrap_err().message.contains("start with /"));
        assert!(parse("format = \"xml\"").unwrap_err().message.contains("json or lines"));
        assert!(parse("username = \"u\"").unwrap_err().message.contains("username with password"));
        assert!(parse("token_env = \"WATCHPOST_TEST_UNSET_VAR\"").unwrap_err().message.contains("is not set"));
        assert!(matches!(parse("token = \"t\"").unwrap().auth, Some(HttpAuth::Bearer(_))));
    }

    /// A listener whose "runner" acknowledges every request and keeps
    /// what it got.
    /// What each acknowledged request carried.
    type Requests = std::sync::mpsc::Receiver<Vec<Map<String, Json>>>;

    fn serve(extra: &str) -> (String, Requests, Arc<AtomicBool>) {
        let text = format!("listen = \"127.0.0.1:0\"\n{extra}");
        let config =
            HttpSourceConfig::from_options(&mut Options::new(toml::from_str(&text).unwrap(), "source[0]"), "h".into())
                .unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let stop = Arc::new(AtomicBool::new(false));
        let address = start(&config, tx, stop.clone()).unwrap();
        let (got_tx, got_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            while let Ok(incoming) = rx.recv() {
                let Incoming::Request { items, ack } = incoming else { panic!("{incoming:?}") };
                let objects = items
                    .into_iter()
                    .map(|item| match item {
                        Incoming::Object { object, .. } => object,
                        other => panic!("{other:?}"),
                    })
                    .collect();
                got_tx.send(objects).unwrap();
                let _ = ack.send(());
            }
        });
        (format!("http://{address}"), got_rx, stop)
    }

    fn status(result: Result<ureq::Response, ureq::Error>) -> (u16, String) {
        match result {
            Ok(response) => (response.status(), response.into_string().unwrap()),
            Err(ureq::Error::Status(code, response)) => (code, response.into_string().unwrap()),
            Err(err) => panic!("{err}"),
        }
    }

    #[test]
    fn posts_are_answered_once_buffered_and_checked_first() {
        let (base, got, stop) = serve("path = \"/events\"\ntoken = \"s3cret\"\nmax_body_bytes = 1000");
        let post = |path: &str| ureq::post(&format!("{base}{path}"));
        let (code, body) =
            status(post("/events").set("Authorization", "Bearer s3cret").send_string("{\"a\":1}\n{\"a\":2}"));
        assert_eq!((code, body.as_str()), (200, r#"{"accepted":2}"#));
        let objects = got.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(objects.iter().map(|o| o["a"].clone()).collect::<Vec<_>>(), [json!(1), json!(2)]);
        assert_eq!(objects[0]["@metadata"]["http"]["path"], "/events");
        assert_eq!(objects[0]["@metadata"]["http"]["remote_ip"], "127.0.0.1");

        let mut gzipped = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzipped, br#"[{"z":true}]"#).unwrap();
        let (code, _) = status(
            post("/events")
                .set("Authorization", "Bearer s3cret")
                .set("Content-Encoding", "gzip")
                .send_bytes(&gzipped.finish().unwrap()),
        );
        assert_eq!(code, 200);
        assert_eq!(got.recv_timeout(Duration::from_secs(5)).unwrap()[0]["z"], true);

        let refused = [
            (status(post("/events").send_string("{}")).0, 401),
            (status(post("/events").set("Authorization", "Bearer wrong").send_string("{}")).0, 401),
            (status(post("/other").set("Authorization", "Bearer s3cret").send_string("{}")).0, 404),
            (status(ureq::get(&format!("{base}/events")).set("Authorization", "Bearer s3cret").call()).0, 405),
            (status(post("/events").set("Authorization", "Bearer s3cret").send_string(&"x".repeat(2000))).0, 413),
            (
                status(
                    post("/events")
                        .set("Authorization", "Bearer s3cret")
                        .set("Content-Encoding", "br")
                        .send_string("{}"),
                )
                .0,
                415,
            ),
        ];
        for (got_code, expected) in refused {
            assert_eq!(got_code, expected);
        }
        let (code, body) = status(post("/events").set("Authorization", "Bearer s3cret").send_string("{\"a\":1}\nnope"));
        assert_eq!(code, 400);
        assert!(body.contains("line 2 is not JSON"), "{body}");
        // Nothing of a refused request reached the pipeline.
        assert!(got.recv_timeout(Duration::from_millis(300)).is_err());
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn basic_authentication() {
        let (base, got, stop) = serve("username = \"shipper\"\npassword = \"pw\"\nformat = \"lines\"");
        let basic = |user_pass: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_pass));
        let (code, _) = status(ureq::post(&base).set("Authorization", &basic("shipper:nope")).send_string("x"));
        assert_eq!(code, 401);
        let (code, _) = status(
            ureq::post(&format!("{base}/any/path"))
                .set("Authorization", &basic("shipper:pw"))
                .send_string("one\ntwo\n"),
        );
        assert_eq!(code, 200);
        let objects = got.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(objects.iter().map(|o| o["message"].clone()).collect::<Vec<_>>(), [json!("one"), json!("two")]);
        stop.store(true, Ordering::Relaxed);
    }
}
