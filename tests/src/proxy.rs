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
//!
//! A link may also be *slow* ([`LinkDelay`]): every chunk of bytes is held
//! for a fixed delay plus an exponentially distributed jitter before it is
//! relayed, in order (a chunk is never sent before the one ahead of it), as
//! a long or congested route would. Both directions are delayed alike, so
//! a round trip takes two such delays (cutting a slow link closes its open
//! connections instead of black-holing them). The staleness validation
//! (`pbs-validate`) uses it to make the latencies it predicts from
//! measurable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How long a slow link holds each chunk: `base` plus an exponentially
/// distributed jitter of mean `jitter`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkDelay {
    /// The fixed part.
    pub base: Duration,
    /// The mean of the random part.
    pub jitter: Duration,
}

impl LinkDelay {
    /// One chunk's delay, from a uniform draw `u` in `[0, 1)`.
    pub fn sample(&self, u: f64) -> Duration {
        let jitter = -self.jitter.as_secs_f64() * (1.0 - u).ln();
        self.base + Duration::from_secs_f64(jitter)
    }
}

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
        LinkProxy::start_delayed(target, None).await
    }

    /// Starts a proxy like [`LinkProxy::start`] whose connections hold
    /// every chunk for `delay` (none: relay at once).
    pub async fn start_delayed(target: u16, delay: Option<LinkDelay>) -> LinkProxy {
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
                tokio::spawn(serve(inbound, target, rx, delay));
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

async fn serve(
    mut inbound: TcpStream,
    target: u16,
    mut cut: watch::Receiver<bool>,
    delay: Option<LinkDelay>,
) {
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
    if let Some(delay) = delay {
        let (in_r, in_w) = inbound.into_split();
        let (out_r, out_w) = outbound.into_split();
        tokio::select! {
            _ = async {
                tokio::join!(delay_line(in_r, out_w, delay), delay_line(out_r, in_w, delay))
            } => {}
            _ = wait_until(&mut cut, true) => {
                wait_until(&mut cut, false).await;
            }
        }
        return;
    }
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = wait_until(&mut cut, true) => {
            // Cut while open: stop relaying but keep both sockets open and
            // silent until the link heals.
            wait_until(&mut cut, false).await;
        }
    }
}

/// Relays `from` to `to`, holding each chunk for a delay drawn from
/// `delay`, in order.
async fn delay_line(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: LinkDelay) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut last = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let at = (Instant::now() + delay.sample(rand::random::<f64>())).max(last);
                    last = at;
                    if tx.send((at, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// A TCP proxy in front of a node's public port that can lose answers:
/// with [`AnswerLoser::lose_next`] armed, it relays the next request to
/// the node but, when the node's answer comes back, closes the client's
/// connection instead of relaying it. The client saw its request leave
/// and no answer come, as when a connection is cut at the worst moment:
/// the node applied the request, the client cannot know.
pub struct AnswerLoser {
    /// Port the proxy listens on (127.0.0.1).
    pub port: u16,
    lose: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl AnswerLoser {
    /// Starts a proxy on a free port forwarding to `127.0.0.1:target`.
    pub async fn start(target: u16) -> AnswerLoser {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let lose = Arc::new(AtomicU64::new(0));
        let lost = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (lose2, lost2, stop2) = (lose.clone(), lost.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    break;
                };
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                tokio::spawn(relay_losing(inbound, target, lose2.clone(), lost2.clone()));
            }
        });
        AnswerLoser {
            port,
            lose,
            lost,
            stop,
        }
    }

    /// Loses the next `n` answers.
    pub fn lose_next(&self, n: u64) {
        self.lose.store(n, Ordering::SeqCst);
    }

    /// Answers lost so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::SeqCst)
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for AnswerLoser {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn relay_losing(inbound: TcpStream, target: u16, lose: Arc<AtomicU64>, lost: Arc<AtomicU64>) {
    use tokio::io::AsyncReadExt;
    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (mut client_rx, mut client_tx) = inbound.into_split();
    let (mut node_rx, mut node_tx) = outbound.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_rx, &mut node_tx).await;
    });
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match node_rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let armed = lose
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| k.checked_sub(1))
            .is_ok();
        if armed {
            // Drop the answer and both connections.
            lost.fetch_add(1, Ordering::SeqCst);
            break;
        }
        if client_tx.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}
