//! The disk buffer: each flush of a pipeline writes one segment file with
//! the batches for every sink and the source checkpoints that hold once
//! those batches are safe. A segment is written to a temporary name,
//! fsynced and renamed, so it exists whole or not at all; it is deleted
//! once every batch in it is delivered.
//!
//! Exactly-once with Watchpost as receiver: a batch's idempotency key is
//! chosen before the segment is written, so a retry after a crash sends the
//! same key; sources resume from the checkpoint of the newest segment or
//! `checkpoints.json`, whichever is newer, so no record is batched twice.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use watchpost_pipeline::Batch;

use crate::file_source::FileCheckpoint;

/// Checkpoints of every source, by source id.
pub type Checkpoints = BTreeMap<String, Vec<FileCheckpoint>>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckpointFile {
    pub generation: u64,
    pub sources: Checkpoints,
}

#[derive(Debug, Serialize, Deserialize)]
struct SegmentHeader {
    generation: u64,
    checkpoints: Checkpoints,
    batches: Vec<BatchHeader>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BatchHeader {
    sink: usize,
    table: String,
    rows: usize,
    key: String,
    len: usize,
}

/// A segment read back: its batches, each with the index of its sink.
#[derive(Debug)]
pub struct Segment {
    pub path: PathBuf,
    pub generation: u64,
    pub batches: Vec<(usize, Batch)>,
}

pub struct DiskBuffer {
    dir: PathBuf,
    checkpoint_path: PathBuf,
}

impl DiskBuffer {
    /// Opens (creating) `<data_dir>/buffer` and removes half-written files.
    pub fn open(data_dir: &Path) -> io::Result<DiskBuffer> {
        let dir = data_dir.join("buffer");
        fs::create_dir_all(&dir)?;
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path)?;
            }
        }
        Ok(DiskBuffer { dir, checkpoint_path: data_dir.join("checkpoints.json") })
    }

    /// The checkpoints to resume from and the last generation used.
    pub fn recover(&self) -> io::Result<CheckpointFile> {
        let mut state = match fs::read(&self.checkpoint_path) {
            Ok(bytes) => serde_json::from_slice::<CheckpointFile>(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("checkpoints.json: {e}")))?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => CheckpointFile::default(),
            Err(err) => return Err(err),
        };
        if let Some(path) = self.segment_paths()?.last() {
            let header = read_header(&mut BufReader::new(File::open(path)?))?;
            if header.generation > state.generation {
                state = CheckpointFile { generation: header.generation, sources: header.checkpoints };
            }
        }
        Ok(state)
    }

    /// Writes a segment durably. Empty `batches` is allowed (it moves the
    /// checkpoints only).
    pub fn write_segment(
        &self,
        generation: u64,
        checkpoints: &Checkpoints,
        batches: &[(usize, Batch)],
    ) -> io::Result<u64> {
        let header = SegmentHeader {
            generation,
            checkpoints: checkpoints.clone(),
            batches: batches
                .iter()
                .map(|(sink, b)| BatchHeader {
                    sink: *sink,
                    table: b.table.clone(),
                    rows: b.rows,
                    key: b.idempotency_key.clone(),
                    len: b.body.len(),
                })
                .collect(),
        };
        let final_path = self.dir.join(format!("{generation:020}.seg"));
        let tmp_path = final_path.with_extension("tmp");
        let mut file = io::BufWriter::new(File::create(&tmp_path)?);
        serde_json::to_writer(&mut file, &header)?;
        file.write_all(b"\n")?;
        let mut bytes = 0;
        for (_, batch) in batches {
            file.write_all(&batch.body)?;
            bytes += batch.body.len() as u64;
        }
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp_path, &final_path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(bytes)
    }

    /// Records the checkpoints of `generation` in `checkpoints.json`.
    pub fn write_checkpoints(&self, state: &CheckpointFile) -> io::Result<()> {
        let tmp = self.checkpoint_path.with_extension("json.tmp");
        let mut file = File::create(&tmp)?;
        serde_json::to_writer(&mut file, state)?;
        file.sync_all()?;
        fs::rename(&tmp, &self.checkpoint_path)?;
        if let Some(parent) = self.checkpoint_path.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(())
    }

    /// Segment files in generation order.
    pub fn segment_paths(&self) -> io::Result<Vec<PathBuf>> {
        let mut paths: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        paths.sort();
        Ok(paths)
    }

    /// Bytes waiting in segments.
    pub fn pending_bytes(&self) -> u64 {
        self.segment_paths().unwrap_or_default().iter().filter_map(|p| fs::metadata(p).ok()).map(|m| m.len()).sum()
    }

    pub fn read_segment(&self, path: &Path) -> io::Result<Segment> {
        let mut reader = BufReader::new(File::open(path)?);
        let header = read_header(&mut reader)?;
        let mut batches = Vec::with_capacity(header.batches.len());
        for batch in header.batches {
            let mut body = vec![0u8; batch.len];
            reader.read_exact(&mut body)?;
            batches
                .push((batch.sink, Batch { table: batch.table, rows: batch.rows, body, idempotency_key: batch.key }));
        }
        Ok(Segment { path: path.to_path_buf(), generation: header.generation, batches })
    }

    pub fn remove_segment(&self, segment: &Segment) -> io::Result<()> {
        fs::remove_file(&segment.path)
    }
}

fn read_header(reader: &mut impl BufRead) -> io::Result<SegmentHeader> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("segment header: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(key: &str) -> Batch {
        Batch { table: "T".into(), rows: 1, body: br#"[{"a":1}]"#.to_vec(), idempotency_key: key.into() }
    }

    #[test]
    fn segments_round_trip_and_newest_checkpoint_wins() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = DiskBuffer::open(dir.path()).unwrap();
        assert_eq!(buffer.recover().unwrap().generation, 0);
        let cp = |offset| {
            Checkpoints::from([(
                "s".to_string(),
                vec![FileCheckpoint {
                    path: "p".into(),
                    dev: 1,
                    ino: 2,
                    fingerprint_len: 0,
                    fingerprint_crc: 0,
                    offset,
                }],
            )])
        };
        buffer.write_segment(1, &cp(10), &[(0, batch("k1"))]).unwrap();
        buffer.write_checkpoints(&CheckpointFile { generation: 1, sources: cp(10) }).unwrap();
        // A crash after the segment of generation 2 and before its checkpoint file.
        buffer.write_segment(2, &cp(20), &[(0, batch("k2")), (1, batch("k3"))]).unwrap();
        let state = DiskBuffer::open(dir.path()).unwrap().recover().unwrap();
        assert_eq!((state.generation, state.sources["s"][0].offset), (2, 20));
        let paths = buffer.segment_paths().unwrap();
        assert_eq!(paths.len(), 2);
        let segment = buffer.read_segment(&paths[1]).unwrap();
        assert_eq!(segment.batches.len(), 2);
        assert_eq!(segment.batches[1].0, 1);
        assert_eq!(segment.batches[1].1, batch("k3"));
        buffer.remove_segment(&segment).unwrap();
        // A half-written segment is discarded at open.
        fs::write(dir.path().join("buffer/00000000000000000003.tmp"), b"junk").unwrap();
        let buffer = DiskBuffer::open(dir.path()).unwrap();
        assert_eq!(buffer.segment_paths().unwrap().len(), 1);
        assert_eq!(buffer.recover().unwrap().generation, 1);
    }
}
