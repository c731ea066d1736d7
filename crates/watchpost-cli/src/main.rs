//! The `watchpost` binary: one executable for the server and the admin and
//! client commands. Two-stage configuration: flags and an optional TOML
//! file are merged into [`config::ServeConfig`] before anything starts.

mod agent_cmd;
mod config;
mod dcr_cmd;
mod function_cmd;
mod kql_cmd;
mod kql_step;
mod metrics_endpoint;
mod pipeline_cmd;
mod query_cmd;
mod serve;
mod upload_cmd;
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

/// mimalloc's `mi_option_purge_delay`, by its position in the `mi_option_e`
/// enum of mimalloc v3's `mimalloc.h`: the sys crate names no constant for
/// it. A test checks it still reads the documented default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays mapped for reuse before mimalloc returns it
/// to the OS. Its default (1 s) is shorter than the gap between segment
/// flushes, so under steady ingest each flush's freed buffers went back to
/// the OS and the next requests faulted in fresh zeroed pages: about a tenth
/// of server CPU in profiles. Ten seconds keeps them through steady ingest
/// and still gives memory back when the server goes idle.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

fn tune_allocator() {
    // SAFETY: mi_option_set only stores an integer in mimalloc's option
    // table; it has no pointer arguments or other preconditions.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
}

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
    /// Checks and formats KQL files offline.
    #[command(subcommand)]
    Kql(kql_cmd::KqlCommand),
    /// Manages a workspace's saved functions (parsers) on a server, and
    /// imports Sentinel parser files.
    #[command(subcommand)]
    Function(function_cmd::FunctionCommand),
    /// Manages data collection rules (Logs Ingestion API) in a data directory.
    #[command(subcommand)]
    Dcr(dcr_cmd::DcrCommand),
    /// Manages app registrations (OAuth2 client credentials) in a data directory.
    #[command(subcommand)]
    App(dcr_cmd::AppCommand),
    /// Collects files, syslog and CEF like the Log Analytics agent.
    Agent(agent_cmd::AgentArgs),
    /// Runs, tests or checks a connector pipeline.
    #[command(subcommand)]
    Pipeline(pipeline_cmd::PipelineCommand),
    /// Uploads CSV, JSON or NDJSON rows through the HTTP Data Collector API.
    Upload(upload_cmd::UploadArgs),
}

/// The default data directory.
pub(crate) fn default_data_dir() -> PathBuf {
    PathBuf::from("./watchpost-data")
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Workspace(command) => workspace_cmd::run(command),
        Command::Query(args) => query_cmd::run(args),
        Command::Kql(command) => kql_cmd::run(command),
        Command::Function(command) => function_cmd::run(command),
        Command::Dcr(command) => dcr_cmd::run_dcr(command),
        Command::App(command) => dcr_cmd::run_app(command),
        Command::Upload(args) => upload_cmd::run(args),
        Command::Pipeline(command) => pipeline_cmd::run(command),
        Command::Agent(args) => agent_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_delay_option_is_the_one_we_mean() {
        // Before tune_allocator runs, the option holds mimalloc v3's
        // documented default for purge_delay (1000 ms), unless the
        // environment overrides it.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: mi_option_get only reads mimalloc's option table.
            let value = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
            assert_eq!(value, 1000);
        }
        tune_allocator();
        // SAFETY: as above.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, PURGE_DELAY_MS);
    }
}
