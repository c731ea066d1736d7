//! The segment catalogue: which tables exist, their schemas and retention,
//! which segment files hold their rows, and up to which WAL position
//! everything is persisted.
//!
//! Today it is one JSON document (`catalog.json`) rewritten atomically; a
//! segment file exists for queries only once the catalogue names it. The
//! type is kept separate from where segment bytes live so that a catalogue in
//! PostgreSQL can replace it for scale-out.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use watchpost_schema::TableSchema;

use crate::segment::SegmentMeta;
use crate::{Receipt, StorageError, StorageResult};

pub(crate) const CATALOG_FILE: &str = "catalog.json";

/// Retention applied to tables that have not set their own.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct CatalogDocument {
    /// Every WAL record up to and including this LSN is in a segment.
    pub flushed_lsn: u64,
    pub tables: Vec<TableEntry>,
    /// Idempotency keys of flushed appends, kept for 24 hours.
    #[serde(default)]
    pub idempotency: Vec<IdempotencyEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TableEntry {
    pub workspace: String,
    pub name: String,
    pub schema: TableSchema,
    pub retention_days: u32,
    pub segments: Vec<SegmentMeta>,
    /// The schema is declared (a standard table, or one created through the
    /// tables API): appends must fit it. Otherwise appends add columns.
    #[serde(default)]
    pub declared: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IdempotencyEntry {
    pub workspace: String,
    pub key: String,
    pub receipt: Receipt,
    pub at_ns: i64,
}

impl CatalogDocument {
    pub fn load(data_dir: &Path) -> StorageResult<CatalogDocument> {
        let path = data_dir.join(CATALOG_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|err| StorageError::CorruptCatalog(format!("{}: {err}", path.display()))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(CatalogDocument::default()),
            Err(source) => Err(StorageError::io(&path, source)),
        }
    }

    /// Writes the document so that a crash leaves the old or the new one.
    pub fn store(&self, data_dir: &Path) -> StorageResult<()> {
        let path = data_dir.join(CATALOG_FILE);
        let tmp = data_dir.join("catalog.json.tmp");
        let bytes = serde_json::to_vec(self).expect("catalog serializes");
        let mut file = fs::File::create(&tmp).map_err(|source| StorageError::io(&tmp, source))?;
        file.write_all(&bytes).map_err(|source| StorageError::io(&tmp, source))?;
        file.sync_all().map_err(|source| StorageError::io(&tmp, source))?;
        fs::rename(&tmp, &path).map_err(|source| StorageError::io(&path, source))?;
        fs::File::open(data_dir).and_then(|dir| dir.sync_all()).map_err(|source| StorageError::io(data_dir, source))
    }
}
