//! The whole HTTP surface of a node (`dynkv_api::router`) driven in process:
//! a one-node cluster on a RocksDB store in a temporary directory, and one
//! request per input, built from fuzzer-chosen method, route, path, query,
//! headers and body. A panic in any handler, a hang, a 500, or an error
//! body that is not the JSON `{"error", "code"}` the README promises is a
//! finding.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Uri};
use dynkv_api::{ADMIN_TOKEN_HEADER, AppState, HttpMetrics, Limits, router};
use dynkv_quorum::{Coordinator, CoordinatorConfig, QuorumMetrics};
use dynkv_ring::{NodeId, Ring};
use dynkv_rpc::sim::SimNetwork;
use dynkv_rpc::{AddressBook, Dispatcher, PeerHealth};
use dynkv_storage::{Store, StoreConfig};

const TOKEN: &str = "fuzz-token";

/// A node's router and the runtime it runs on, built once per process.
pub struct Node {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    _dir: tempfile::TempDir,
}

/// One request, as the fuzzer describes it.
#[derive(Arbitrary, Debug)]
pub struct Input {
    method: u8,
    route: u8,
    path: String,
    query: String,
    context: Option<String>,
    accept_json: bool,
    content_type: Option<String>,
    idempotency_key: Option<String>,
    /// Whether `X-Dynkv-Token` carries the admin token.
    token: bool,
    body: Vec<u8>,
}

const ROUTES: &[&str] = &[
    "/kv/",
    "/kv/",
    "/kv/",
    "/admin/local/",
    "/admin/ring?key=",
    // Where `/rpc` was (the index keeps older inputs' routes): a
    // membership command, token-protected, with a JSON body.
    "/admin/join",
    "/admin/cluster",
    "/admin/",
    "/metrics",
    "/health",
    "/",
];

impl Node {
    /// The shared node.
    pub fn get() -> &'static Node {
        static NODE: OnceLock<Node> = OnceLock::new();
        NODE.get_or_init(Node::start)
    }

    fn start() -> Node {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::Builder::new()
            .prefix("dynkv-fuzz-")
            .tempdir()
            .expect("temp dir");
        let me = NodeId::from("n1".to_string());
        let ring = Ring::new(vec![me.clone()], 16).expect("ring");
        let store = Arc::new(Store::open(&StoreConfig::new(dir.path()), None).expect("store"));
        let net = SimNetwork::new();
        let coord = Coordinator::new(
            me.clone(),
            ring,
            store,
            Arc::new(net.transport(me.clone())),
            Arc::new(PeerHealth::new(me.clone(), vec![me.clone()], 1)),
            CoordinatorConfig {
                default_timeout: Duration::from_millis(500),
                rpc_timeout: Duration::from_millis(100),
                read_repair_wait: Duration::from_millis(10),
                ..CoordinatorConfig::default()
            },
            Arc::new(QuorumMetrics::default()),
        );
        // Internode requests (none on a one-node ring, but the coordinator
        // may call itself) reach its handlers over the simulated network.
        let mut dispatcher = Dispatcher::new();
        coord.register(&mut dispatcher);
        net.register(me.clone(), Arc::new(dispatcher));
        let state = AppState {
            coord,
            views: Arc::new(Vec::new()),
            book: Arc::new(AddressBook::new(vec![(me, "127.0.0.1:9".to_string())])),
            limits: Limits {
                max_value_bytes: 4096,
                max_timeout_ms: 1000,
                ..Limits::default()
            },
            admin_token: TOKEN.into(),
            metrics: Arc::new(HttpMetrics::default()),
            registry: Arc::new(Default::default()),
            inflight: Arc::new(tokio::sync::Semaphore::new(64)),
            membership: None,
            context_key: dynkv_api::ContextKey::new([9; 32]),
            security: Default::default(),
            riak: Default::default(),
            overview: Default::default(),
            directory: None,
        };
        let app = router(state);
        Node { rt, app, _dir: dir }
    }

    /// Decodes `data` into a request and serves it.
    pub fn serve_bytes(&self, data: &[u8]) {
        if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
            self.serve(&input);
        }
    }

    /// Serves one request and checks the answer.
    pub fn serve(&self, input: &Input) {
        let method = match input.method % 5 {
            0 | 1 => Method::GET,
            2 => Method::PUT,
            3 => Method::DELETE,
            _ => Method::POST,
        };
        let mut uri = String::from(ROUTES[input.route as usize % ROUTES.len()]);
        uri.push_str(&input.path);
        if !input.query.is_empty() {
            uri.push(if uri.contains('?') { '&' } else { '?' });
            uri.push_str(&input.query);
        }
        // What hyper would have refused never reaches the router.
        let Ok(uri) = uri.parse::<Uri>() else {
            return;
        };
        let mut req = Request::builder().method(method).uri(uri);
        let mut header = |name: &str, v: &Option<String>| {
            if let Some(v) = v
                && let Ok(v) = HeaderValue::from_str(v)
            {
                req = std::mem::take(&mut req).header(name, v);
            }
        };
        header("x-dynkv-context", &input.context);
        header("content-type", &input.content_type);
        header("idempotency-key", &input.idempotency_key);
        if input.accept_json {
            req = req.header("accept", "application/json");
        }
        if input.token {
            req = req.header(ADMIN_TOKEN_HEADER, TOKEN);
        }
        let Ok(req) = req.body(Body::from(input.body.clone())) else {
            return;
        };
        let desc = format!("{} {}", req.method(), req.uri());
        let mut app = self.app.clone();
        let resp = self
            .rt
            .block_on(async move {
                tokio::time::timeout(Duration::from_secs(5), tower::Service::call(&mut app, req))
                    .await
            })
            .unwrap_or_else(|_| panic!("{desc}: no answer within 5 s"))
            .expect("infallible");
        let status = resp.status();
        let body = self
            .rt
            .block_on(axum::body::to_bytes(resp.into_body(), 1 << 20))
            .expect("a readable body");
        assert!(
            status.as_u16() != 500,
            "{desc}: 500 {}",
            String::from_utf8_lossy(&body)
        );
        // The README's contract: every error body is JSON with a `code`.
        if status.is_client_error() || status.is_server_error() {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert!(
                v["code"].is_string(),
                "{desc}: error {status} without a JSON code: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}
