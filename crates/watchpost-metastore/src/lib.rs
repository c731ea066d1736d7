//! Control-plane state: workspaces, their keys and their saved functions.
//!
//! A [`Metastore`] is a small JSON document (`metastore.json` in the data
//! directory) rewritten atomically (temporary file, fsync, rename, fsync of the
//! directory) on every change. It never holds log rows. The CLI's admin verbs
//! (`watchpost workspace ...`) and the server share it; the server reads it at
//! start-up.
//!
//! Start reading at [`Metastore`] and [`Workspace`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const FILE_NAME: &str = "metastore.json";

/// What can go wrong reading or changing the metastore.
#[derive(Debug, thiserror::Error)]
pub enum MetastoreError {
    #[error("metastore I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("metastore file {path} is not valid: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("workspace id `{0}` is not a GUID")]
    InvalidWorkspaceId(String),
    #[error("key for workspace {0} is not valid base64")]
    InvalidKey(String),
    #[error("no workspace {0}")]
    UnknownWorkspace(String),
    #[error("function `{0}` already exists")]
    FunctionExists(String),
    #[error("function `{0}` does not exist")]
    UnknownFunction(String),
}

pub type MetastoreResult<T> = Result<T, MetastoreError>;

/// Which of a workspace's two shared keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySlot {
    Primary,
    Secondary,
}

/// A Log Analytics workspace: an id, two shared keys for ingestion (and
/// queries), and read-only query keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// Lower-case dashed GUID.
    pub id: String,
    pub primary_key: String,
    pub secondary_key: String,
    #[serde(default)]
    pub query_keys: Vec<String>,
    #[serde(default = "active_default")]
    pub active: bool,
}

fn active_default() -> bool {
    true
}

impl Workspace {
    /// The decoded bytes of both shared keys (primary first).
    pub fn shared_key_bytes(&self) -> (Vec<u8>, Vec<u8>) {
        let decode = |key: &str| BASE64.decode(key).unwrap_or_default();
        (decode(&self.primary_key), decode(&self.secondary_key))
    }
}

/// A function saved in a workspace (a parser, in Sentinel's words): used in
/// queries wherever a table is. Its text is checked by the caller before it
/// is saved; the metastore only keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedFunction {
    pub workspace: String,
    /// The name queries call it by (case-sensitive).
    pub name: String,
    /// The parameter list without parentheses, in KQL:
    /// `starttime:datetime=datetime(null), T:(*)`.
    #[serde(default)]
    pub parameters: String,
    /// The body without braces.
    pub body: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub display_name: String,
    /// Kusto's `docstring`.
    #[serde(default)]
    pub description: String,
}

/// How [`Metastore::save_function`] treats an existing function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveMode {
    /// Fails when the function exists (`.create function`).
    Create,
    /// Replaces it or creates it (`.create-or-alter function`, `PUT`).
    CreateOrReplace,
    /// Fails when the function does not exist (`.alter function`).
    Replace,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Document {
    workspaces: Vec<Workspace>,
    #[serde(default)]
    functions: Vec<SavedFunction>,
}

/// The workspace registry of one data directory.
#[derive(Debug)]
pub struct Metastore {
    path: PathBuf,
    document: RwLock<Document>,
}

impl Metastore {
    /// Opens the metastore of `data_dir`, creating the directory if needed.
    pub fn open(data_dir: &Path) -> MetastoreResult<Metastore> {
        fs::create_dir_all(data_dir).map_err(|source| MetastoreError::Io { path: data_dir.to_path_buf(), source })?;
        let path = data_dir.join(FILE_NAME);
        let document = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| MetastoreError::Corrupt { path: path.clone(), source })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Document::default(),
            Err(source) => return Err(MetastoreError::Io { path, source }),
        };
        Ok(Metastore { path, document: RwLock::new(document) })
    }

    /// Returns every workspace.
    pub fn workspaces(&self) -> Vec<Workspace> {
        self.read().workspaces.clone()
    }

    /// Returns the workspace with `id` (compared case-insensitively).
    pub fn workspace(&self, id: &str) -> Option<Workspace> {
        self.read().workspaces.iter().find(|ws| ws.id.eq_ignore_ascii_case(id)).cloned()
    }

    /// Creates a workspace with a fresh id (or `id`) and fresh keys (or
    /// `primary_key` as its primary). When it exists already, sets the
    /// primary key if one is given and returns it.
    pub fn ensure_workspace(&self, id: Option<&str>, primary_key: Option<&str>) -> MetastoreResult<Workspace> {
        let id = match id {
            Some(text) => normalize_workspace_id(text)?,
            None => Uuid::new_v4().to_string(),
        };
        if let Some(key) = primary_key {
            BASE64.decode(key).map_err(|_| MetastoreError::InvalidKey(id.clone()))?;
        }
        self.update(|document| {
            if let Some(existing) = document.workspaces.iter_mut().find(|ws| ws.id == id) {
                if let Some(key) = primary_key {
                    existing.primary_key = key.to_string();
                }
                return Ok(existing.clone());
            }
            let workspace = Workspace {
                id: id.clone(),
                primary_key: primary_key.map(str::to_string).unwrap_or_else(generate_key),
                secondary_key: generate_key(),
                query_keys: Vec::new(),
                active: true,
            };
            document.workspaces.push(workspace.clone());
            Ok(workspace)
        })
    }

    /// Replaces one shared key with a fresh random one and returns the workspace.
    pub fn rotate_key(&self, id: &str, slot: KeySlot) -> MetastoreResult<Workspace> {
        self.update_workspace(id, |workspace| match slot {
            KeySlot::Primary => workspace.primary_key = generate_key(),
            KeySlot::Secondary => workspace.secondary_key = generate_key(),
        })
    }

    /// Adds a read-only query key and returns it.
    pub fn add_query_key(&self, id: &str) -> MetastoreResult<String> {
        let key = generate_key();
        let added = key.clone();
        self.update_workspace(id, move |workspace| workspace.query_keys.push(added))?;
        Ok(key)
    }

    /// The saved functions of a workspace, in name order.
    pub fn functions(&self, workspace: &str) -> Vec<SavedFunction> {
        let mut functions: Vec<SavedFunction> =
            self.read().functions.iter().filter(|function| function.workspace == workspace).cloned().collect();
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        functions
    }

    /// The saved function `name` of a workspace.
    pub fn function(&self, workspace: &str, name: &str) -> Option<SavedFunction> {
        self.read().functions.iter().find(|function| function.workspace == workspace && function.name == name).cloned()
    }

    /// Saves a function. Returns whether it replaced an existing one.
    pub fn save_function(&self, function: SavedFunction, mode: SaveMode) -> MetastoreResult<bool> {
        let workspace = normalize_workspace_id(&function.workspace)?;
        self.update(|document| {
            if !document.workspaces.iter().any(|ws| ws.id == workspace) {
                return Err(MetastoreError::UnknownWorkspace(workspace.clone()));
            }
            let existing =
                document.functions.iter().position(|saved| saved.workspace == workspace && saved.name == function.name);
            let function = SavedFunction { workspace: workspace.clone(), ..function };
            match (existing, mode) {
                (Some(_), SaveMode::Create) => Err(MetastoreError::FunctionExists(function.name)),
                (None, SaveMode::Replace) => Err(MetastoreError::UnknownFunction(function.name)),
                (Some(idx), _) => {
                    document.functions[idx] = function;
                    Ok(true)
                }
                (None, _) => {
                    document.functions.push(function);
                    Ok(false)
                }
            }
        })
    }

    /// Deletes a saved function. Returns whether it existed.
    pub fn drop_function(&self, workspace: &str, name: &str) -> MetastoreResult<bool> {
        let workspace = normalize_workspace_id(workspace)?;
        if self.function(&workspace, name).is_none() {
            return Ok(false);
        }
        self.update(|document| {
            let before = document.functions.len();
            document.functions.retain(|saved| !(saved.workspace == workspace && saved.name == name));
            Ok(document.functions.len() != before)
        })
    }

    fn update_workspace(&self, id: &str, change: impl FnOnce(&mut Workspace)) -> MetastoreResult<Workspace> {
        let id = normalize_workspace_id(id)?;
        self.update(|document| {
            let workspace = document
                .workspaces
                .iter_mut()
                .find(|ws| ws.id == id)
                .ok_or_else(|| MetastoreError::UnknownWorkspace(id.clone()))?;
            change(workspace);
            Ok(workspace.clone())
        })
    }

    fn update<T>(&self, change: impl FnOnce(&mut Document) -> MetastoreResult<T>) -> MetastoreResult<T> {
        let mut document = self.document.write().expect("metastore lock poisoned");
        let result = change(&mut document)?;
        write_atomically(&self.path, &serde_json::to_vec_pretty(&*document).expect("document serializes"))?;
        Ok(result)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Document> {
        self.document.read().expect("metastore lock poisoned")
    }
}

/// Parses a workspace id as a GUID and returns its lower-case dashed form.
pub fn normalize_workspace_id(text: &str) -> MetastoreResult<String> {
    Uuid::parse_str(text.trim())
        .map(|uuid| uuid.to_string())
        .map_err(|_| MetastoreError::InvalidWorkspaceId(text.to_string()))
}

/// Generates a 64-byte random key, base64 encoded like Azure's workspace keys.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 64];
    rand::thread_rng().fill_bytes(&mut bytes);
    BASE64.encode(bytes)
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new
/// content: temporary file, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> MetastoreResult<()> {
    let io_err = |source| MetastoreError::Io { path: path.to_path_buf(), source };
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(io_err)?;
    file.write_all(bytes).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    fs::rename(&tmp, path).map_err(io_err)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir).and_then(|dir| dir.sync_all()).map_err(io_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspaces_persist_and_keys_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Metastore::open(dir.path()).unwrap();
        let created = store.ensure_workspace(None, None).unwrap();
        assert_eq!(created.id.len(), 36);
        let rotated = store.rotate_key(&created.id, KeySlot::Secondary).unwrap();
        assert_eq!(rotated.primary_key, created.primary_key);
        assert_ne!(rotated.secondary_key, created.secondary_key);
        let query_key = store.add_query_key(&created.id.to_uppercase()).unwrap();

        let reopened = Metastore::open(dir.path()).unwrap();
        let loaded = reopened.workspace(&created.id).unwrap();
        assert_eq!(loaded.secondary_key, rotated.secondary_key);
        assert_eq!(loaded.query_keys, vec![query_key]);
    }

    #[test]
    fn functions_are_saved_replaced_dropped_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Metastore::open(dir.path()).unwrap();
        let ws = store.ensure_workspace(None, None).unwrap().id;
        let function = |body: &str| SavedFunction {
            workspace: ws.to_uppercase(),
            name: "Parser".into(),
            parameters: "n:long=1".into(),
            body: body.into(),
            category: "Parsers".into(),
            display_name: "My parser".into(),
            description: String::new(),
        };
        assert!(matches!(
            store.save_function(function("T"), SaveMode::Replace),
            Err(MetastoreError::UnknownFunction(_))
        ));
        assert!(!store.save_function(function("T | take n"), SaveMode::Create).unwrap());
        assert!(matches!(store.save_function(function("T"), SaveMode::Create), Err(MetastoreError::FunctionExists(_))));
        assert!(store.save_function(function("T | take 2 * n"), SaveMode::CreateOrReplace).unwrap());
        let unknown = SavedFunction { workspace: Uuid::new_v4().to_string(), ..function("T") };
        assert!(matches!(store.save_function(unknown, SaveMode::Create), Err(MetastoreError::UnknownWorkspace(_))));

        let reopened = Metastore::open(dir.path()).unwrap();
        let saved = reopened.function(&ws, "Parser").expect("the function survives a reopen");
        assert_eq!(saved.body, "T | take 2 * n");
        assert_eq!(saved.workspace, ws, "the workspace id is normalized");
        assert_eq!(reopened.functions(&ws).len(), 1);
        assert!(reopened.drop_function(&ws, "Parser").unwrap());
        assert!(!reopened.drop_function(&ws, "Parser").unwrap());
        assert!(Metastore::open(dir.path()).unwrap().functions(&ws).is_empty());
    }

    #[test]
    fn explicit_id_and_key_are_validated_and_applied() {
        let dir = tempfile::tempdir().unwrap();
        let store = Metastore::open(dir.path()).unwrap();
        assert!(matches!(store.ensure_workspace(Some("nope"), None), Err(MetastoreError::InvalidWorkspaceId(_))));
        let id = "8F2B3C4D-0000-4000-8000-000000000001";
        assert!(matches!(store.ensure_workspace(Some(id), Some("***")), Err(MetastoreError::InvalidKey(_))));
        let ws = store.ensure_workspace(Some(id), Some("c2hhcmVkX2tleQ==")).unwrap();
        assert_eq!(ws.id, id.to_lowercase());
        assert_eq!(ws.shared_key_bytes().0, b"shared_key");
        let again = store.ensure_workspace(Some(id), Some("b3RoZXI=")).unwrap();
        assert_eq!(again.primary_key, "b3RoZXI=");
        assert_eq!(store.workspaces().len(), 1);
    }
}
