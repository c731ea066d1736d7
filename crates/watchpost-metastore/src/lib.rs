//! Control-plane state: workspaces and their keys, saved functions, data
//! collection rules and app registrations (client id, hashed secret, allowed
//! workspaces).
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
    #[error("data collection rule name `{0}` is not valid: use 1 to 64 letters, digits, '-', '_' or '.'")]
    InvalidRuleName(String),
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
    /// The tenant id the token endpoint serves; made on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    data_collection_rules: Vec<DataCollectionRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    apps: Vec<AppRegistration>,
}

/// The workspace registry of one data directory.
#[derive(Debug)]
pub struct Metastore {
    path: PathBuf,
    document: RwLock<Document>,
    /// Modification time and length of the file as last read or written
    /// here; a different stamp means another process (the CLI) wrote it.
    stamp: std::sync::Mutex<Option<FileStamp>>,
}

type FileStamp = (std::time::SystemTime, u64);

fn file_stamp(path: &Path) -> Option<FileStamp> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
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
        let stamp = std::sync::Mutex::new(file_stamp(&path));
        Ok(Metastore { path, document: RwLock::new(document), stamp })
    }

    /// The data directory the metastore lives in.
    pub fn data_dir(&self) -> &Path {
        self.path.parent().expect("the metastore file is in a directory")
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

    /// Applies a change and writes the file. When another process wrote the
    /// file since this one last read or wrote it, its content is read first,
    /// so the change does not overwrite what the CLI added meanwhile.
    fn update<T>(&self, change: impl FnOnce(&mut Document) -> MetastoreResult<T>) -> MetastoreResult<T> {
        let mut document = self.document.write().expect("metastore lock poisoned");
        let mut stamp = self.stamp.lock().expect("metastore stamp lock poisoned");
        let current = file_stamp(&self.path);
        if current.is_some() && current != *stamp {
            *document = self.read_file()?;
        }
        let result = change(&mut document)?;
        write_atomically(&self.path, &serde_json::to_vec_pretty(&*document).expect("document serializes"))?;
        *stamp = file_stamp(&self.path);
        Ok(result)
    }

    fn read_file(&self) -> MetastoreResult<Document> {
        let bytes = fs::read(&self.path).map_err(|source| MetastoreError::Io { path: self.path.clone(), source })?;
        serde_json::from_slice(&bytes).map_err(|source| MetastoreError::Corrupt { path: self.path.clone(), source })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Document> {
        self.document.read().expect("metastore lock poisoned")
    }
}

/// A data collection rule of a workspace: its name, the immutable id
/// clients address it by, and its definition in Azure's JSON shape (the
/// ingest crate parses and checks it; the metastore only keeps it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataCollectionRule {
    pub workspace: String,
    pub name: String,
    /// `dcr-` and 32 lower-case hex digits; never changes once made.
    pub immutable_id: String,
    pub definition: serde_json::Value,
}

/// An app registration: a client id and the hash of its secret, allowed to
/// obtain tokens for some workspaces (and, when `dcrs` is not empty, only
/// those data collection rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRegistration {
    pub client_id: String,
    pub name: String,
    /// Hex SHA-256 of the secret. The secret is 32 random bytes, so a fast
    /// hash is enough: there is nothing to guess from a dictionary.
    pub secret_sha256: String,
    pub workspaces: Vec<String>,
    #[serde(default)]
    pub dcrs: Vec<String>,
    /// Seconds since the epoch after which the secret no longer works.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl Metastore {
    /// The tenant id of this installation, made and stored on first use.
    pub fn tenant_id(&self) -> MetastoreResult<String> {
        if let Some(id) = self.read().tenant_id.clone() {
            return Ok(id);
        }
        self.update(|document| Ok(document.tenant_id.get_or_insert_with(|| Uuid::new_v4().to_string()).clone()))
    }

    /// Creates or replaces the rule `name` of a workspace. A replaced rule
    /// keeps its immutable id. Returns the rule and whether it was created.
    pub fn put_data_collection_rule(
        &self,
        workspace: &str,
        name: &str,
        definition: serde_json::Value,
    ) -> MetastoreResult<(DataCollectionRule, bool)> {
        let workspace = normalize_workspace_id(workspace)?;
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_name {
            return Err(MetastoreError::InvalidRuleName(name.to_string()));
        }
        self.update(|document| {
            if !document.workspaces.iter().any(|ws| ws.id == workspace) {
                return Err(MetastoreError::UnknownWorkspace(workspace.clone()));
            }
            let existing = document
                .data_collection_rules
                .iter_mut()
                .find(|rule| rule.workspace == workspace && rule.name.eq_ignore_ascii_case(name));
            if let Some(rule) = existing {
                rule.definition = definition;
                return Ok((rule.clone(), false));
            }
            let rule = DataCollectionRule {
                workspace: workspace.clone(),
                name: name.to_string(),
                immutable_id: format!("dcr-{}", Uuid::new_v4().simple()),
                definition,
            };
            document.data_collection_rules.push(rule.clone());
            Ok((rule, true))
        })
    }

    /// The rule `name` of a workspace (names compare case-insensitively, as in Azure).
    pub fn data_collection_rule(&self, workspace: &str, name: &str) -> Option<DataCollectionRule> {
        let workspace = normalize_workspace_id(workspace).ok()?;
        let document = self.read();
        document
            .data_collection_rules
            .iter()
            .find(|rule| rule.workspace == workspace && rule.name.eq_ignore_ascii_case(name))
            .cloned()
    }

    /// The rule with an immutable id (compared case-insensitively).
    pub fn data_collection_rule_by_immutable_id(&self, immutable_id: &str) -> Option<DataCollectionRule> {
        let document = self.read();
        document.data_collection_rules.iter().find(|rule| rule.immutable_id.eq_ignore_ascii_case(immutable_id)).cloned()
    }

    /// Deletes a rule; returns whether it existed.
    pub fn delete_data_collection_rule(&self, workspace: &str, name: &str) -> MetastoreResult<bool> {
        let workspace = normalize_workspace_id(workspace)?;
        self.update(|document| {
            let before = document.data_collection_rules.len();
            document
                .data_collection_rules
                .retain(|rule| !(rule.workspace == workspace && rule.name.eq_ignore_ascii_case(name)));
            Ok(document.data_collection_rules.len() != before)
        })
    }

    /// Every app registration.
    pub fn apps(&self) -> Vec<AppRegistration> {
        self.read().apps.clone()
    }

    /// Registers an app allowed on `workspaces` (and only `dcrs`, when not
    /// empty) and returns it with its secret, which is stored only hashed.
    pub fn create_app(
        &self,
        name: &str,
        workspaces: Vec<String>,
        dcrs: Vec<String>,
        expires_at: Option<i64>,
    ) -> MetastoreResult<(AppRegistration, String)> {
        let workspaces = workspaces.iter().map(|id| normalize_workspace_id(id)).collect::<MetastoreResult<Vec<_>>>()?;
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let app = AppRegistration {
            client_id: Uuid::new_v4().to_string(),
            name: name.to_string(),
            secret_sha256: sha256_hex(&secret),
            workspaces,
            dcrs: dcrs.iter().map(|id| id.to_ascii_lowercase()).collect(),
            expires_at,
        };
        self.update(|document| {
            for workspace in &app.workspaces {
                if !document.workspaces.iter().any(|ws| &ws.id == workspace) {
                    return Err(MetastoreError::UnknownWorkspace(workspace.clone()));
                }
            }
            document.apps.push(app.clone());
            Ok(())
        })?;
        Ok((app, secret))
    }

    /// The app whose client id and secret match, if any (the hash is
    /// compared in constant time). Expiry is the caller's check.
    pub fn verify_app_secret(&self, client_id: &str, secret: &str) -> Option<AppRegistration> {
        use subtle::ConstantTimeEq;
        let app = self.read().apps.iter().find(|app| app.client_id.eq_ignore_ascii_case(client_id.trim())).cloned()?;
        let matches: bool = sha256_hex(secret).as_bytes().ct_eq(app.secret_sha256.as_bytes()).into();
        matches.then_some(app)
    }

    /// Reads the file again if another process (the CLI's admin verbs)
    /// changed it since it was loaded or last written here.
    /// Cheap when nothing changed (one `stat`), so callers may check on
    /// every use.
    pub fn reload(&self) -> MetastoreResult<()> {
        let current = file_stamp(&self.path);
        if current.is_none() || current == *self.stamp.lock().expect("metastore stamp lock poisoned") {
            return Ok(());
        }
        let mut document = self.document.write().expect("metastore lock poisoned");
        let mut stamp = self.stamp.lock().expect("metastore stamp lock poisoned");
        let current = file_stamp(&self.path);
        if current.is_none() || current == *stamp {
            return Ok(());
        }
        *document = self.read_file()?;
        *stamp = current;
        Ok(())
    }
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
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
    fn rules_keep_their_immutable_id_and_apps_store_only_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = Metastore::open(dir.path()).unwrap();
        let ws = store.ensure_workspace(None, None).unwrap();
        let definition = serde_json::json!({"properties": {"streamDeclarations": {}}});
        let (first, created) = store.put_data_collection_rule(&ws.id, "rule-1", definition.clone()).unwrap();
        assert!(created);
        assert!(first.immutable_id.starts_with("dcr-") && first.immutable_id.len() == 36);
        let (second, created) = store.put_data_collection_rule(&ws.id, "RULE-1", definition).unwrap();
        assert!(!created);
        assert_eq!(second.immutable_id, first.immutable_id);
        assert!(store.put_data_collection_rule(&ws.id, "bad name", serde_json::json!({})).is_err());
        let other = Uuid::new_v4().to_string();
        assert!(matches!(
            store.put_data_collection_rule(&other, "r", serde_json::json!({})),
            Err(MetastoreError::UnknownWorkspace(_))
        ));

        let (app, secret) =
            store.create_app("ingestor", vec![ws.id.clone()], vec![first.immutable_id.clone()], None).unwrap();
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(!text.contains(&secret), "the secret must not be stored in clear");
        let tenant = store.tenant_id().unwrap();

        let reopened = Metastore::open(dir.path()).unwrap();
        assert_eq!(reopened.tenant_id().unwrap(), tenant);
        assert_eq!(reopened.data_collection_rule_by_immutable_id(&first.immutable_id).unwrap().name, "rule-1");
        assert_eq!(reopened.verify_app_secret(&app.client_id, &secret).unwrap().name, "ingestor");
        assert!(reopened.verify_app_secret(&app.client_id, "wrong").is_none());
        assert!(reopened.delete_data_collection_rule(&ws.id, "rule-1").unwrap());
        assert!(!reopened.delete_data_collection_rule(&ws.id, "rule-1").unwrap());
        assert!(reopened.data_collection_rule_by_immutable_id(&first.immutable_id).is_none());
    }

    #[test]
    fn a_change_keeps_what_another_process_wrote_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let server = Metastore::open(dir.path()).unwrap();
        let ws = server.ensure_workspace(None, None).unwrap();
        // The CLI, another process, registers an app the server has not seen.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let cli = Metastore::open(dir.path()).unwrap();
        let (app, _) = cli.create_app("from-cli", vec![ws.id.clone()], vec![], None).unwrap();
        assert!(server.apps().is_empty());
        // The server then saves a rule: the app survives in the file and in memory.
        server.put_data_collection_rule(&ws.id, "r", serde_json::json!({})).unwrap();
        assert_eq!(server.apps()[0].client_id, app.client_id);
        assert_eq!(Metastore::open(dir.path()).unwrap().apps().len(), 1);
    }

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
