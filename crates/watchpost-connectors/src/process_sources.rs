//! The `stdin` and `exec` sources. `stdin` reads lines until end of input;
//! `exec` runs a program on a schedule and takes NDJSON from its stdout
//! (one JSON object per line): the "write your connector in any language"
//! path. Both push into the runner's channel from their own thread.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};
use watchpost_pipeline::{ConfigResult, Options};

use crate::syslog_source::NetRecord;

/// Something a pushing source produced.
#[derive(Debug)]
pub enum Incoming {
    Net(NetRecord),
    Line {
        source: String,
        text: String,
    },
    Object {
        source: String,
        object: Map<String, Json>,
        raw: String,
    },
    /// A line that should have been a JSON object.
    Invalid {
        source: String,
        raw: String,
        reason: String,
    },
    /// A request's events, taken together; `ack` is answered once they are
    /// in the disk buffer (the `http` source).
    Request {
        items: Vec<Incoming>,
        ack: crate::http_source::Ack,
    },
    /// A finite source reached its end.
    End {
        source: String,
    },
}

#[derive(Debug, Clone)]
pub struct ExecSourceConfig {
    pub id: String,
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
}

impl ExecSourceConfig {
    pub fn from_options(options: &mut Options, id: String) -> ConfigResult<ExecSourceConfig> {
        let command = options.strings("command")?;
        if command.is_empty() {
            return Err(options.error("option `command` is required: [program, args...]"));
        }
        Ok(ExecSourceConfig {
            id,
            command,
            interval: Duration::from_secs(options.u64("interval_secs", 60)?.max(1)),
            timeout: Duration::from_secs(options.u64("timeout_secs", 300)?.max(1)),
        })
    }
}

/// Reads stdin lines on a thread.
pub fn start_stdin(id: String, out: SyncSender<Incoming>) -> std::io::Result<()> {
    std::thread::Builder::new().name("stdin-source".into()).spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(text) = line else { break };
            let text = text.strip_suffix('\r').map(str::to_string).unwrap_or(text);
            if text.is_empty() {
                continue;
            }
            if out.send(Incoming::Line { source: id.clone(), text }).is_err() {
                return;
            }
        }
        let _ = out.send(Incoming::End { source: id });
    })?;
    Ok(())
}

/// Runs the program now and then every `interval`.
pub fn start_exec(config: ExecSourceConfig, out: SyncSender<Incoming>, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new().name("exec-source".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            if run_once(&config, &out, &stop).is_err() {
                return;
            }
            while started.elapsed() < config.interval {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })?;
    Ok(())
}

/// One run; `Err` only when the runner is gone.
fn run_once(config: &ExecSourceConfig, out: &SyncSender<Incoming>, stop: &AtomicBool) -> Result<(), ()> {
    let mut child = match Command::new(&config.command[0])
        .args(&config.command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            tracing::warn!(source = %config.id, program = %config.command[0], error = %err, "ExecStartFailed");
            return Ok(());
        }
    };
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::Read::take(stderr, 4096), &mut text);
        text
    });
    let deadline = Instant::now() + config.timeout;
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(raw) = line else { break };
        if raw.trim().is_empty() {
            continue;
        }
        let source = config.id.clone();
        let item = match serde_json::from_str::<Json>(&raw) {
            Ok(Json::Object(object)) => Incoming::Object { source, object, raw },
            Ok(_) => Incoming::Invalid { source, raw, reason: "exec output line is JSON but not an object".into() },
            Err(err) => Incoming::Invalid { source, raw, reason: format!("exec output line is not JSON: {err}") },
        };
        out.send(item).map_err(|_| ())?;
        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
    }
    let status = child.wait();
    let stderr_text = stderr_reader.join().unwrap_or_default();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::warn!(source = %config.id, %status, stderr = %stderr_text.trim(), "ExecFailed"),
        Err(err) => tracing::warn!(source = %config.id, error = %err, "ExecFailed"),
    }
    Ok(())
}
