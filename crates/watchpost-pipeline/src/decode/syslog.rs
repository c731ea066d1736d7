//! Syslog header parsing (syslog-cef spec 4-5) and the `Syslog` row (6).

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value as Json};

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp",
    "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];
const SEVERITIES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A parsed syslog message.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogMessage {
    pub facility: u8,
    pub severity: u8,
    pub timestamp: Option<DateTime<Utc>>,
    pub hostname: Option<String>,
    /// TAG (3164) or APP-NAME (5424).
    pub app_name: Option<String>,
    pub proc_id: Option<String>,
    pub msg_id: Option<String>,
    pub structured_data: Option<String>,
    pub message: String,
    pub rfc5424: bool,
}

pub fn facility_name(code: u8) -> &'static str {
    FACILITIES.get(code as usize).copied().unwrap_or("user")
}

pub fn severity_name(code: u8) -> &'static str {
    SEVERITIES.get(code as usize).copied().unwrap_or("notice")
}

/// Parses one message (framing already removed). Never fails: text that
/// is not syslog becomes the message of a `user.notice` record.
pub fn parse(text: &str, now: DateTime<Utc>, zone: FixedOffset) -> SyslogMessage {
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let Some((pri, rest)) = parse_pri(text) else {
        return plain(13, text);
    };
    let (facility, severity) = ((pri / 8) as u8, (pri % 8) as u8);
    let bytes = rest.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_digit() && bytes[1] == b' ' {
        return parse_5424(facility, severity, &rest[2..]);
    }
    parse_3164(facility, severity, rest, now, zone)
}

fn plain(pri: u16, text: &str) -> SyslogMessage {
    SyslogMessage {
        facility: (pri / 8) as u8,
        severity: (pri % 8) as u8,
        timestamp: None,
        hostname: None,
        app_name: None,
        proc_id: None,
        msg_id: None,
        structured_data: None,
        message: text.to_string(),
        rfc5424: false,
    }
}

fn parse_pri(text: &str) -> Option<(u16, &str)> {
    let rest = text.strip_prefix('<')?;
    let end = rest.find('>')?;
    let digits = &rest[..end];
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pri: u16 = digits.parse().ok()?;
    (pri <= 191).then_some((pri, &rest[end + 1..]))
}

/// Splits off the next space-delimited token, skipping repeated spaces.
fn token(text: &str) -> (&str, &str) {
    let text = text.trim_start_matches(' ');
    match text.find(' ') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    }
}

fn nil(value: &str) -> Option<String> {
    (value != "-" && !value.is_empty()).then(|| value.to_string())
}

fn parse_5424(facility: u8, severity: u8, rest: &str) -> SyslogMessage {
    let (stamp, rest) = token(rest);
    let (host, rest) = token(rest);
    let (app, rest) = token(rest);
    let (proc_id, rest) = token(rest);
    let (msg_id, rest) = token(rest);
    let rest = rest.trim_start_matches(' ');
    let (structured_data, message) = if rest.starts_with('[') {
        let end = structured_data_end(rest);
        (Some(rest[..end].to_string()), rest[end..].strip_prefix(' ').unwrap_or(&rest[end..]))
    } else if let Some(after) = rest.strip_prefix('-') {
        (None, after.strip_prefix(' ').unwrap_or(after))
    } else {
        (None, rest)
    };
    let timestamp = DateTime::parse_from_rfc3339(&stamp.to_ascii_uppercase()).ok().map(|t| t.with_timezone(&Utc));
    SyslogMessage {
        facility,
        severity,
        timestamp,
        hostname: nil(host),
        app_name: nil(app),
        proc_id: nil(proc_id),
        msg_id: nil(msg_id),
        structured_data,
        message: message.strip_prefix('\u{feff}').unwrap_or(message).to_string(),
        rfc5424: true,
    }
}

/// The end of adjacent `[...]` elements, aware of quoted values.
fn structured_data_end(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut index, mut in_element, mut in_quotes) = (0, false, false);
    while index < bytes.len() {
        let b = bytes[index];
        match (in_element, in_quotes, b) {
            (false, _, b'[') => in_element = true,
            (false, _, _) => return index,
            (true, true, b'\\') => index += 1,
            (true, _, b'"') => in_quotes = !in_quotes,
            (true, false, b']') => in_element = false,
            _ => {}
        }
        index += 1;
    }
    bytes.len()
}

fn parse_3164(facility: u8, severity: u8, rest: &str, now: DateTime<Utc>, zone: FixedOffset) -> SyslogMessage {
    let (timestamp, rest) = parse_3164_timestamp(rest, now, zone);
    let rest = rest.trim_start_matches(' ');
    // The next token is the hostname unless it looks like a tag.
    let (first, after_first) = token(rest);
    let is_tag = first.ends_with(':') || first.contains('[') || first.starts_with("CEF:");
    let (hostname, tag_part) = if is_tag || after_first.is_empty() { (None, rest) } else { (Some(first), after_first) };
    let tag_part = tag_part.trim_start_matches(' ');
    // CEF without a tag: `host CEF:0|...` — the whole rest is the message.
    if tag_part.starts_with("CEF:") {
        return SyslogMessage {
            facility,
            severity,
            timestamp,
            hostname: hostname.map(str::to_string),
            app_name: None,
            proc_id: None,
            msg_id: None,
            structured_data: None,
            message: tag_part.to_string(),
            rfc5424: false,
        };
    }
    let tag_end = tag_part.find(['[', ':', ' ']).unwrap_or(tag_part.len());
    let tag = &tag_part[..tag_end];
    let mut after = &tag_part[tag_end..];
    let mut proc_id = None;
    if let Some(inner) = after.strip_prefix('[') {
        if let Some(close) = inner.find(']') {
            proc_id = Some(inner[..close].to_string());
            after = &inner[close + 1..];
        }
    }
    let message = match after.strip_prefix(':') {
        Some(message) => message.strip_prefix(' ').unwrap_or(message),
        None => after.strip_prefix(' ').unwrap_or(after),
    };
    SyslogMessage {
        facility,
        severity,
        timestamp,
        hostname: hostname.map(str::to_string),
        app_name: (!tag.is_empty()).then(|| tag.to_string()),
        proc_id,
        msg_id: None,
        structured_data: None,
        message: message.to_string(),
        rfc5424: false,
    }
}

/// `Mmm dd hh:mm:ss[.frac]`, `Mmm dd yyyy hh:mm:ss`, RFC 3339, with Cisco's
/// sequence number and `*`/`.` prefixes; returns the rest of the text.
fn parse_3164_timestamp(text: &str, now: DateTime<Utc>, zone: FixedOffset) -> (Option<DateTime<Utc>>, &str) {
    let mut rest = text;
    // Cisco: `123: *Mar  1 00:00:00.000: %SYS...`
    if let Some(colon) = rest.find(": ") {
        if colon > 0 && rest[..colon].bytes().all(|b| b.is_ascii_digit()) {
            rest = &rest[colon + 2..];
        }
    }
    let rest = rest.trim_start_matches(['*', '.']);
    let (first, after) = token(rest);
    if first.len() >= 19 && first.as_bytes()[4] == b'-' {
        if let Ok(t) = DateTime::parse_from_rfc3339(first) {
            return (Some(t.with_timezone(&Utc)), after);
        }
    }
    let Some(month) = MONTHS.iter().position(|m| *m == first) else {
        return (None, text);
    };
    let (day, after) = token(after);
    let Ok(day) = day.parse::<u32>() else {
        return (None, text);
    };
    let (mut clock, mut after) = token(after);
    let mut year = None;
    if clock.len() == 4 && clock.bytes().all(|b| b.is_ascii_digit()) {
        year = clock.parse::<i32>().ok();
        (clock, after) = token(after);
    }
    let clock = clock.trim_end_matches(':');
    let Ok(time) = chrono::NaiveTime::parse_from_str(clock, "%H:%M:%S%.f") else {
        return (None, text);
    };
    let guessed = year.is_none();
    let year = year.unwrap_or(now.with_timezone(&zone).year());
    let Some(date) = NaiveDate::from_ymd_opt(year, month as u32 + 1, day) else {
        return (None, text);
    };
    let local = NaiveDateTime::new(date, time);
    let Some(mut when) = zone.from_local_datetime(&local).single().map(|t| t.with_timezone(&Utc)) else {
        return (None, text);
    };
    if guessed && when > now + chrono::Duration::days(1) {
        if let Some(previous) = local.with_year(year - 1).and_then(|l| zone.from_local_datetime(&l).single()) {
            when = previous.with_timezone(&Utc);
        }
    }
    (Some(when), after)
}

/// Where a message came from, for the columns the header does not give.
#[derive(Debug, Clone)]
pub struct Origin {
    pub peer_ip: String,
    pub peer_is_loopback: bool,
    pub collector_host: String,
    pub received: DateTime<Utc>,
}

impl Origin {
    /// `Computer`: the header's HOSTNAME, else the collector for loopback
    /// peers, else the peer address.
    pub fn computer(&self, hostname: Option<&str>) -> String {
        match hostname {
            Some(host) => host.to_string(),
            None if self.peer_is_loopback => self.collector_host.clone(),
            None => self.peer_ip.clone(),
        }
    }
}

pub fn rfc3339(when: DateTime<Utc>) -> Json {
    Json::String(when.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// The `Syslog` row for a message (spec 6).
pub fn syslog_row(message: &SyslogMessage, origin: &Origin) -> Map<String, Json> {
    let computer = origin.computer(message.hostname.as_deref());
    let mut row = Map::new();
    row.insert("TimeGenerated".into(), rfc3339(origin.received));
    row.insert("EventTime".into(), rfc3339(message.timestamp.unwrap_or(origin.received)));
    row.insert("Computer".into(), Json::String(computer.clone()));
    row.insert("HostName".into(), Json::String(computer));
    row.insert("Facility".into(), Json::String(facility_name(message.facility).into()));
    row.insert("SeverityLevel".into(), Json::String(severity_name(message.severity).into()));
    row.insert("SyslogMessage".into(), Json::String(message.message.clone()));
    // ProcessID is an `int` column: a PID beyond 32 bits is left out.
    let pid = message.proc_id.as_deref().and_then(|p| p.parse::<i32>().ok());
    row.insert("ProcessID".into(), pid.map_or(Json::Null, Json::from));
    row.insert("ProcessName".into(), message.app_name.clone().map_or(Json::Null, Json::String));
    row.insert("HostIP".into(), Json::String(origin.peer_ip.clone()));
    row.insert("CollectorHostName".into(), Json::String(origin.collector_host.clone()));
    row.insert("SourceSystem".into(), Json::String("Linux".into()));
    row.insert("MG".into(), Json::String(String::new()));
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn utc() -> FixedOffset {
        FixedOffset::east_opt(0).unwrap()
    }

    fn p(text: &str) -> SyslogMessage {
        parse(text, now(), utc())
    }

    #[test]
    fn rfc3164_forms() {
        let m = p("<13>Nov 29 03:14:27 myhost sshd[4242]: Accepted password\n");
        assert_eq!((m.facility, m.severity), (1, 5));
        assert_eq!(m.timestamp.unwrap().to_rfc3339(), "2026-11-29T03:14:27+00:00");
        assert_eq!(m.hostname.as_deref(), Some("myhost"));
        assert_eq!(m.app_name.as_deref(), Some("sshd"));
        assert_eq!(m.proc_id.as_deref(), Some("4242"));
        assert_eq!(m.message, "Accepted password");
        // logger -u: no hostname.
        let m = p("<13>Nov 29 03:14:27 tag: msg");
        assert_eq!((m.hostname, m.app_name.as_deref(), m.message.as_str()), (None, Some("tag"), "msg"));
        // Space-padded day, tag with slashes.
        let m = p("<22>Nov  9 03:14:27 mx postfix/smtpd[12]: connect");
        assert_eq!(m.app_name.as_deref(), Some("postfix/smtpd"));
        assert_eq!(m.timestamp.unwrap().to_rfc3339(), "2026-11-09T03:14:27+00:00");
        // rsyslog forward format with an RFC 3339 stamp.
        let m = p("<164>2026-11-29T03:14:27.573861+00:00 host tag: msg");
        assert_eq!((m.facility, m.severity), (20, 4));
        assert_eq!(m.hostname.as_deref(), Some("host"));
        // December line read in January: previous year.
        let jan = DateTime::parse_from_rfc3339("2027-01-01T00:10:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse("<13>Dec 31 23:59:59 h t: m", jan, utc()).timestamp.unwrap().year(), 2026);
        // Cisco with a sequence number, a year and a clock prefix.
        let m = p("<189>123: *Mar  1 2026 00:00:00.000: %SYS-5-CONFIG_I: Configured");
        assert_eq!(m.timestamp.unwrap().to_rfc3339(), "2026-03-01T00:00:00+00:00");
        // No PRI at all.
        let m = p("just text");
        assert_eq!((m.facility, m.severity, m.message.as_str()), (1, 5, "just text"));
    }

    #[test]
    fn rfc5424_forms() {
        let m = p(
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="App]lication"] BOMAn application event"#,
        );
        assert!(m.rfc5424);
        assert_eq!((m.facility, m.severity), (20, 5));
        assert_eq!(m.hostname.as_deref(), Some("mymachine.example.com"));
        assert_eq!(m.app_name.as_deref(), Some("evntslog"));
        assert_eq!(m.proc_id, None);
        assert_eq!(m.msg_id.as_deref(), Some("ID47"));
        assert_eq!(m.structured_data.as_deref(), Some(r#"[exampleSDID@32473 iut="3" eventSource="App]lication"]"#));
        assert_eq!(m.message, "BOMAn application event");
        let m = p("<13>1 2026-11-29T03:14:13.405088+00:00 host app 99 - [timeQuality tzKnown=\"1\"] hello");
        assert_eq!((m.proc_id.as_deref(), m.message.as_str()), (Some("99"), "hello"));
        // rsyslog's protocol-23 format keeps the original leading space.
        let m = p("<13>1 2026-11-29T03:14:13Z host app - - -  via rsyslog");
        assert_eq!(m.message, " via rsyslog");
        let m = p("<13>1 - - - - - -");
        assert_eq!((m.timestamp, m.message.as_str()), (None, ""));
    }

    #[test]
    fn syslog_row_columns() {
        let origin = Origin {
            peer_ip: "127.0.0.1".into(),
            peer_is_loopback: true,
            collector_host: "collector".into(),
            received: now(),
        };
        let row = syslog_row(&p("<86>Nov 29 03:14:27 sudo[7]: pam"), &origin);
        assert_eq!(row["Facility"], "authpriv");
        assert_eq!(row["SeverityLevel"], "info");
        assert_eq!(row["Computer"], "collector");
        assert_eq!(row["ProcessID"], 7);
        assert_eq!(row["ProcessName"], "sudo");
        assert_eq!(row["EventTime"], "2026-11-29T03:14:27Z");
        assert_eq!(row["TimeGenerated"], "2026-11-29T12:00:00Z");
    }
}
