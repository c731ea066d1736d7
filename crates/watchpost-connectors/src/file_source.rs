//! The `file` source: follows files matched by globs, through rename and
//! copy-truncate rotation, joining multi-line records, and reports the
//! offset of the last finished record per file for checkpoints.
//!
//! Polling (every `poll_interval`, globbing every `glob_interval`) rather
//! than inotify: it behaves the same on every file system (NFS, overlay,
//! bind mounts) and costs one `fstat` per file per poll.
//!
//! A file is identified by device and inode, confirmed by a CRC of its
//! first bytes (up to 1 KiB) so that a reused inode or a file rewritten in
//! place (copy-truncate) is recognised (agent spec 3.1).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use watchpost_pipeline::multiline::{Assembler, Record, RecordStart};
use watchpost_pipeline::{ConfigResult, Options};

const FINGERPRINT_BYTES: u64 = 1024;
const READ_CHUNK: usize = 256 << 10;

/// Where to start in a file first seen at start-up with no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Beginning,
    End,
}

#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    pub id: String,
    pub paths: Vec<String>,
    pub exclude: Vec<glob::Pattern>,
    pub read_from: ReadFrom,
    pub record_start: RecordStart,
    pub multiline_timeout: Duration,
    pub max_line_bytes: usize,
    pub rotate_wait: Duration,
    pub glob_interval: Duration,
    /// Agent mode: rows for this table with `RawData`, `FilePath` and
    /// `Computer` (agent spec 2.3) instead of Logstash's `message`, `path`
    /// and `host`.
    pub table: Option<String>,
}

impl FileSourceConfig {
    /// Reads a `[[source]]` table of type `file`.
    pub fn from_options(options: &mut Options, id: String) -> ConfigResult<FileSourceConfig> {
        let paths = options.strings("paths")?;
        let paths = if paths.is_empty() { options.strings("path")? } else { paths };
        if paths.is_empty() {
            return Err(options.error("option `paths` is required"));
        }
        for path in &paths {
            glob::Pattern::new(path).map_err(|e| options.error(format!("bad glob {path:?}: {e}")))?;
        }
        let exclude = options
            .strings("exclude")?
            .iter()
            .map(|p| glob::Pattern::new(p).map_err(|e| options.error(format!("bad exclude glob {p:?}: {e}"))))
            .collect::<ConfigResult<_>>()?;
        let read_from = match options.string("read_from")?.or(options.string("start_position")?).as_deref() {
            None | Some("beginning") => ReadFrom::Beginning,
            Some("end") => ReadFrom::End,
            Some(other) => return Err(options.error(format!("read_from {other:?}: use beginning or end"))),
        };
        let record_start =
            RecordStart::parse(&options.string("record_start")?.unwrap_or_default()).map_err(|e| options.error(e))?;
        Ok(FileSourceConfig {
            id,
            paths,
            exclude,
            read_from,
            record_start,
            multiline_timeout: Duration::from_millis(options.u64("multiline_timeout_ms", 1000)?),
            max_line_bytes: options.u64("max_line_bytes", 256 << 10)? as usize,
            rotate_wait: Duration::from_millis(options.u64("rotate_wait_ms", 5000)?),
            glob_interval: Duration::from_millis(options.u64("glob_interval_ms", 1000)?),
            table: options.string("table")?,
        })
    }
}

/// A file's committed position, as stored in `checkpoints.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub fingerprint_len: u64,
    pub fingerprint_crc: u32,
    pub offset: u64,
}

/// A record read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub text: String,
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
}

struct Tailed {
    path: PathBuf,
    file: File,
    read_offset: u64,
    /// Bytes after the last newline read.
    partial: Vec<u8>,
    /// The partial line grew past `max_line_bytes`: drop bytes to the newline.
    overlong: bool,
    /// Longest line kept (the rest up to the newline is dropped).
    max_line: usize,
    assembler: Assembler,
    /// Offset after the last finished record (or consumed empty line).
    committed: u64,
    fingerprint_len: u64,
    fingerprint_crc: u32,
    last_data: Instant,
    gone_since: Option<Instant>,
}

/// Follows the files of one `file` source.
pub struct FileSource {
    config: FileSourceConfig,
    files: HashMap<FileKey, Tailed>,
    restored: Vec<FileCheckpoint>,
    first_scan_done: bool,
    last_glob: Option<Instant>,
    /// Files truncated under us (copy-truncate), for the logs and metrics.
    pub truncations: u64,
}

impl FileSource {
    pub fn new(config: FileSourceConfig, checkpoints: Vec<FileCheckpoint>) -> FileSource {
        FileSource {
            config,
            files: HashMap::new(),
            restored: checkpoints,
            first_scan_done: false,
            last_glob: None,
            truncations: 0,
        }
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn table(&self) -> Option<&str> {
        self.config.table.as_deref()
    }

    /// Reads what is new, appending finished records to `out`; returns the
    /// bytes read. Reads at most about `budget` bytes.
    pub fn poll(&mut self, out: &mut Vec<SourceRecord>, budget: usize) -> io::Result<usize> {
        let now = Instant::now();
        if self.last_glob.is_none_or(|last| now.duration_since(last) >= self.config.glob_interval) {
            self.scan(now)?;
            self.last_glob = Some(now);
        }
        let mut total = 0;
        let mut closed = Vec::new();
        for (key, tailed) in &mut self.files {
            let read = read_new(tailed, out, budget.saturating_sub(total), &mut self.truncations)?;
            total += read;
            if read > 0 {
                tailed.last_data = now;
                continue;
            }
            let quiet = now.duration_since(tailed.last_data);
            if quiet >= self.config.multiline_timeout {
                if let Some(record) = tailed.assembler.take_pending() {
                    tailed.committed = record.end_offset;
                    out.push(SourceRecord { text: record.text, path: tailed.path.display().to_string() });
                }
            }
            if tailed.gone_since.is_some_and(|since| now.duration_since(since) >= self.config.rotate_wait)
                && quiet >= self.config.rotate_wait
            {
                // Rotated away or deleted, read to the end and quiet: an
                // unterminated last line is a record now.
                finish_partial(tailed, out);
                closed.push(*key);
            }
        }
        for key in closed {
            self.files.remove(&key);
        }
        Ok(total)
    }

    /// The committed position of every followed file.
    pub fn checkpoints(&self) -> Vec<FileCheckpoint> {
        let mut list: Vec<FileCheckpoint> = self
            .files
            .iter()
            .map(|(key, tailed)| FileCheckpoint {
                path: tailed.path.display().to_string(),
                dev: key.dev,
                ino: key.ino,
                fingerprint_len: tailed.fingerprint_len,
                fingerprint_crc: tailed.fingerprint_crc,
                offset: tailed.committed,
            })
            .collect();
        list.sort_by(|a, b| a.path.cmp(&b.path));
        list
    }

    fn scan(&mut self, now: Instant) -> io::Result<()> {
        let mut seen = std::collections::HashSet::new();
        let patterns = self.config.paths.clone();
        for pattern in &patterns {
            let entries =
                glob::glob(pattern).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            for path in entries.flatten() {
                if self.config.exclude.iter().any(|p| p.matches_path(&path)) {
                    continue;
                }
                let Ok(metadata) = std::fs::metadata(&path) else { continue };
                if !metadata.is_file() {
                    continue;
                }
                let key = FileKey { dev: metadata.dev(), ino: metadata.ino() };
                if !seen.insert(key) {
                    continue;
                }
                if let Some(tailed) = self.files.get_mut(&key) {
                    tailed.path = path;
                    tailed.gone_since = None;
                    continue;
                }
                if let Some(tailed) = self.open(&path, key, metadata.len(), now)? {
                    self.files.insert(key, tailed);
                }
            }
        }
        for (key, tailed) in &mut self.files {
            if !seen.contains(key) && tailed.gone_since.is_none() {
                tracing::debug!(path = %tailed.path.display(), "FileRotatedAway");
                tailed.gone_since = Some(now);
            }
        }
        self.first_scan_done = true;
        Ok(())
    }

    fn open(&mut self, path: &Path, key: FileKey, size: u64, now: Instant) -> io::Result<Option<Tailed>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "FileOpenFailed");
                return Ok(None);
            }
        };
        let restored = self.restored.iter().position(|cp| {
            cp.dev == key.dev
                && cp.ino == key.ino
                && cp.fingerprint_len <= size
                && crc_of_prefix(&file, cp.fingerprint_len).ok() == Some(cp.fingerprint_crc)
        });
        let offset = match restored {
            Some(index) => self.restored.swap_remove(index).offset.min(size),
            None if !self.first_scan_done && self.config.read_from == ReadFrom::End => size,
            None => 0,
        };
        let fingerprint_len = size.min(FINGERPRINT_BYTES);
        let fingerprint_crc = crc_of_prefix(&file, fingerprint_len)?;
        tracing::info!(path = %path.display(), offset, "FileOpened");
        Ok(Some(Tailed {
            path: path.to_path_buf(),
            file,
            read_offset: offset,
            partial: Vec::new(),
            overlong: false,
            max_line: self.config.max_line_bytes,
            assembler: Assembler::new(self.config.record_start.clone(), self.config.max_line_bytes),
            committed: offset,
            fingerprint_len,
            fingerprint_crc,
            last_data: now,
            gone_since: None,
        }))
    }
}

fn crc_of_prefix(file: &File, len: u64) -> io::Result<u32> {
    let mut buffer = vec![0u8; len as usize];
    file.read_exact_at(&mut buffer, 0)?;
    Ok(crc32fast::hash(&buffer))
}

/// Detects truncation or in-place rewrite, then reads new bytes.
fn read_new(
    tailed: &mut Tailed,
    out: &mut Vec<SourceRecord>,
    budget: usize,
    truncations: &mut u64,
) -> io::Result<usize> {
    let size = tailed.file.metadata()?.len();
    let rewritten = size < tailed.read_offset
        || (tailed.fingerprint_len > 0
            && size >= tailed.fingerprint_len
            && crc_of_prefix(&tailed.file, tailed.fingerprint_len)? != tailed.fingerprint_crc);
    if rewritten {
        tracing::warn!(path = %tailed.path.display(), old_offset = tailed.read_offset, size, "FileTruncated");
        *truncations += 1;
        // What was read before the truncation is complete data: keep it.
        finish_partial(tailed, out);
        tailed.assembler.reset();
        tailed.read_offset = 0;
        tailed.committed = 0;
        tailed.fingerprint_len = size.min(FINGERPRINT_BYTES);
        tailed.fingerprint_crc = crc_of_prefix(&tailed.file, tailed.fingerprint_len)?;
    } else if tailed.fingerprint_len < FINGERPRINT_BYTES && size > tailed.fingerprint_len {
        tailed.fingerprint_len = size.min(FINGERPRINT_BYTES);
        tailed.fingerprint_crc = crc_of_prefix(&tailed.file, tailed.fingerprint_len)?;
    }
    let mut total = 0;
    let mut chunk = vec![0u8; READ_CHUNK];
    while total < budget.max(1) && tailed.read_offset < size {
        let want = ((size - tailed.read_offset) as usize).min(READ_CHUNK);
        let read = tailed.file.read_at(&mut chunk[..want], tailed.read_offset)?;
        if read == 0 {
            break;
        }
        consume(tailed, &chunk[..read], out);
        total += read;
    }
    Ok(total)
}

/// Splits bytes into lines and feeds the assembler.
fn consume(tailed: &mut Tailed, bytes: &[u8], out: &mut Vec<SourceRecord>) {
    let path = tailed.path.display().to_string();
    let max_line = tailed.max_line;
    let mut rest = bytes;
    let mut offset = tailed.read_offset;
    while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
        let line_start = offset - tailed.partial.len() as u64;
        let line_end = offset + newline as u64 + 1;
        let text = if tailed.partial.is_empty() {
            String::from_utf8_lossy(&rest[..newline]).into_owned()
        } else {
            if !tailed.overlong {
                tailed.partial.extend_from_slice(&rest[..newline.min(max_line)]);
            }
            String::from_utf8_lossy(&tailed.partial).into_owned()
        };
        tailed.partial.clear();
        tailed.overlong = false;
        // A byte-order mark at the start of the file is not data.
        let text = match text.strip_prefix('\u{feff}') {
            Some(stripped) if line_start == 0 => stripped.to_string(),
            _ => text,
        };
        if let Some(record) = tailed.assembler.push_line(&text, line_start, line_end) {
            out.push(SourceRecord { text: record.text, path: path.clone() });
        }
        tailed.committed = tailed.assembler.pending_start().unwrap_or(line_end);
        offset = line_end;
        rest = &rest[newline + 1..];
    }
    if !rest.is_empty() && !tailed.overlong {
        tailed.partial.extend_from_slice(rest);
        if tailed.partial.len() > max_line {
            tailed.partial.truncate(max_line);
            tailed.overlong = true;
        }
    }
    tailed.read_offset = offset + rest.len() as u64;
}

/// Emits the unterminated last line and the pending record.
fn finish_partial(tailed: &mut Tailed, out: &mut Vec<SourceRecord>) {
    let path = tailed.path.display().to_string();
    if !tailed.partial.is_empty() {
        let start = tailed.read_offset - tailed.partial.len() as u64;
        let text = String::from_utf8_lossy(&tailed.partial).into_owned();
        tailed.partial.clear();
        if let Some(record) = tailed.assembler.push_line(&text, start, tailed.read_offset) {
            out.push(SourceRecord { text: record.text, path: path.clone() });
        }
    }
    if let Some(Record { text, end_offset, .. }) = tailed.assembler.take_pending() {
        tailed.committed = end_offset;
        out.push(SourceRecord { text, path });
    } else {
        tailed.committed = tailed.read_offset;
    }
}

#[cfg(test)]
mod tests;
