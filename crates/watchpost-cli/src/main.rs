//! The `watchpost` binary: one executable for the server and the admin and
//! client commands. Two-stage configuration: flags and an optional TOML
//! file are merged into [`config::ServeConfig`] before anything starts.

mod config;
mod query_cmd;
mod serve;
mod workspace_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc keeps freed pages for reuse: ingest allocates and frees
/// multi-megabyte buffers per request (column buffers, WAL records), which
/// with the system allocator means fresh zeroed pages each time. Built with
/// `no_thp`: with transparent huge pages every first touch zero-fills 2 MiB,
/// which profiles showed as a third of ingest CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "watchpost",
    version,
    about = "A self-hosted security-log workspace, wire-compatible with Azure Log Analytics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the workspace server.
    Serve(serve::ServeArgs),
    /// Manages workspaces in a data directory.
    #[command(subcommand)]
    Workspace(workspace_cmd::WorkspaceCommand),
    /// Runs a KQL query against a Watchpost (or Log Analytics) query API.
    Query(query_cmd::QueryArgs),
}

/// The default data directory.
pub(crate) fn default_data_dir() -> PathBuf {
    PathBuf::from("./watchpost-data")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Workspace(command) => workspace_cmd::run(command),
        Command::Query(args) => query_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
