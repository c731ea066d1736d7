//! The `syslog` source: one port for UDP and TCP (syslog-cef spec 2-3).
//! Each message is decoded into a `Syslog` or `CommonSecurityLog` row
//! (routing by content, spec 6.1) and handed to the runner as an event
//! whose `[@metadata][table]` names the table.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::Value as Json;
use watchpost_pipeline::decode::syslog::Origin;
use watchpost_pipeline::decode::{cef, syslog};
use watchpost_pipeline::{ConfigResult, Event, FieldRef, Options};

use crate::framing::Framer;
use crate::process_sources::Incoming;

#[derive(Debug, Clone)]
pub struct SyslogSourceConfig {
    pub id: String,
    pub listen: SocketAddr,
    pub max_message_bytes: usize,
    /// Zone of timestamps without one.
    pub timezone: FixedOffset,
    /// Facility name (or `*`) → least severe level kept (`local4.warning`
    /// keeps warning and more severe). Empty keeps everything.
    pub filters: Vec<(String, u8)>,
}

impl SyslogSourceConfig {
    /// Whether a message of this facility and severity is collected.
    pub fn keeps(&self, facility: u8, severity: u8) -> bool {
        if self.filters.is_empty() {
            return true;
        }
        let name = syslog::facility_name(facility);
        let rule = self.filters.iter().find(|(f, _)| f == name).or_else(|| self.filters.iter().find(|(f, _)| f == "*"));
        rule.is_some_and(|(_, least_severe)| severity <= *least_severe)
    }
}

fn severity_code(name: &str) -> Option<u8> {
    Some(match name {
        "emerg" | "emergency" | "panic" => 0,
        "alert" => 1,
        "crit" | "critical" => 2,
        "err" | "error" => 3,
        "warning" | "warn" => 4,
        "notice" => 5,
        "info" | "informational" => 6,
        "debug" => 7,
        "none" => return None,
        _ => return None,
    })
}

impl SyslogSourceConfig {
    pub fn from_options(options: &mut Options, id: String) -> ConfigResult<SyslogSourceConfig> {
        let listen = options.string("listen")?.unwrap_or_else(|| "127.0.0.1:25224".to_string());
        let listen = listen.parse().map_err(|_| options.error(format!("listen {listen:?} is not an address:port")))?;
        let timezone = match options.string("timezone")?.as_deref() {
            None | Some("UTC") => FixedOffset::east_opt(0).expect("zero offset"),
            Some(other) => parse_offset(other)
                .ok_or_else(|| options.error(format!("timezone {other:?}: use UTC or an offset such as +02:00")))?,
        };
        let mut filters = Vec::new();
        for (facility, level) in options.string_map("filters")? {
            let code = severity_code(&level)
                .ok_or_else(|| options.error(format!("filters: unknown severity {level:?} for {facility}")))?;
            filters.push((facility, code));
        }
        Ok(SyslogSourceConfig {
            id,
            listen,
            filters,
            max_message_bytes: options.u64("max_message_bytes", 64 << 10)? as usize,
            timezone,
        })
    }
}

fn parse_offset(text: &str) -> Option<FixedOffset> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = text[1..].chars().filter(|c| *c != ':').collect();
    let hours: i32 = digits.get(..2)?.parse().ok()?;
    let minutes: i32 = digits.get(2..4)?.parse().ok()?;
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// One received message.
#[derive(Debug, Clone)]
pub struct NetRecord {
    /// Index of the listener among the pipeline's syslog sources.
    pub listener: usize,
    pub text: String,
    pub peer: SocketAddr,
    pub received: DateTime<Utc>,
}

/// The bound sockets; threads stop when `stop` is set.
pub struct SyslogListener {
    pub local_addr: SocketAddr,
}

/// Binds TCP and UDP on the same port and starts the receiving threads.
pub fn start(
    config: &SyslogSourceConfig,
    index: usize,
    out: SyncSender<Incoming>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<SyslogListener> {
    let tcp = TcpListener::bind(config.listen)?;
    let local_addr = tcp.local_addr()?;
    let udp = UdpSocket::bind(local_addr)?;
    udp.set_read_timeout(Some(Duration::from_millis(200)))?;
    tcp.set_nonblocking(true)?;
    {
        let (out, stop) = (out.clone(), stop.clone());
        std::thread::Builder::new().name("syslog-udp".into()).spawn(move || udp_loop(udp, index, out, stop))?;
    }
    let max = config.max_message_bytes;
    std::thread::Builder::new().name("syslog-tcp".into()).spawn(move || accept_loop(tcp, index, out, stop, max))?;
    tracing::info!(address = %local_addr, "SyslogListening");
    Ok(SyslogListener { local_addr })
}

fn udp_loop(socket: UdpSocket, index: usize, out: SyncSender<Incoming>, stop: Arc<AtomicBool>) {
    let mut buffer = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = socket.recv_from(&mut buffer) else { continue };
        let text = decode_text(&buffer[..n]);
        if out.send(Incoming::Net(NetRecord { listener: index, text, peer, received: Utc::now() })).is_err() {
            return;
        }
    }
}

fn accept_loop(listener: TcpListener, index: usize, out: SyncSender<Incoming>, stop: Arc<AtomicBool>, max: usize) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let (out, stop) = (out.clone(), stop.clone());
                let _ = std::thread::Builder::new()
                    .name("syslog-conn".into())
                    .spawn(move || connection_loop(stream, peer, index, out, stop, max));
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(err) => {
                tracing::warn!(error = %err, "SyslogAcceptFailed");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn connection_loop(
    mut stream: TcpStream,
    peer: SocketAddr,
    index: usize,
    out: SyncSender<Incoming>,
    stop: Arc<AtomicBool>,
    max: usize,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut framer = Framer::new(max);
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let read = match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                continue;
            }
            Err(_) => break,
        };
        for message in framer.push(&buffer[..read]) {
            let record = NetRecord { listener: index, text: decode_text(&message), peer, received: Utc::now() };
            if out.send(Incoming::Net(record)).is_err() {
                return;
            }
        }
    }
    if let Some(message) = framer.finish() {
        let _ = out.send(Incoming::Net(NetRecord {
            listener: index,
            text: decode_text(&message),
            peer,
            received: Utc::now(),
        }));
    }
}

/// UTF-8, with Latin-1 for invalid input (spec 5.2).
fn decode_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

/// The event for a received message: the table's columns as fields
/// (`Syslog` keeps the header's time in `EventTime`), `@timestamp` the
/// receive time at the listener (which becomes `TimeGenerated`, spec 6 and
/// 8), the table in `[@metadata][table]` and the raw text in
/// `[@metadata][raw]`. `None` when the listener's filters leave the message
/// out.
pub fn record_to_event(record: &NetRecord, config: &SyslogSourceConfig, collector_host: &str) -> Option<Event> {
    let message = syslog::parse(&record.text, record.received, config.timezone);
    if !config.keeps(message.facility, message.severity) {
        return None;
    }
    let origin = Origin {
        peer_ip: record.peer.ip().to_string(),
        peer_is_loopback: record.peer.ip().is_loopback(),
        collector_host: collector_host.to_string(),
        received: record.received,
    };
    let parsed_cef = cef::is_cef(&message.message).then(|| cef::parse(&message.message)).flatten();
    let (table, mut row) = match parsed_cef {
        Some(parsed) => ("CommonSecurityLog", cef::common_security_log_row(&parsed, &message, &origin)),
        None => ("Syslog", syslog::syslog_row(&message, &origin)),
    };
    // TimeGenerated is the sink's to set, from @timestamp.
    let stamp = row.remove("TimeGenerated").unwrap_or_else(|| syslog::rfc3339(record.received));
    let mut event = Event { fields: row.into_iter().filter(|(_, v)| !v.is_null()).collect() };
    event.fields.insert("@timestamp".into(), stamp);
    event.set(&FieldRef { path: vec!["@metadata".into(), "table".into()] }, Json::String(table.into()));
    event.set(&FieldRef { path: vec!["@metadata".into(), "raw".into()] }, Json::String(record.text.clone()));
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::SinkSettings;

    fn config(filters: &str) -> SyslogSourceConfig {
        let table: toml::Table = toml::from_str(&format!("listen = \"127.0.0.1:0\"\nfilters = {filters}")).unwrap();
        SyslogSourceConfig::from_options(&mut Options::new(table, "source[0]"), "s".into()).unwrap()
    }

    #[test]
    fn filters_keep_a_severity_or_more_severe() {
        let config = config(r#"{ local4 = "warning", "*" = "err" }"#);
        assert!(config.keeps(20, 4)); // local4.warning
        assert!(config.keeps(20, 0)); // local4.emerg
        assert!(!config.keeps(20, 6)); // local4.info
        assert!(config.keeps(1, 3)); // user.err through "*"
        assert!(!config.keeps(1, 5)); // user.notice
        assert!(self::config("{}").keeps(1, 7));
    }

    #[test]
    fn cef_and_plain_messages_route_to_their_tables() {
        let config = config("{}");
        let now = Utc::now();
        let record = |text: &str| NetRecord {
            listener: 0,
            text: text.to_string(),
            peer: "127.0.0.1:5000".parse().unwrap(),
            received: now,
        };
        let event =
            record_to_event(&record("<134>Feb 10 12:00:00 host CEF:0|V|P|1|id|n|3|src=1.2.3.4"), &config, "c").unwrap();
        assert_eq!(event.sprintf("%{[@metadata][table]}"), "CommonSecurityLog");
        assert_eq!(event.fields["SourceIP"], "1.2.3.4");
        let event = record_to_event(&record("<13>Feb 10 12:00:00 host app: hi"), &config, "c").unwrap();
        assert_eq!(event.sprintf("%{[@metadata][table]}"), "Syslog");
        assert_eq!(event.fields["SyslogMessage"], "hi");
        assert!(!event.fields.contains_key("TimeGenerated"));
        // The header's time stays in EventTime; @timestamp is the receive time.
        assert!(event.fields["EventTime"].as_str().unwrap().ends_with("-02-10T12:00:00Z"), "{:?}", event.fields);
        assert_eq!(event.fields["@timestamp"], syslog::rfc3339(now));
    }

    #[test]
    fn rows_for_standard_tables_name_only_their_columns() {
        let settings = SinkSettings {
            log_type: "%{[@metadata][table]}".into(),
            time_field: "EventTime".into(),
            batch_max_bytes: 1 << 20,
            batch_max_rows: 10,
            stream_names: false,
            standard_tables: true,
        };
        let config = config("{}");
        let cef = "<134>Feb 10 12:00:00 host CEF:0|V|P|1|id|n|3|src=1.2.3.4 spt=5 in=7 start=1764386067000 \
                   act=deny deviceDirection=0 cs1Label=y cs1=x cn2=99999999999 oldFileId=f custom=1";
        for (text, table) in [("<13>Feb 10 12:00:00 host app[12]: hi", "Syslog"), (cef, "CommonSecurityLog")] {
            let record = NetRecord {
                listener: 0,
                text: text.to_string(),
                peer: "127.0.0.1:5000".parse().unwrap(),
                received: Utc::now(),
            };
            let event = record_to_event(&record, &config, "c").unwrap();
            assert_eq!(event.sprintf(&settings.log_type), table);
            assert!(settings.writes_standard_table(table));
            let row = watchpost_pipeline::event_to_row(&event, settings.time_field_for(table));
            let schema = &watchpost_schema::standard::standard_table(table).unwrap().schema;
            for name in row.keys() {
                let known = name == watchpost_pipeline::STANDARD_TIME_FIELD || schema.column(name).is_some();
                assert!(known, "{table} has no column {name}: {row:?}");
            }
            assert_eq!(row[watchpost_pipeline::STANDARD_TIME_FIELD], syslog::rfc3339(record.received));
        }
    }
}
