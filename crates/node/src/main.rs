//! # dynkv: the node binary and its command-line client
//!
//! `dynkv serve` (or `dynkv` with no arguments) runs a node; `get`, `put`,
//! `delete` and `status` are a small client for the public HTTP API.
//!
//! ## Layout
//! - [`config`]: the layered, typed configuration and its validation.
//! - [`wiring`]: the mechanisms' configs from it, and the node's pieces
//!   (storage, ring, transport, coordinator, anti-entropy, membership).
//! - [`workers`]: the background workers, on one `dynkv-runtime` runtime.
//! - [`views`]: the node's `/admin/...` views, `/admin/workers` among them.
//! - [`server`]: `serve`: the listeners, the workers, graceful shutdown.
//! - [`listener`]: the public listener (connection cap, timeouts, TLS
//!   through [`tls`]) and listening sockets handed over by the parent.
//! - [`client`]: the client subcommands.

/// mimalloc: the request path allocates many small buffers (frames,
/// headers, objects); glibc's malloc showed up at the top of the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod certs;
mod client;
mod config;
mod listener;
mod pb;
mod security_cli;
mod server;
mod tls;
mod views;
mod wiring;
mod workers;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A Dynamo-style, leaderless, highly available key-value store.
#[derive(Parser)]
#[command(name = "dynkv", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (the default). With no --config it runs a single node on
    /// the embedded defaults: 127.0.0.1:7070, data in ./dynkv-data.
    Serve {
        /// Node configuration file (TOML), layered over the defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Read a key.
    Get(client::GetArgs),
    /// Write a key.
    Put(client::PutArgs),
    /// Delete a key (writes a tombstone).
    Delete(client::DeleteArgs),
    /// Show what a node believes about the cluster.
    Status(client::NodeArg),
    /// Change the cluster's membership (join, leave, plan, commit, members);
    /// compact a node's store; list a node's background workers.
    Admin(client::AdminArgs),
    /// Generate load against nodes (or a bare HTTP server, or etcd) and
    /// report throughput, latency percentiles and errors.
    Bench(dynkv_bench::BenchArgs),
}

fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

/// A command whose output is piped into `head` ends quietly when the
/// reader goes away, as other Unix tools do, instead of panicking in
/// `println!`. Rust ignores SIGPIPE by default, and the server keeps that (a
/// client hanging up must never kill a node); sockets are unaffected either
/// way, since Rust writes to them with `MSG_NOSIGNAL`.
fn end_quietly_on_closed_stdout() {
    // SAFETY: called before any other thread exists; it restores the
    // signal's default disposition and touches no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = |worker_threads: usize| {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if worker_threads > 0 {
            b.worker_threads(worker_threads);
        }
        b.enable_all().build().expect("tokio runtime")
    };
    let command = cli.command.unwrap_or(Command::Serve { config: None });
    // The short commands that print for a terminal or a pipe; not the
    // server, nor the load generator.
    if !matches!(command, Command::Serve { .. } | Command::Bench(_)) {
        end_quietly_on_closed_stdout();
    }
    match command {
        Command::Serve { config } => {
            init_tracing();
            // Before the runtime starts any thread: it edits the environment.
            let inherited = match listener::Inherited::from_env() {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("dynkv: inherited listeners: {e}");
                    return ExitCode::from(2);
                }
            };
            let cfg = match config::Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("dynkv: {e}");
                    return ExitCode::from(2);
                }
            };
            match rt(cfg.node.worker_threads).block_on(server::serve(cfg, inherited)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("fatal: {e}");
                    eprintln!("dynkv: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Get(a) => rt(0).block_on(client::get(a)),
        Command::Put(a) => rt(0).block_on(client::put(a)),
        Command::Delete(a) => rt(0).block_on(client::delete(a)),
        Command::Status(a) => rt(0).block_on(client::status(a)),
        Command::Admin(a) => rt(0).block_on(client::admin(a)),
        Command::Bench(a) => rt(0).block_on(dynkv_bench::run(a)),
    }
}
