//! `watchpost workspace ...`: admin verbs over a data directory's
//! metastore. They work with the server stopped or running; a running
//! server picks up changes at its next start.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use watchpost_metastore::{KeySlot, Metastore, Workspace};

#[derive(Debug, Subcommand)]
pub(crate) enum WorkspaceCommand {
    /// Creates a workspace (a fresh id unless --id is given) and prints its keys.
    Create {
        #[command(flatten)]
        dir: DataDir,
        #[arg(long)]
        id: Option<String>,
        /// Base64 primary key to use instead of a generated one.
        #[arg(long)]
        key: Option<String>,
    },
    /// Lists workspace ids.
    List {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Prints a workspace with its keys as JSON.
    Show {
        #[command(flatten)]
        dir: DataDir,
        id: String,
    },
    /// Replaces a shared key with a fresh one.
    RotateKey {
        #[command(flatten)]
        dir: DataDir,
        id: String,
        #[arg(long, value_enum, default_value = "primary")]
        key: KeyArg,
    },
    /// Adds a read-only query key and prints it.
    AddQueryKey {
        #[command(flatten)]
        dir: DataDir,
        id: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DataDir {
    /// Data directory.
    #[arg(long, value_name = "DIR", default_value = "./watchpost-data")]
    data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum KeyArg {
    Primary,
    Secondary,
}

pub(crate) fn run(command: WorkspaceCommand) -> anyhow::Result<ExitCode> {
    match command {
        WorkspaceCommand::Create { dir, id, key } => {
            let metastore = Metastore::open(&dir.data_dir)?;
            print_workspace(&metastore.ensure_workspace(id.as_deref(), key.as_deref())?);
        }
        WorkspaceCommand::List { dir } => {
            for workspace in Metastore::open(&dir.data_dir)?.workspaces() {
                println!("{}", workspace.id);
            }
        }
        WorkspaceCommand::Show { dir, id } => {
            let metastore = Metastore::open(&dir.data_dir)?;
            let Some(workspace) = metastore.workspace(&id) else {
                anyhow::bail!("no workspace {id} in {}", dir.data_dir.display());
            };
            print_workspace(&workspace);
        }
        WorkspaceCommand::RotateKey { dir, id, key } => {
            let slot = match key {
                KeyArg::Primary => KeySlot::Primary,
                KeyArg::Secondary => KeySlot::Secondary,
            };
            print_workspace(&Metastore::open(&dir.data_dir)?.rotate_key(&id, slot)?);
        }
        WorkspaceCommand::AddQueryKey { dir, id } => {
            println!("{}", Metastore::open(&dir.data_dir)?.add_query_key(&id)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_workspace(workspace: &Workspace) {
    let json = serde_json::json!({
        "id": workspace.id,
        "primaryKey": workspace.primary_key,
        "secondaryKey": workspace.secondary_key,
        "queryKeys": workspace.query_keys,
    });
    println!("{}", serde_json::to_string_pretty(&json).expect("JSON serializes"));
}
