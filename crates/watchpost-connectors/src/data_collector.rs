//! A client for the HTTP Data Collector API: one signed POST, and a retry
//! loop with exponential back-off that honours `Retry-After`.

use std::io::Write;
use std::time::{Duration, SystemTime};

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::shared_key::SharedKey;

/// The largest body the API takes (ingestion spec 1.6).
pub const MAX_POST_BYTES: usize = 30 * 1024 * 1024;
/// The body size batches aim for, leaving room under the limit.
pub const TARGET_POST_BYTES: usize = 25 * 1024 * 1024;
/// The header Watchpost reads to make a retried batch count once.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Watchpost's header asking for the standard table named by `Log-Type`
/// itself (no `_CL`, no type suffixes); Azure ignores it.
pub const STANDARD_TABLE_HEADER: &str = "x-watchpost-standard-table";

/// What a POST came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// 200: the rows are stored.
    Accepted,
    /// Worth trying again: 408, 429, 5xx or a transport error.
    Retryable { status: Option<u16>, retry_after: Option<Duration>, message: String },
    /// Refused for good (another 4xx): sending it again cannot help.
    Rejected { status: u16, message: String },
}

/// One POST's settings besides the body.
#[derive(Debug, Clone, Default)]
pub struct PostOptions<'a> {
    /// `Log-Type`: the table without `_CL`.
    pub log_type: &'a str,
    /// `time-generated-field`, when a field carries the event time.
    pub time_field: Option<&'a str>,
    /// `x-ms-AzureResourceId`.
    pub resource_id: Option<&'a str>,
    /// Sent as `idempotency-key`; Watchpost stores a keyed batch once.
    pub idempotency_key: Option<&'a str>,
    /// Gzip the body (`Content-Encoding: gzip`). Watchpost accepts it; Azure's
    /// Data Collector API does not document it, so it is off by default.
    pub gzip: bool,
    /// Send [`STANDARD_TABLE_HEADER`]: Watchpost stores the rows in the
    /// standard table `log_type` names (its properties must be columns of
    /// it); Azure ignores the header and writes `{log_type}_CL`.
    pub standard_table: bool,
}

/// How long and how often to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, `None` for no limit (a sink with a disk buffer).
    pub max_attempts: Option<u32>,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The policy of one-shot commands such as `watchpost upload`.
    pub fn bounded(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: Some(max_attempts),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// The policy of buffered sinks: retry until the receiver is back.
    pub fn unbounded() -> RetryPolicy {
        RetryPolicy {
            max_attempts: None,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
        }
    }

    /// The wait before attempt `attempt + 1` (attempts count from 1), with
    /// up to a quarter of jitter so that many agents do not retry in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
        let base = self.initial_backoff.saturating_mul(factor).min(self.max_backoff);
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let jitter = base.mul_f64(f64::from(nanos % 1000) / 4000.0);
        base + jitter
    }
}

/// A Data Collector API endpoint with its credentials.
#[derive(Debug, Clone)]
pub struct DataCollectorClient {
    url: String,
    key: SharedKey,
    agent: ureq::Agent,
}

impl DataCollectorClient {
    /// `endpoint` is the base URL: `http://127.0.0.1:8080` for Watchpost,
    /// `https://{workspace}.ods.opinsights.azure.com` for Azure.
    pub fn new(endpoint: &str, key: SharedKey) -> DataCollectorClient {
        let url = format!("{}/api/logs?api-version=2016-04-01", endpoint.trim_end_matches('/'));
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("watchpost/", env!("CARGO_PKG_VERSION")))
            .build();
        DataCollectorClient { url, key, agent }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one body once.
    pub fn post(&self, body: &[u8], options: &PostOptions<'_>) -> PostOutcome {
        let compressed;
        let payload: &[u8] = if options.gzip {
            compressed = gzip(body);
            &compressed
        } else {
            body
        };
        let date = httpdate::fmt_http_date(SystemTime::now());
        let content_type = "application/json";
        let mut request = self
            .agent
            .post(&self.url)
            .set("Content-Type", content_type)
            .set("Log-Type", options.log_type)
            .set("x-ms-date", &date)
            .set("Authorization", &self.key.authorization(payload.len(), content_type, &date))
            .set("time-generated-field", options.time_field.unwrap_or(""));
        if let Some(resource_id) = options.resource_id {
            request = request.set("x-ms-AzureResourceId", resource_id);
        }
        if let Some(key) = options.idempotency_key {
            request = request.set(IDEMPOTENCY_HEADER, key);
        }
        if options.gzip {
            request = request.set("Content-Encoding", "gzip");
        }
        if options.standard_table {
            request = request.set(STANDARD_TABLE_HEADER, "true");
        }
        match request.send_bytes(payload) {
            Ok(response) if response.status() == 200 => PostOutcome::Accepted,
            Ok(response) => classify(response.status(), response),
            Err(ureq::Error::Status(status, response)) => classify(status, response),
            Err(err) => PostOutcome::Retryable { status: None, retry_after: None, message: err.to_string() },
        }
    }

    /// Sends one body, retrying retryable outcomes under `policy`. Calls
    /// `on_retry` before each wait with the outcome and the wait; it returns
    /// `false` to give up early (e.g. on shutdown).
    pub fn post_with_retries(
        &self,
        body: &[u8],
        options: &PostOptions<'_>,
        policy: &RetryPolicy,
        on_retry: &mut dyn FnMut(&PostOutcome, Duration) -> bool,
    ) -> PostOutcome {
        let mut attempt = 1;
        loop {
            let outcome = self.post(body, options);
            let PostOutcome::Retryable { retry_after, .. } = &outcome else {
                return outcome;
            };
            if policy.max_attempts.is_some_and(|max| attempt >= max) {
                return outcome;
            }
            let wait = retry_after.unwrap_or_else(|| policy.backoff(attempt)).min(Duration::from_secs(300));
            if !on_retry(&outcome, wait) {
                return outcome;
            }
            std::thread::sleep(wait);
            attempt += 1;
        }
    }
}

fn classify(status: u16, response: ureq::Response) -> PostOutcome {
    let retry_after = response.header("retry-after").and_then(parse_retry_after);
    let message = response_message(status, response);
    if status == 408 || status == 429 || status >= 500 {
        PostOutcome::Retryable { status: Some(status), retry_after, message }
    } else {
        PostOutcome::Rejected { status, message }
    }
}

fn response_message(status: u16, response: ureq::Response) -> String {
    let request_id = response.header("x-ms-request-id").unwrap_or("-").to_string();
    let mut body = String::new();
    // Error bodies are small JSON ({"Error","Message"}); read a bounded prefix.
    let _ = std::io::Read::read_to_string(&mut std::io::Read::take(response.into_reader(), 4096), &mut body);
    let body = body.trim();
    if body.is_empty() {
        format!("HTTP {status} (request id {request_id})")
    } else {
        format!("HTTP {status}: {body} (request id {request_id})")
    }
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

pub(crate) fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    encoder.write_all(body).expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Sat, 01 Jan 2000 01:01:01 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_and_caps() {
        let policy = RetryPolicy::bounded(5);
        assert!(policy.backoff(1) >= Duration::from_millis(500) && policy.backoff(1) < Duration::from_millis(700));
        assert!(policy.backoff(3) >= Duration::from_secs(2));
        assert!(policy.backoff(40) <= Duration::from_millis(37_500));
    }
}
