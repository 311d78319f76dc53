//! Prometheus metrics of the internode transport, per peer: what an
//! operator needs to tell a slow link from a dead one or a hostile client.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A peer and a direction.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabels {
    /// The peer's node id.
    pub peer: String,
    /// "sent" or "received".
    pub direction: &'static str,
}

/// A peer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// The peer's node id.
    pub peer: String,
}

/// A peer and who opened the connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// The peer's node id.
    pub peer: String,
    /// "outbound" (we dialled) or "inbound".
    pub side: &'static str,
}

/// Why a handshake failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// See `HandshakeError::reason`.
    pub reason: &'static str,
}

/// The internode transport's metrics.
#[derive(Default)]
pub struct InternodeMetrics {
    /// Open connections.
    pub connections: Family<ConnectionLabels, Gauge>,
    /// Frames (requests and answers).
    pub frames: Family<LinkLabels, Counter>,
    /// Bytes on the wire (encrypted records).
    pub bytes: Family<LinkLabels, Counter>,
    /// Socket writes; frames ÷ writes is the coalescing factor.
    pub writes: Family<PeerLabels, Counter>,
    /// Requests sent and not yet answered.
    pub inflight: Family<PeerLabels, Gauge>,
    /// Connections re-opened after one was lost.
    pub reconnects: Family<PeerLabels, Counter>,
    /// Handshakes that failed, either side.
    pub handshake_failures: Family<ReasonLabels, Counter>,
    /// Connections closed for announcing a frame above the limit.
    pub frame_refusals: Family<PeerLabels, Counter>,
    /// Inbound connections refused at the connection cap.
    pub connections_refused: Counter,
}

impl InternodeMetrics {
    /// Registers every metric under `dynkv_internode_*`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "dynkv_internode_connections",
            "Open internode connections",
            self.connections.clone(),
        );
        r.register(
            "dynkv_internode_frames",
            "Internode frames (requests and answers)",
            self.frames.clone(),
        );
        r.register(
            "dynkv_internode_bytes",
            "Internode bytes on the wire, encrypted",
            self.bytes.clone(),
        );
        r.register(
            "dynkv_internode_writes",
            "Socket writes of internode frames (frames per write = coalescing)",
            self.writes.clone(),
        );
        r.register(
            "dynkv_internode_inflight",
            "Internode requests awaiting an answer",
            self.inflight.clone(),
        );
        r.register(
            "dynkv_internode_reconnects",
            "Internode connections re-opened after a loss",
            self.reconnects.clone(),
        );
        r.register(
            "dynkv_internode_handshake_failures",
            "Internode handshakes that failed, by reason",
            self.handshake_failures.clone(),
        );
        r.register(
            "dynkv_internode_frame_refusals",
            "Internode connections closed for a frame above the limit",
            self.frame_refusals.clone(),
        );
        r.register(
            "dynkv_internode_connections_refused",
            "Inbound internode connections refused at the connection cap",
            self.connections_refused.clone(),
        );
    }

    /// Handles of one peer's counters, taken once per connection so the
    /// hot path never looks labels up.
    pub(crate) fn link(&self, peer: &str) -> LinkMetrics {
        let l = |direction| LinkLabels {
            peer: peer.to_string(),
            direction,
        };
        let p = PeerLabels {
            peer: peer.to_string(),
        };
        // One statement per handle: a family's guard lives until the end of
        // its statement, and two guards of one family would deadlock.
        let frames_sent = self.frames.get_or_create(&l("sent")).clone();
        let frames_received = self.frames.get_or_create(&l("received")).clone();
        let bytes_sent = self.bytes.get_or_create(&l("sent")).clone();
        let bytes_received = self.bytes.get_or_create(&l("received")).clone();
        let writes = self.writes.get_or_create(&p).clone();
        let inflight = self.inflight.get_or_create(&p).clone();
        let frame_refusals = self.frame_refusals.get_or_create(&p).clone();
        LinkMetrics {
            frames_sent,
            frames_received,
            bytes_sent,
            bytes_received,
            writes,
            inflight,
            frame_refusals,
        }
    }
}

/// One peer's counters (cheap clones of the registered ones).
#[derive(Clone)]
pub(crate) struct LinkMetrics {
    pub frames_sent: Counter,
    pub frames_received: Counter,
    pub bytes_sent: Counter,
    pub bytes_received: Counter,
    pub writes: Counter,
    pub inflight: Gauge,
    pub frame_refusals: Counter,
}
