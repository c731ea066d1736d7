//! The `syslog` source: one port for UDP and TCP (syslog-cef spec 2-3),
//! and optionally a TLS port (RFC 5425: syslog over TLS, octet-counted or
//! newline framing as on plain TCP). Each message is decoded into a
//! `Syslog` or `CommonSecurityLog` row (routing by content, spec 6.1) and
//! handed to the runner as an event whose `[@metadata][table]` names the
//! table.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
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
    /// UDP and TCP; `None` when only a TLS port was asked for.
    pub listen: Option<SocketAddr>,
    pub tls: Option<TlsListen>,
    pub max_message_bytes: usize,
    /// Zone of timestamps without one.
    pub timezone: FixedOffset,
    /// Facility name (or `*`) → least severe level kept (`local4.warning`
    /// keeps warning and more severe). Empty keeps everything.
    pub filters: Vec<(String, u8)>,
}

/// A TLS listener's address and server configuration.
#[derive(Debug, Clone)]
pub struct TlsListen {
    pub listen: SocketAddr,
    pub config: Arc<rustls::ServerConfig>,
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
        let address = |options: &Options, key: &str, text: String| {
            text.parse::<SocketAddr>().map_err(|_| options.error(format!("{key} {text:?} is not an address:port")))
        };
        let tls_listen = options.string("tls_listen")?;
        let tls_files = [options.string("tls_cert_file")?, options.string("tls_key_file")?];
        let client_ca = options.string("tls_client_ca_file")?.map(PathBuf::from);
        let tls =
            match (tls_listen, tls_files) {
                (None, [None, None]) if client_ca.is_none() => None,
                (Some(listen), [Some(cert), Some(key)]) => {
                    let listen = address(options, "tls_listen", listen)?;
                    let config = crate::tls::server_config(cert.as_ref(), key.as_ref(), client_ca.as_deref())
                        .map_err(|err| options.error(format!("TLS: {err}")))?;
                    Some(TlsListen { listen, config })
                }
                _ => return Err(options.error(
                    "TLS needs tls_listen, tls_cert_file and tls_key_file together (tls_client_ca_file is optional)",
                )),
            };
        // Plain UDP and TCP on the default port unless only TLS was asked for.
        let listen = match options.string("listen")? {
            Some(text) => Some(address(options, "listen", text)?),
            None if tls.is_some() => None,
            None => Some("127.0.0.1:25224".parse().expect("default address")),
        };
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
            tls,
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
    /// The UDP and TCP port, when there is one.
    pub local_addr: Option<SocketAddr>,
    pub tls_addr: Option<SocketAddr>,
}

/// Binds TCP and UDP on the same port, and the TLS port, and starts the
/// receiving threads.
pub fn start(
    config: &SyslogSourceConfig,
    index: usize,
    out: SyncSender<Incoming>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<SyslogListener> {
    let max = config.max_message_bytes;
    let mut local_addr = None;
    if let Some(listen) = config.listen {
        let tcp = TcpListener::bind(listen)?;
        let address = tcp.local_addr()?;
        let udp = UdpSocket::bind(address)?;
        udp.set_read_timeout(Some(Duration::from_millis(200)))?;
        tcp.set_nonblocking(true)?;
        {
            let (out, stop) = (out.clone(), stop.clone());
            std::thread::Builder::new().name("syslog-udp".into()).spawn(move || udp_loop(udp, index, out, stop))?;
        }
        let (out, stop) = (out.clone(), stop.clone());
        std::thread::Builder::new()
            .name("syslog-tcp".into())
            .spawn(move || accept_loop(tcp, None, index, out, stop, max))?;
        tracing::info!(address = %address, "SyslogListening");
        local_addr = Some(address);
    }
    let mut tls_addr = None;
    if let Some(tls) = &config.tls {
        let tcp = TcpListener::bind(tls.listen)?;
        let address = tcp.local_addr()?;
        tcp.set_nonblocking(true)?;
        let server = tls.config.clone();
        std::thread::Builder::new()
            .name("syslog-tls".into())
            .spawn(move || accept_loop(tcp, Some(server), index, out, stop, max))?;
        tracing::info!(address = %address, tls = true, "SyslogListening");
        tls_addr = Some(address);
    }
    Ok(SyslogListener { local_addr, tls_addr })
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

fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    index: usize,
    out: SyncSender<Incoming>,
    stop: Arc<AtomicBool>,
    max: usize,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let (out, stop, tls) = (out.clone(), stop.clone(), tls.clone());
                let _ = std::thread::Builder::new().name("syslog-conn".into()).spawn(move || {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                    let receiver = Receiver { peer, index, out, stop, max };
                    match tls {
                        None => receiver.run(stream),
                        Some(config) => match rustls::ServerConnection::new(config) {
                            Ok(connection) => receiver.run(rustls::StreamOwned::new(connection, stream)),
                            Err(err) => tracing::warn!(peer = %peer, error = %err, "SyslogTlsFailed"),
                        },
                    }
                });
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(err) => {
                tracing::warn!(error = %err, "SyslogAcceptFailed");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// One TCP or TLS connection's messages into the runner's channel.
struct Receiver {
    peer: SocketAddr,
    index: usize,
    out: SyncSender<Incoming>,
    stop: Arc<AtomicBool>,
    max: usize,
}

impl Receiver {
    /// Reads until the peer closes (or the source stops), framing as it
    /// goes. A TLS handshake happens inside the first reads; its failure
    /// (untrusted client certificate, plain text on the TLS port) is
    /// logged and ends the connection.
    fn run(self, mut stream: impl Read) {
        let mut framer = Framer::new(self.max);
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            let read = match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    if self.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    continue;
                }
                Err(err) => {
                    if err.kind() == std::io::ErrorKind::InvalidData {
                        tracing::warn!(peer = %self.peer, error = %err, "SyslogTlsFailed");
                    }
                    break;
                }
            };
            for message in framer.push(&buffer[..read]) {
                if !self.send(&message) {
                    return;
                }
            }
        }
        if let Some(message) = framer.finish() {
            self.send(&message);
        }
    }

    fn send(&self, message: &[u8]) -> bool {
        let record =
            NetRecord { listener: self.index, text: decode_text(message), peer: self.peer, received: Utc::now() };
        self.out.send(Incoming::Net(record)).is_ok()
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
    use std::net::TcpStream;

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

    /// A CA, a server certificate for 127.0.0.1 and a client certificate,
    /// as PEM files in `dir`; returns the CA and the client's chain and key.
    struct Pki {
        ca: rustls::pki_types::CertificateDer<'static>,
        client_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        client_key: rustls::pki_types::PrivateKeyDer<'static>,
    }

    fn pki(dir: &std::path::Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server =
            CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&server_key, &issuer).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client =
            CertificateParams::new(vec!["client".to_string()]).unwrap().signed_by(&client_key, &issuer).unwrap();
        std::fs::write(dir.join("server.pem"), format!("{}{}", server.pem(), ca.pem())).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki {
            ca: ca.der().clone(),
            client_chain: vec![client.der().clone()],
            client_key: rustls::pki_types::PrivateKeyDer::try_from(client_key.serialize_der()).unwrap(),
        }
    }

    fn tls_config(dir: &std::path::Path, extra: &str) -> SyslogSourceConfig {
        let text = format!(
            "tls_listen = \"127.0.0.1:0\"\ntls_cert_file = {:?}\ntls_key_file = {:?}\n{extra}",
            dir.join("server.pem"),
            dir.join("server.key")
        );
        SyslogSourceConfig::from_options(&mut Options::new(toml::from_str(&text).unwrap(), "source[0]"), "s".into())
            .unwrap()
    }

    /// Sends octet-counted messages over TLS, then closes cleanly.
    fn send_tls(pki: &Pki, address: SocketAddr, with_client_cert: bool, messages: &[&str]) -> std::io::Result<()> {
        use std::io::Write;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let client = if with_client_cert {
            builder.with_client_auth_cert(pki.client_chain.clone(), pki.client_key.clone_key()).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let connection = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut stream = rustls::StreamOwned::new(connection, TcpStream::connect(address).unwrap());
        let mut sent = Vec::new();
        for message in messages {
            sent.extend_from_slice(format!("{} {message}", message.len()).as_bytes());
        }
        stream.write_all(&sent)?;
        stream.conn.send_close_notify();
        stream.flush()
    }

    fn received(rx: &std::sync::mpsc::Receiver<Incoming>) -> Vec<String> {
        let mut texts = Vec::new();
        while let Ok(incoming) = rx.recv_timeout(Duration::from_millis(1500)) {
            if let Incoming::Net(record) = incoming {
                texts.push(record.text);
            }
        }
        texts
    }

    #[test]
    fn tls_listener_receives_octet_counted_messages() {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki(dir.path());
        let config = tls_config(dir.path(), "");
        assert!(config.listen.is_none(), "only TLS was asked for");
        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        let stop = Arc::new(AtomicBool::new(false));
        let listener = start(&config, 0, tx, stop.clone()).unwrap();
        assert!(listener.local_addr.is_none());
        let address = listener.tls_addr.unwrap();
        let messages = ["<13>Feb 10 12:00:00 host app: one", "<13>Feb 10 12:00:01 host app: two\nlines"];
        send_tls(&pki, address, false, &messages).unwrap();
        assert_eq!(received(&rx), messages);
        // Plain text on the TLS port is a failed handshake, not a message.
        let mut plain = TcpStream::connect(address).unwrap();
        std::io::Write::write_all(&mut plain, b"5 <13>x\n").unwrap();
        drop(plain);
        assert!(received(&rx).is_empty());
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn tls_with_a_client_ca_takes_only_clients_it_issued() {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki(dir.path());
        let config = tls_config(dir.path(), &format!("tls_client_ca_file = {:?}", dir.path().join("ca.pem")));
        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        let stop = Arc::new(AtomicBool::new(false));
        let address = start(&config, 0, tx, stop.clone()).unwrap().tls_addr.unwrap();
        // The refusal may reach the client as a write error or not at all.
        let _ = send_tls(&pki, address, false, &["<13>Feb 10 12:00:00 host app: anonymous"]);
        assert!(received(&rx).is_empty(), "a client without a certificate is refused");
        send_tls(&pki, address, true, &["<13>Feb 10 12:00:00 host app: known"]).unwrap();
        assert_eq!(received(&rx), ["<13>Feb 10 12:00:00 host app: known"]);
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn tls_options_are_checked_together() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |text: &str| {
            SyslogSourceConfig::from_options(&mut Options::new(toml::from_str(text).unwrap(), "source[0]"), "s".into())
        };
        let err = parse("tls_listen = \"127.0.0.1:0\"").unwrap_err();
        assert!(err.message.contains("tls_cert_file"), "{err}");
        let missing = format!(
            "tls_listen = \"127.0.0.1:0\"\ntls_cert_file = {:?}\ntls_key_file = {:?}",
            dir.path().join("nope.pem"),
            dir.path().join("nope.key")
        );
        let err = parse(&missing).unwrap_err();
        assert!(err.message.starts_with("TLS: ") && err.message.contains("nope.pem"), "{err}");
        // Without TLS, the plain listener keeps its default port.
        assert_eq!(parse("").unwrap().listen, Some("127.0.0.1:25224".parse().unwrap()));
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
