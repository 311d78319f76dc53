//! A fault-injecting TCP proxy for internode links: the real partitions of
//! the cluster tests.
//!
//! In a proxied cluster, node `i` reaches node `j` through its own proxy
//! `(i → j)`, which forwards to `j`'s cluster (internode) port: the member
//! list node `i` is given names the proxy's port instead, so every directed
//! link can be cut on its own. Clients still reach every node directly on
//! its public port. The proxy relays bytes and never looks at them, so the
//! encrypted, authenticated internode protocol passes through unchanged.
//!
//! A cut link is a black hole, like a dropped route or an iptables DROP
//! rule: open connections stop relaying bytes, and new connections are
//! accepted but never answered, so callers wait out their timeouts. Healing
//! closes the black-holed connections (as a real network's timeouts
//! eventually would) and relays again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One directed link.
pub struct LinkProxy {
    /// Port the proxy listens on (127.0.0.1).
    pub port: u16,
    cut: watch::Sender<bool>,
    relayed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl LinkProxy {
    /// Starts a proxy on a free port forwarding to `127.0.0.1:target` (a
    /// node's cluster port).
    pub async fn start(target: u16) -> LinkProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cut_rx) = watch::channel(false);
        let relayed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (relayed2, stop2) = (relayed.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    break;
                };
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                relayed2.fetch_add(1, Ordering::Relaxed);
                let rx = cut_rx.clone();
                tokio::spawn(serve(inbound, target, rx));
            }
        });
        LinkProxy {
            port,
            cut,
            relayed,
            stop,
        }
    }

    /// Black-holes the link.
    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }

    /// Restores the link.
    pub fn heal(&self) {
        let _ = self.cut.send(false);
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.relayed.load(Ordering::Relaxed)
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.cut.send(true);
    }
}

async fn wait_until(rx: &mut watch::Receiver<bool>, want: bool) {
    while *rx.borrow_and_update() != want {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn serve(mut inbound: TcpStream, target: u16, mut cut: watch::Receiver<bool>) {
    if *cut.borrow_and_update() {
        // A black hole: hold the connection silently until healed, then drop it.
        wait_until(&mut cut, false).await;
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
        let _ = inbound.shutdown().await;
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = wait_until(&mut cut, true) => {
            // Cut while open: stop relaying but keep both sockets open and
            // silent until the link heals.
            wait_until(&mut cut, false).await;
        }
    }
}
