//! `dynkv serve`: assembles the node ([`crate::wiring`]), starts its
//! background workers on one [`Runtime`] ([`crate::workers`]), the
//! internode listener and the public HTTP listener, and shuts them down in
//! order.

use std::sync::Arc;
use std::time::Duration;

use dynkv_rpc::net::Listener;
use dynkv_runtime::Runtime;
use tracing::{info, warn};

use crate::config::Config;
use crate::listener::{self, Inherited};
use crate::tls::Tls;
use crate::wiring::Node;

/// How long shutdown waits for the background workers before aborting them.
const WORKER_GRACE: Duration = Duration::from_secs(5);

/// Runs a node until SIGTERM or Ctrl-C, on the listeners handed over in
/// `inherited` or bound from the configuration.
pub async fn serve(
    cfg: Config,
    mut inherited: Inherited,
) -> Result<(), Box<dyn std::error::Error>> {
    for w in cfg.warnings() {
        warn!("configuration: {w}");
    }
    let secret = cfg.secret()?;
    let tls = Tls::from_config(&cfg.node)?.map(Arc::new);
    if !crate::config::is_loopback(&cfg.node.listen) && tls.is_none() {
        warn!(listen = %cfg.node.listen, "the public API listens off loopback without TLS (node.tls_cert) or authentication: anyone who reaches it can read and write every key, and everything crosses the network in clear");
    }
    let mut node = Node::assemble(&cfg, &secret)?;
    if !crate::config::is_loopback(&cfg.node.listen) && !node.membership.security().enabled() {
        warn!(listen = %cfg.node.listen, "the public API listens off loopback with security disabled: anyone who reaches it can read and write every key (dynkv admin security enable)");
    }

    let runtime = Arc::new(Runtime::new());
    let state = node.app_state(&cfg, &secret, &runtime);
    // Peers ask for this node's overview (the dashboard's figures), which
    // the API computes from its own state.
    let mut dispatcher = std::mem::take(&mut node.dispatcher);
    dispatcher.register::<dynkv_rpc::messages::Overview, _>(dynkv_api::overview::handler(&state));
    let cluster_listener = inherited.cluster(&cfg.node.cluster_listen).await?;
    runtime.spawn(Listener::new(
        cluster_listener,
        node.net.clone(),
        Arc::new(dispatcher),
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

    let public = inherited.http(&cfg.node.listen).await?;
    if let Some(tls) = &tls {
        tokio::spawn(listener::reload_on_sighup(tls.clone()));
    }
    info!(node = %cfg.node.id, listen = %public.local_addr()?, cluster_listen = %cfg.node.cluster_listen, tls = tls.as_ref().map_or("off", |t| t.engine()), members = cfg.members().len(), n_val = cfg.cluster.n_val, "dynkv node ready");
    let limits = listener::Limits::from_config(&cfg.node);
    let metrics = node.metrics.listener.clone();
    // One signal stops both client listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let pb = match inherited.pb(&cfg.riak.pb_listen).await? {
        None => None,
        Some(l) => {
            info!(pb_listen = %l.local_addr()?, "Riak PBC listener ready");
            Some(tokio::spawn(crate::pb::serve(
                l,
                state.clone(),
                tls.clone(),
                cfg.node.max_connections,
                cfg.riak.pb_max_frame_bytes,
                metrics.clone(),
                stopped(stop_rx.clone()),
            )))
        }
    };
    listener::serve(
        public,
        dynkv_api::router(state),
        limits,
        tls,
        metrics,
        stopped(stop_rx),
    )
    .await;
    if let Some(pb) = pb {
        let _ = pb.await;
    }

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
