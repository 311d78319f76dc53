//! The Riak PBC listener (`riak.pb_listen`): accepts connections and
//! hands each to the API crate's per-connection loop
//! ([`dynkv_api::riak::pb::serve`]), which reads frames, dispatches them by
//! message code and writes the answers.
//!
//! Like the public listener it caps its connections (`node.max_connections`,
//! a separate budget: a connection past it is closed at once and counted in
//! `dynkv_connections_refused_total`), sets TCP_NODELAY, and bounds frames
//! (`riak.pb_max_frame_bytes`, checked from the 4-byte header before any
//! allocation). Requests share the node's in-flight limit with HTTP.
//!
//! TLS: connections start in clear, as Riak's do; `RpbStartTls` upgrades
//! one in place with the node's TLS configuration (`node.tls_cert`, the
//! public listener's, reloaded with it on SIGHUP), through the upgrade
//! this module hands to the loop ([`starttls`]). A node without a
//! certificate refuses `RpbStartTls`.
//!
//! Shutdown: on the signal the loop stops accepting, and open connections
//! are closed after their current request or [`SHUTDOWN_GRACE`], whichever
//! comes first (a PBC client reconnects, as it does when a Riak node stops).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dynkv_api::AppState;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info};

use crate::listener::{ListenerMetrics, SHUTDOWN_GRACE};
use crate::tls::Tls;

/// Longest a client may take over its TLS handshake after `RpbStartTls`.
const STARTTLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// How a connection upgrades after `RpbStartTls`: the TLS handshake on the
/// same socket with the node's certificate (the HTTP listener's, reloaded
/// with it on SIGHUP); a failed handshake is counted as the HTTP
/// listener's are.
fn starttls(
    tls: Arc<Tls>,
    metrics: Arc<ListenerMetrics>,
) -> dynkv_api::riak::pb::Upgrade<tokio::net::TcpStream> {
    Box::new(move |tcp| {
        Box::pin(async move {
            let fail = |e: std::io::Error| {
                metrics.tls_failures.inc();
                e
            };
            match tokio::time::timeout(STARTTLS_HANDSHAKE, tls.accept(tcp)).await {
                Ok(Ok(s)) => Ok(Box::new(s) as Box<dyn dynkv_api::riak::pb::Conn>),
                Ok(Err(e)) => Err(fail(e)),
                Err(_) => Err(fail(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ))),
            }
        })
    })
}

/// Serves PBC on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    tls: Option<Arc<Tls>>,
    max_connections: usize,
    max_frame: usize,
    metrics: Arc<ListenerMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer, permit) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            a = crate::listener::admit(&listener, &permits, &metrics, "PBC") => a,
        };
        let (state, metrics) = (state.clone(), metrics.clone());
        let upgrade = tls.clone().map(|tls| starttls(tls, metrics.clone()));
        conns.spawn(async move {
            metrics.open.inc();
            let served =
                dynkv_api::riak::pb::serve(state, tcp, max_frame, Some(peer.ip()), upgrade);
            if let Err(e) = served.await {
                debug!(%peer, error = %e, "PBC connection ended");
            }
            metrics.open.dec();
            drop(permit);
        });
    }
    drop(listener);
    info!("PBC listener closed");
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE.min(Duration::from_secs(1)), drain)
        .await
        .is_err()
    {
        conns.abort_all();
    }
}
