//! Each data collection rule's health record: requests, rows, and above
//! all what was dropped (undeclared columns, values that would not
//! convert), so nothing a rule drops goes unseen. Azure drops silently;
//! this record is Watchpost's answer, served at
//! `GET .../dataCollectionRules/{name}/health`.
//!
//! The records are kept in memory and written to `<data-dir>/dcr-health.json`
//! by [`HealthBook::save`] (the server calls it every few seconds and on
//! shutdown), so they survive restarts. Counts since the last save are lost
//! by a crash: they are statistics, and the rows themselves are in the WAL.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The file, in the data directory.
pub const FILE_NAME: &str = "dcr-health.json";

/// What one rule's traffic looked like since the rule was first used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuleHealth {
    pub requests: u64,
    pub records_received: u64,
    pub rows_stored: u64,
    pub last_ingestion_time: Option<String>,
    /// Undeclared property → records that carried it, and when last seen.
    pub dropped_columns: BTreeMap<String, DroppedColumn>,
    /// Declared column → values stored as null because they could not be
    /// converted to the column's type.
    pub coercion_failures: BTreeMap<String, u64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DroppedColumn {
    pub stream: String,
    pub records: u64,
    pub last_seen: String,
}

/// The records of every rule, by immutable id.
#[derive(Debug, Default)]
pub struct HealthBook {
    /// `None` keeps the records in memory only.
    path: Option<PathBuf>,
    state: Mutex<BookState>,
}

#[derive(Debug, Default)]
struct BookState {
    records: HashMap<String, RuleHealth>,
    /// Changed since the last save.
    dirty: bool,
}

impl HealthBook {
    /// The records saved in `data_dir`, or none. A file that cannot be read
    /// is set aside (renamed `.corrupt`) with a warning: losing statistics
    /// must not stop the server.
    pub fn open(data_dir: &Path) -> HealthBook {
        let path = data_dir.join(FILE_NAME);
        let records = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<HashMap<String, RuleHealth>>(&bytes) {
                Ok(records) => records,
                Err(err) => {
                    let aside = path.with_extension("json.corrupt");
                    tracing::warn!(path = %path.display(), error = %err, aside = %aside.display(), "DcrHealthUnreadable");
                    std::fs::rename(&path, &aside).ok();
                    HashMap::new()
                }
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "DcrHealthUnreadable");
                HashMap::new()
            }
        };
        HealthBook { path: Some(path), state: Mutex::new(BookState { records, dirty: false }) }
    }

    /// The record of `immutable_id` (empty when the rule saw no traffic).
    pub fn get(&self, immutable_id: &str) -> RuleHealth {
        self.lock().records.get(immutable_id).cloned().unwrap_or_default()
    }

    /// Changes the record of `immutable_id`.
    pub fn record(&self, immutable_id: &str, change: impl FnOnce(&mut RuleHealth)) {
        let mut state = self.lock();
        change(state.records.entry(immutable_id.to_string()).or_default());
        state.dirty = true;
    }

    /// Forgets a deleted rule's record.
    pub fn remove(&self, immutable_id: &str) {
        let mut state = self.lock();
        if state.records.remove(immutable_id).is_some() {
            state.dirty = true;
        }
    }

    /// Writes the records if they changed since the last save (atomically:
    /// a crash leaves the old file or the new one). Returns whether it
    /// wrote.
    pub fn save(&self) -> Result<bool, watchpost_metastore::MetastoreError> {
        let Some(path) = &self.path else { return Ok(false) };
        let snapshot = {
            let mut state = self.lock();
            if !state.dirty {
                return Ok(false);
            }
            state.dirty = false;
            // Sorted, so the file is stable and easy to read.
            let sorted: BTreeMap<&String, &RuleHealth> = state.records.iter().collect();
            serde_json::to_vec_pretty(&sorted).expect("health records serialize")
        };
        if let Err(err) = watchpost_metastore::write_atomically(path, &snapshot) {
            self.lock().dirty = true;
            return Err(err);
        }
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BookState> {
        self.state.lock().expect("health lock poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reopen_and_only_changes_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let book = HealthBook::open(dir.path());
        assert!(!book.save().unwrap(), "nothing changed, nothing written");
        book.record("dcr-1", |health| {
            health.requests += 2;
            health.dropped_columns.insert(
                "Extra".into(),
                DroppedColumn { stream: "Custom-Raw".into(), records: 7, last_seen: "2026-11-29T00:00:00.000Z".into() },
            );
        });
        book.record("dcr-2", |health| health.last_error = Some("bad body".into()));
        assert!(book.save().unwrap());
        assert!(!book.save().unwrap());

        let reopened = HealthBook::open(dir.path());
        assert_eq!(reopened.get("dcr-1"), book.get("dcr-1"));
        assert_eq!(reopened.get("dcr-1").dropped_columns["Extra"].records, 7);
        assert_eq!(reopened.get("dcr-2").last_error.as_deref(), Some("bad body"));
        reopened.remove("dcr-2");
        assert!(reopened.save().unwrap());
        assert_eq!(HealthBook::open(dir.path()).get("dcr-2"), RuleHealth::default());
    }

    #[test]
    fn an_unreadable_file_is_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let book = HealthBook::open(dir.path());
        assert_eq!(book.get("dcr-1"), RuleHealth::default());
        assert!(dir.path().join("dcr-health.json.corrupt").exists());
        book.record("dcr-1", |health| health.requests = 1);
        assert!(book.save().unwrap());
        assert_eq!(HealthBook::open(dir.path()).get("dcr-1").requests, 1);
    }
}
