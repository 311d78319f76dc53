//! `dynkv serve`: assembles the node ([`crate::wiring`]), starts its
//! background workers on one [`Runtime`] ([`crate::workers`]), the
//! internode listener and the public HTTP listener, and shuts them down in
//! order.

use std::sync::Arc;
use std::time::Duration;

use dynkv_rpc::net::Listener;
use dynkv_runtime::Runtime;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::Config;
use crate::wiring::Node;

/// How long shutdown waits for the background workers before aborting them.
const WORKER_GRACE: Duration = Duration::from_secs(5);

/// Runs a node until SIGTERM or Ctrl-C.
pub async fn serve(cfg: Config) -> Result<(), Box<dyn std::error::Error>> {
    for w in cfg.warnings() {
        warn!("configuration: {w}");
    }
    let secret = cfg.secret()?;
    let mut node = Node::assemble(&cfg, &secret)?;
    if !crate::config::is_loopback(&cfg.node.listen) && !node.membership.security().enabled() {
        warn!(listen = %cfg.node.listen, "the public API listens off loopback with security disabled: anyone who reaches it can read and write every key (dynkv admin security enable)");
    }

    let runtime = Arc::new(Runtime::new());
    let cluster_listener = TcpListener::bind(&cfg.node.cluster_listen).await?;
    runtime.spawn(Listener::new(
        cluster_listener,
        node.net.clone(),
        node.dispatcher.clone(),
        node.metrics.internode.clone(),
    ));
    crate::workers::start(
        &runtime,
        &cfg,
        &node.coord,
        &node.aae,
        &node.membership,
        node.metrics.storage.clone(),
    );

    let state = node.app_state(&cfg, &secret, &runtime);
    // TCP_NODELAY: small HTTP answers must not wait for Nagle's algorithm
    // (with delayed ACKs that stalls a keep-alive connection for tens of ms).
    let listener =
        axum::serve::ListenerExt::tap_io(TcpListener::bind(&cfg.node.listen).await?, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                warn!(error = %e, "cannot set TCP_NODELAY");
            }
        });
    info!(node = %cfg.node.id, listen = %cfg.node.listen, cluster_listen = %cfg.node.cluster_listen, members = cfg.members().len(), n_val = cfg.cluster.n_val, "dynkv node ready");
    // The peer address reaches the security layer as `ConnectInfo`.
    let app =
        dynkv_api::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;

    info!("shutting down");
    runtime.shutdown(WORKER_GRACE).await;
    let Node {
        store,
        epoch,
        coord,
        ..
    } = node;
    store.flush()?;
    drop(coord);
    // Only now is every acknowledged write on disk: the next start may keep
    // this incarnation.
    dynkv_quorum::epoch::end(&store, &epoch)?;
    info!("storage flushed; bye");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = futures::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
