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
        Ok(SyslogSourceConfig {
            id,
            listen,
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
        std::thread::Builder::new().name("syslog-udp".into()).spawn(move || udp_loop(udp, out, stop))?;
    }
    let max = config.max_message_bytes;
    std::thread::Builder::new().name("syslog-tcp".into()).spawn(move || accept_loop(tcp, out, stop, max))?;
    tracing::info!(address = %local_addr, "SyslogListening");
    Ok(SyslogListener { local_addr })
}

fn udp_loop(socket: UdpSocket, out: SyncSender<Incoming>, stop: Arc<AtomicBool>) {
    let mut buffer = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = socket.recv_from(&mut buffer) else { continue };
        let text = decode_text(&buffer[..n]);
        if out.send(Incoming::Net(NetRecord { text, peer, received: Utc::now() })).is_err() {
            return;
        }
    }
}

fn accept_loop(listener: TcpListener, out: SyncSender<Incoming>, stop: Arc<AtomicBool>, max: usize) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let (out, stop) = (out.clone(), stop.clone());
                let _ = std::thread::Builder::new()
                    .name("syslog-conn".into())
                    .spawn(move || connection_loop(stream, peer, out, stop, max));
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
            let record = NetRecord { text: decode_text(&message), peer, received: Utc::now() };
            if out.send(Incoming::Net(record)).is_err() {
                return;
            }
        }
    }
    if let Some(message) = framer.finish() {
        let _ = out.send(Incoming::Net(NetRecord { text: decode_text(&message), peer, received: Utc::now() }));
    }
}

/// UTF-8, with Latin-1 for invalid input (spec 5.2).
fn decode_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

/// The event for a received message: the table's columns as fields,
/// `@timestamp` from the header (or receive time), the table in
/// `[@metadata][table]` and the raw text in `[@metadata][raw]`.
pub fn record_to_event(record: &NetRecord, zone: FixedOffset, collector_host: &str) -> Event {
    let message = syslog::parse(&record.text, record.received, zone);
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
    // TimeGenerated is the sink's to set; EventTime travels as @timestamp.
    row.remove("TimeGenerated");
    let stamp = row.remove("EventTime").unwrap_or_else(|| syslog::rfc3339(record.received));
    let mut event = Event { fields: row.into_iter().filter(|(_, v)| !v.is_null()).collect() };
    event.fields.insert("@timestamp".into(), stamp);
    event.set(&FieldRef { path: vec!["@metadata".into(), "table".into()] }, Json::String(table.into()));
    event.set(&FieldRef { path: vec!["@metadata".into(), "raw".into()] }, Json::String(record.text.clone()));
    event
}
