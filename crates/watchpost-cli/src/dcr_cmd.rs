//! `watchpost dcr ...` and `watchpost app ...`: data collection rules and
//! app registrations in a data directory's metastore. A running server
//! sees a new rule or app at once (it reads the metastore again when it
//! meets an id it does not know); a changed rule, at its next start.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use watchpost_metastore::Metastore;

#[derive(Debug, Args)]
pub(crate) struct DataDirArg {
    /// Data directory.
    #[arg(long, value_name = "DIR", default_value = "./watchpost-data")]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DcrCommand {
    /// Creates or replaces a data collection rule from a JSON file (Azure's
    /// shape) and prints its immutable id.
    Create {
        #[command(flatten)]
        dir: DataDirArg,
        /// Workspace the rule belongs to.
        #[arg(long)]
        workspace: String,
        /// The rule definition.
        #[arg(long, value_name = "DCR.json")]
        file: PathBuf,
        /// Rule name [default: the file's `name`, else its file stem].
        #[arg(long)]
        name: Option<String>,
    },
    /// Prints a rule as JSON.
    Show {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        workspace: String,
        name: String,
    },
    /// Deletes a rule.
    Delete {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        workspace: String,
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AppCommand {
    /// Registers an app for the client credentials flow and prints its
    /// tenant id, client id and secret as JSON (the secret is shown once).
    Create {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        name: String,
        /// Workspace the app may send to and query (repeatable).
        #[arg(long = "workspace", required = true)]
        workspaces: Vec<String>,
        /// Restricts ingestion to these rule immutable ids (repeatable) [default: every rule of its workspaces].
        #[arg(long = "dcr")]
        dcrs: Vec<String>,
        /// The secret stops working after this many days [default: never].
        #[arg(long)]
        expires_days: Option<u32>,
    },
}

pub(crate) fn run_dcr(command: DcrCommand) -> anyhow::Result<ExitCode> {
    match command {
        DcrCommand::Create { dir, workspace, file, name } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let definition: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", file.display()))?;
            let name = name
                .or_else(|| definition.get("name").and_then(|name| name.as_str()).map(str::to_string))
                .or_else(|| file.file_stem().map(|stem| stem.to_string_lossy().into_owned()))
                .context("the rule needs a name (--name)")?;
            let compiled = watchpost_server::logs_ingestion::compile_rule(&definition)
                .map_err(|err| anyhow::anyhow!("{}: {}", err.code, err.message))?;
            let metastore = Metastore::open(&dir.data_dir)?;
            watchpost_server::logs_ingestion::check_destinations(&metastore, &workspace, &compiled.definition)
                .map_err(|err| anyhow::anyhow!("{}: {}", err.code, err.message))?;
            let (rule, _) = metastore.put_data_collection_rule(&workspace, &name, definition)?;
            println!("{}", rule.immutable_id);
            Ok(ExitCode::SUCCESS)
        }
        DcrCommand::Show { dir, workspace, name } => {
            let metastore = Metastore::open(&dir.data_dir)?;
            let rule = metastore.data_collection_rule(&workspace, &name).context("no such rule")?;
            let body = json!({"name": rule.name, "immutableId": rule.immutable_id, "workspace": rule.workspace, "definition": rule.definition});
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(ExitCode::SUCCESS)
        }
        DcrCommand::Delete { dir, workspace, name } => {
            let metastore = Metastore::open(&dir.data_dir)?;
            if !metastore.delete_data_collection_rule(&workspace, &name)? {
                anyhow::bail!("no rule `{name}` in workspace {workspace}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn run_app(command: AppCommand) -> anyhow::Result<ExitCode> {
    match command {
        AppCommand::Create { dir, name, workspaces, dcrs, expires_days } => {
            let metastore = Metastore::open(&dir.data_dir)?;
            let expires_at = expires_days.map(|days| chrono::Utc::now().timestamp() + i64::from(days) * 86_400);
            let (app, secret) = metastore.create_app(&name, workspaces, dcrs, expires_at)?;
            let tenant = metastore.tenant_id()?;
            let body = json!({
                "tenantId": tenant,
                "clientId": app.client_id,
                "clientSecret": secret,
                "name": app.name,
                "workspaces": app.workspaces,
                "dcrs": app.dcrs,
                "expiresAt": expires_at.and_then(|at| chrono::DateTime::from_timestamp(at, 0)).map(|at| at.to_rfc3339()),
            });
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
