//! # dynkv-bare: the HTTP ceiling
//!
//! A server built on the same stack as a dynkv node (axum on hyper on tokio,
//! HTTP/1.1 keep-alive) that does nothing: it reads every request body in
//! full and answers `200 OK` with an empty body, whatever the method and
//! path. `dynkv bench --target-kind bare` against it measures what the HTTP
//! stack and the load generator cost on this machine, the ceiling against
//! which dynkv's own numbers are read (`scripts/bench-compare.sh`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use clap::Parser;

/// Command line of the bare server.
#[derive(Parser)]
#[command(name = "dynkv-bare", version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7080")]
    listen: String,
}

/// Reads the body (as dynkv reads a written value) and answers 200.
async fn ok(body: Bytes) -> StatusCode {
    drop(body);
    StatusCode::OK
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let listener = match tokio::net::TcpListener::bind(&cli.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("dynkv-bare: cannot listen on {}: {e}", cli.listen);
                return std::process::ExitCode::FAILURE;
            }
        };
        eprintln!("dynkv-bare listening on {}", cli.listen);
        let app = Router::new()
            .fallback(ok)
            .layer(DefaultBodyLimit::disable());
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = shutdown => {}
                _ = term.recv() => {}
            }
        };
        match axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dynkv-bare: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
