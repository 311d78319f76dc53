//! The command-line client, on `dynkv-client`: `get`, `put` and `delete`
//! route each request to a replica of its key (the ring comes from
//! `GET /ring` on the node given by --node), carry an idempotency key on
//! writes and retry what is safe; `status` and `admin` speak to the node
//! given by --node through the same connections.
//!
//! Reads print the value on stdout and the context token on stderr
//! (`context: ...`); with siblings they print every sibling and the context.
//! To resolve siblings, write the value you choose with `--context`.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use dynkv_client::{
    Auth, Client, Context, Fetched, Quorum, ReadOptions, Routing, Sibling, Watched, WriteOptions,
};
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};

/// Which node to talk to, and how.
#[derive(Args, Clone)]
pub struct NodeArg {
    /// Base URL of any node.
    #[arg(
        long,
        env = "DYNKV_NODE",
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    pub node: String,
    /// Once security is enabled: the user to authenticate as (HTTP Basic).
    #[arg(long, env = "DYNKV_USER", global = true)]
    pub auth_user: Option<String>,
    /// The password of --auth-user.
    #[arg(long, env = "DYNKV_PASSWORD", global = true, hide_env_values = true)]
    pub auth_password: Option<String>,
    /// Once security is enabled: a bearer token (`dynkv admin token create`)
    /// instead of --auth-user.
    #[arg(long, env = "DYNKV_TOKEN", global = true, hide_env_values = true)]
    pub auth_token: Option<String>,
    /// For https:// nodes: the CA certificate (PEM) to trust instead of
    /// the system's roots (`dynkv admin certs` writes ca.pem).
    #[arg(long, env = "DYNKV_TLS_CA", global = true)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Send get/put/delete to --node only, instead of to a replica of the
    /// key found through the ring.
    #[arg(long, global = true)]
    pub direct: bool,
}

impl NodeArg {
    fn has_credentials(&self) -> bool {
        self.auth_user.is_some() || self.auth_token.is_some()
    }

    /// A client for this node: token-aware (direct with --direct), with
    /// the credentials given when `with_auth`, retrying `retries` times.
    fn client(&self, retries: u32, with_auth: bool) -> Result<Client, String> {
        self.client_routed(retries, with_auth, self.direct)
    }

    fn client_routed(&self, retries: u32, with_auth: bool, direct: bool) -> Result<Client, String> {
        let mut b = Client::builder([self.node.as_str()])
            .retries(retries)
            .backoff(Duration::from_millis(200), Duration::from_secs(5))
            .content_type("text/plain");
        if direct {
            b = b.routing(Routing::Direct);
        }
        if let Some(ca) = &self.tls_ca {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            b = b.tls_ca_pem(pem);
        }
        if with_auth {
            match (&self.auth_user, &self.auth_token) {
                (Some(u), _) => {
                    b = b.auth(Auth::Basic {
                        user: u.clone(),
                        password: self.auth_password.clone().unwrap_or_default(),
                    })
                }
                (None, Some(t)) => b = b.auth(Auth::Bearer(t.clone())),
                (None, None) => {}
            }
        }
        b.build().map_err(|e| e.to_string())
    }

    /// One request outside the key-value API to this node: `body` as
    /// JSON, the admin token in `X-Dynkv-Token` when given (else the
    /// user's credentials). Answers the JSON body of a success, or the
    /// status and body of a refusal.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        admin_token: Option<&str>,
    ) -> Result<serde_json::Value, String> {
        let client = self.client_routed(0, admin_token.is_none(), true)?;
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = admin_token {
            req = req.header(dynkv_api::ADMIN_TOKEN_HEADER, t);
        }
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = client
            .send_to(&self.node, req)
            .await
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(serde_json::from_slice(resp.body()).unwrap_or_default())
        } else {
            Err(format!(
                "{}: {}",
                resp.status(),
                String::from_utf8_lossy(resp.body())
            ))
        }
    }
}

/// `dynkv get`.
#[derive(Args)]
pub struct GetArgs {
    /// The key.
    pub key: String,
    #[command(flatten)]
    node: NodeArg,
    /// Replies needed: one, quorum, all or a number.
    #[arg(long, value_parser = parse_quorum)]
    r: Option<Quorum>,
    /// Count only primary replicas (strict quorum).
    #[arg(long)]
    strict: bool,
    /// Print the raw JSON sibling view.
    #[arg(long)]
    json: bool,
    /// Session read: only answer with a state that includes this context
    /// (the one printed by your last put or get), else fail as stale.
    #[arg(long)]
    after: Option<String>,
    /// Retries with backoff on timeouts, lost connections and 503.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Print the node that answered and the replica report
    /// (`X-Dynkv-Replicas`) on stderr.
    #[arg(short, long)]
    verbose: bool,
    /// Wait for versions the context (--context, else the current one) has
    /// not seen, printing each, until interrupted.
    #[arg(long)]
    watch: bool,
    /// With --watch: the context to watch from.
    #[arg(long)]
    context: Option<String>,
    /// With --watch: how long one watch request waits before asking again.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// With --watch: stop after the first new version.
    #[arg(long)]
    once: bool,
}

/// `dynkv put`.
#[derive(Args)]
pub struct PutArgs {
    /// The key.
    pub key: String,
    /// The value (or use --file; `-` reads stdin).
    pub value: Option<String>,
    /// Read the value from a file.
    #[arg(long)]
    file: Option<std::path::PathBuf>,
    #[command(flatten)]
    node: NodeArg,
    /// Context token from a previous read (omit for a blind write).
    #[arg(long)]
    context: Option<String>,
    /// Acknowledgements needed.
    #[arg(long, value_parser = parse_quorum)]
    w: Option<Quorum>,
    /// Count only primary replicas (strict quorum).
    #[arg(long)]
    strict: bool,
    /// Content-Type stored with the value.
    #[arg(long, default_value = "text/plain")]
    content_type: String,
    /// Retries on timeouts, lost connections and 503, with backoff (the
    /// write carries an Idempotency-Key, so retrying is safe).
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Print the node that answered and the replica report on stderr.
    #[arg(short, long)]
    verbose: bool,
}

/// `dynkv delete`.
#[derive(Args)]
pub struct DeleteArgs {
    /// The key.
    pub key: String,
    #[command(flatten)]
    node: NodeArg,
    /// Context token from a previous read.
    #[arg(long)]
    context: Option<String>,
    /// Acknowledgements needed.
    #[arg(long, value_parser = parse_quorum)]
    w: Option<Quorum>,
    /// Retries with backoff (safe: the delete carries an Idempotency-Key).
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Print the node that answered and the replica report on stderr.
    #[arg(short, long)]
    verbose: bool,
}

fn parse_quorum(s: &str) -> Result<Quorum, String> {
    Quorum::parse(s).ok_or_else(|| format!("{s:?}: give one, quorum, all or a number from 1"))
}

fn parse_context(token: Option<&str>) -> Result<Option<Context>, String> {
    match token {
        None => Ok(None),
        Some(t) => Context::from_token(t)
            .map(Some)
            .ok_or_else(|| format!("not a context token: {t:?}")),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("dynkv: {msg}");
    ExitCode::FAILURE
}

fn verbose_report(node: &str, replicas: Option<dynkv_client::ReplicaReport>) {
    eprintln!("node: {node}");
    if let Some(r) = replicas {
        eprintln!("replicas: {r}");
    }
}

fn sibling_json(s: &Sibling) -> serde_json::Value {
    use base64::Engine as _;
    let (value, encoding) = match std::str::from_utf8(&s.value) {
        Ok(t) => (t.to_string(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&s.value),
            "base64",
        ),
    };
    serde_json::json!({
        "value": value,
        "encoding": encoding,
        "content_type": s.content_type,
        "deleted": s.deleted,
    })
}

/// Prints a read: the value and its context, or every sibling and how to
/// resolve them; false when the key holds nothing.
fn print_fetched(key: &str, f: &Fetched, json: bool) -> bool {
    let ctx = f.context.as_ref().map(Context::as_str).unwrap_or("");
    if json {
        let sibs: Vec<serde_json::Value> = f.siblings.iter().map(sibling_json).collect();
        println!("{}", serde_json::json!({"context": ctx, "siblings": sibs}));
        return f.status != StatusCode::NOT_FOUND;
    }
    match f.status {
        StatusCode::NOT_FOUND => {
            eprintln!("not found\ncontext: {ctx}");
            false
        }
        StatusCode::MULTIPLE_CHOICES => {
            print_siblings(&f.siblings);
            println!("resolve with: dynkv put {key} <value> --context {ctx}");
            true
        }
        _ => {
            use std::io::Write;
            let value = f
                .siblings
                .first()
                .map(|s| s.value.clone())
                .unwrap_or_default();
            let _ = std::io::stdout().write_all(&value);
            println!();
            eprintln!("context: {ctx}");
            true
        }
    }
}

/// `dynkv get KEY`.
pub async fn get(a: GetArgs) -> ExitCode {
    let client = match a.node.client(a.retries, true) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if a.watch {
        return watch(&client, &a).await;
    }
    let opts = ReadOptions {
        r: a.r,
        sloppy: a.strict.then_some(false),
        after: match parse_context(a.after.as_deref()) {
            Ok(c) => c,
            Err(e) => return fail(e),
        },
        ..Default::default()
    };
    match client.get_with(&a.key, &opts).await {
        Ok(f) => {
            if a.verbose {
                verbose_report(&f.node, f.replicas);
            }
            if print_fetched(&a.key, &f, a.json) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(e),
    }
}

/// Least time between two watch requests that found nothing new.
const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// `dynkv get KEY --watch`: prints every new version until interrupted
/// (or the first one with --once).
async fn watch(client: &Client, a: &GetArgs) -> ExitCode {
    let mut ctx = match parse_context(a.context.as_deref().or(a.after.as_deref())) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let timeout = Duration::from_millis(a.timeout_ms.max(1));
    let run = async {
        loop {
            // Without a context the first watch answers at once with the
            // current state, whose context the next one waits past.
            let asked = std::time::Instant::now();
            match client.watch(&a.key, ctx.as_ref(), timeout).await {
                Ok(Watched::Unchanged) => {
                    // A node that does not hold watches answers at once:
                    // ask again after a pause rather than in a hot loop.
                    let pause = MIN_WATCH_INTERVAL.saturating_sub(asked.elapsed());
                    tokio::time::sleep(pause).await;
                }
                Ok(Watched::Changed(f)) => {
                    if a.verbose {
                        verbose_report(&f.node, f.replicas);
                    }
                    print_fetched(&a.key, &f, a.json);
                    let first_read = ctx.is_none();
                    ctx = f.context.clone();
                    if a.once && !first_read {
                        return ExitCode::SUCCESS;
                    }
                }
                Err(e) => return fail(e),
            }
        }
    };
    tokio::select! {
        code = run => code,
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
    }
}

fn write_options(w: Option<Quorum>, strict: bool, content_type: Option<String>) -> WriteOptions {
    WriteOptions {
        w,
        sloppy: strict.then_some(false),
        content_type,
        ..Default::default()
    }
}

fn print_written(w: &dynkv_client::Written, verbose: bool) -> ExitCode {
    if verbose {
        verbose_report(&w.node, w.replicas);
    }
    if !w.siblings.is_empty() {
        // The write left siblings: show them, as a read would.
        print_siblings(&w.siblings);
    }
    println!(
        "context: {}",
        w.context.as_ref().map(Context::as_str).unwrap_or("")
    );
    ExitCode::SUCCESS
}

/// `dynkv put KEY VALUE`.
pub async fn put(a: PutArgs) -> ExitCode {
    let body: Vec<u8> = match (&a.value, &a.file) {
        (Some(v), None) if v == "-" => {
            let mut buf = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
                return fail(e);
            }
            buf
        }
        (Some(v), None) => v.clone().into_bytes(),
        (None, Some(f)) => match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => return fail(format!("{}: {e}", f.display())),
        },
        _ => return fail("give the value as an argument or with --file (not both)"),
    };
    let (client, ctx) = match (
        a.node.client(a.retries, true),
        parse_context(a.context.as_deref()),
    ) {
        (Ok(c), Ok(x)) => (c, x),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let opts = write_options(a.w, a.strict, Some(a.content_type.clone()));
    match client.put_with(&a.key, body, ctx.as_ref(), &opts).await {
        Ok(w) => print_written(&w, a.verbose),
        Err(e) => fail(e),
    }
}

/// `dynkv delete KEY`.
pub async fn delete(a: DeleteArgs) -> ExitCode {
    let (client, ctx) = match (
        a.node.client(a.retries, true),
        parse_context(a.context.as_deref()),
    ) {
        (Ok(c), Ok(x)) => (c, x),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let opts = write_options(a.w, false, None);
    match client.delete_with(&a.key, ctx.as_ref(), &opts).await {
        Ok(w) => print_written(&w, a.verbose),
        Err(e) => fail(e),
    }
}

fn print_siblings(sibs: &[Sibling]) {
    println!("{} siblings:", sibs.len());
    for (i, s) in sibs.iter().enumerate() {
        let deleted = if s.deleted { " (deleted)" } else { "" };
        println!("  [{i}] {}{deleted}", String::from_utf8_lossy(&s.value));
    }
}

/// `dynkv status`.
pub async fn status(a: NodeArg) -> ExitCode {
    match a.call(Method::GET, "/admin/cluster", None, None).await {
        Ok(v) => {
            println!(
                "node {}  (n_val {}, {} partitions)",
                v["node"].as_str().unwrap_or("?"),
                v["n_val"],
                v["partitions"]
            );
            for m in v["members"].as_array().cloned().unwrap_or_default() {
                println!(
                    "  {:<8} {:<22} {:<5} owns {:>3} partitions",
                    m["id"].as_str().unwrap_or("?"),
                    m["addr"].as_str().unwrap_or("?"),
                    if m["up"].as_bool() == Some(true) {
                        "up"
                    } else {
                        "DOWN"
                    },
                    m["partitions_owned"]
                );
            }
            println!("hints pending: {}", v["hints_total"]);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `dynkv admin ...`: membership commands and `compact` (they need the
/// cluster secret, from which the admin token they present is derived),
/// `secret`, and `workers` (an open view, like `dynkv status`).
#[derive(Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
    #[command(flatten)]
    node: NodeArg,
    /// A file holding the cluster secret in hex (`cluster.secret_file`).
    #[arg(long, env = "DYNKV_CLUSTER_SECRET_FILE", global = true)]
    secret_file: Option<std::path::PathBuf>,
    /// The cluster secret in hex (`cluster.secret`); prefer --secret-file,
    /// which keeps it out of the process list.
    #[arg(
        long,
        env = "DYNKV_CLUSTER_SECRET",
        global = true,
        hide_env_values = true
    )]
    secret: Option<String>,
}

impl AdminArgs {
    /// The admin token derived from the secret given on the command line.
    fn admin_token(&self) -> Result<String, String> {
        let hex = match (&self.secret_file, &self.secret) {
            (Some(f), _) => std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read {}: {e}", f.display()))?,
            (None, Some(s)) => s.clone(),
            (None, None) => {
                return Err(
                    "membership commands need the cluster secret: --secret-file FILE or DYNKV_CLUSTER_SECRET_FILE"
                        .into(),
                );
            }
        };
        dynkv_rpc::ClusterSecret::from_hex(&hex)
            .map(|s| s.admin_token())
            .map_err(|e| e.to_string())
    }
}

/// The membership commands.
#[derive(clap::Subcommand)]
pub enum AdminCommand {
    /// Make the node given by --node join the cluster of the member at SEED
    /// (its cluster address, host:port). The join is staged: run `plan` and
    /// `commit` next.
    Join {
        /// The cluster address (`node.cluster_advertise`) of any member.
        seed: String,
    },
    /// Stage a node's leave (default: the node given by --node).
    Leave {
        /// Node id to remove.
        id: Option<String>,
    },
    /// Show which partitions the staged changes would move.
    Plan,
    /// Commit the staged changes: ownership handoff starts.
    Commit,
    /// Show members, their status and the transition under way.
    Members,
    /// Show what the running membership change moves, as `riak-admin
    /// transfers`: per partition its sources, progress, rate and what it
    /// waits on; with --limit, set how many streams the node given by
    /// --node runs at once (0 pauses them).
    Transfers {
        /// New transfer limit of the node given by --node.
        #[arg(long)]
        limit: Option<usize>,
        /// Print the JSON of `/admin/transfers` as it is.
        #[arg(long)]
        json: bool,
    },
    /// Print a new random cluster secret (hex) for `cluster.secret_file`.
    Secret,
    /// Make a private CA and a node certificate for the public listeners
    /// (`node.tls_cert`, `node.tls_key`): writes ca.pem (what clients
    /// trust), node.pem and node.key into --dir. The CA key is not kept.
    Certs {
        /// Directory to write into.
        #[arg(long)]
        dir: std::path::PathBuf,
        /// Names and addresses the node certificate is valid for,
        /// comma-separated (e.g. n1,n2,localhost,127.0.0.1).
        #[arg(long, value_delimiter = ',', required = true)]
        hosts: Vec<String>,
        /// Days the certificates stay valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Compact the store of the node given by --node (its objects and
    /// digests), so the space of deleted keys and reaped tombstones comes
    /// back now. Rewrites the node's live data: run it node by node.
    Compact,
    /// List the background workers of the node given by --node with their
    /// state, steps, errors and counters (`GET /admin/workers`; like every
    /// `/admin` view it needs no secret).
    Workers {
        /// Print the JSON of `/admin/workers` as it is.
        #[arg(long)]
        json: bool,
    },
    /// Users, sources and grants, as `riak-admin security` (see
    /// `dynkv admin security --help`).
    #[command(subcommand)]
    Security(crate::security_cli::SecurityCommand),
    /// Bearer tokens for the native API.
    #[command(subcommand)]
    Token(crate::security_cli::TokenCommand),
    /// Bucket types, as `riak-admin bucket-type`: named property sets
    /// that buckets of the type inherit, kept in the cluster state.
    #[command(subcommand, name = "bucket-type")]
    BucketType(BucketTypeCommand),
}

/// `dynkv admin bucket-type ...`.
#[derive(clap::Subcommand)]
pub enum BucketTypeCommand {
    /// Create a type (not usable until activated), e.g.
    /// `create maps '{"props":{"datatype":"map"}}'`.
    Create {
        /// The type's name.
        name: String,
        /// `{"props": {...}}` (default: no properties beyond the defaults).
        props: Option<String>,
    },
    /// Make a created type usable.
    Activate {
        /// The type's name.
        name: String,
    },
    /// Change an active type's mutable properties.
    Update {
        /// The type's name.
        name: String,
        /// `{"props": {...}}`.
        props: String,
    },
    /// List every type and whether it is active.
    List,
    /// Show a type's status and properties.
    Status {
        /// The type's name.
        name: String,
    },
}

impl BucketTypeCommand {
    /// The request this command makes: method, path and JSON body.
    fn request(&self) -> Result<(Method, String, Option<String>), String> {
        let at = |name: &str, verb: &str| format!("/admin/bucket-types/{name}/{verb}");
        let body = |props: Option<&str>| -> Result<String, String> {
            let Some(p) = props else {
                return Ok("{}".into());
            };
            match serde_json::from_str::<serde_json::Value>(p) {
                Ok(v) if v.is_object() => Ok(v.to_string()),
                _ => Err(format!("not a JSON object {{\"props\": {{...}}}}: {p}")),
            }
        };
        Ok(match self {
            BucketTypeCommand::Create { name, props } => (
                Method::POST,
                at(name, "create"),
                Some(body(props.as_deref())?),
            ),
            BucketTypeCommand::Update { name, props } => {
                (Method::POST, at(name, "update"), Some(body(Some(props))?))
            }
            BucketTypeCommand::Activate { name } => (Method::POST, at(name, "activate"), None),
            BucketTypeCommand::List => (Method::GET, "/admin/bucket-types".into(), None),
            BucketTypeCommand::Status { name } => {
                (Method::GET, format!("/admin/bucket-types/{name}"), None)
            }
        })
    }

    /// Prints an answer as `riak-admin bucket-type` does.
    fn print(&self, v: &serde_json::Value) {
        let active = |v: &serde_json::Value| {
            if v["active"] == serde_json::Value::Bool(true) {
                "active"
            } else {
                "not active"
            }
        };
        match self {
            BucketTypeCommand::Create { name, .. } => println!("{name} created"),
            BucketTypeCommand::Activate { name } => println!("{name} has been activated"),
            BucketTypeCommand::Update { name, .. } => println!("{name} updated"),
            BucketTypeCommand::List => {
                for t in v["types"].as_array().into_iter().flatten() {
                    println!("{} ({})", t["name"].as_str().unwrap_or("?"), active(t));
                }
            }
            BucketTypeCommand::Status { name } => {
                println!("{name} is {}\n", active(v));
                for (k, p) in v["props"].as_object().into_iter().flatten() {
                    println!("{k}: {p}");
                }
            }
        }
    }
}

/// `dynkv admin`.
pub async fn admin(a: AdminArgs) -> ExitCode {
    if let AdminCommand::Secret = a.command {
        println!("{}", dynkv_rpc::ClusterSecret::generate().to_hex());
        return ExitCode::SUCCESS;
    }
    if let AdminCommand::Certs { dir, hosts, days } = &a.command {
        return match crate::certs::write(dir, hosts, *days) {
            Ok(()) => {
                println!(
                    "wrote {} into {}",
                    crate::certs::FILES.join(", "),
                    dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    if let AdminCommand::Workers { json } = a.command {
        return workers(&a.node, json).await;
    }
    if matches!(
        a.command,
        AdminCommand::Security(_) | AdminCommand::Token(_)
    ) {
        return security(&a).await;
    }
    let has_credentials = a.node.has_credentials();
    let token = match a.admin_token() {
        Ok(t) => Some(t),
        // A user holding dynkv.admin may stand in for the secret.
        Err(_) if has_credentials => None,
        Err(e) => return fail(e),
    };
    let json = |v: serde_json::Value| Some(v.to_string());
    let (method, path, body) = match &a.command {
        AdminCommand::Join { seed } => (
            Method::POST,
            "/admin/join".to_string(),
            json(serde_json::json!({ "seed": seed })),
        ),
        AdminCommand::Leave { id } => (
            Method::POST,
            "/admin/leave".to_string(),
            json(serde_json::json!({ "node": id })),
        ),
        AdminCommand::Plan => (Method::GET, "/admin/plan".to_string(), None),
        AdminCommand::Commit => (Method::POST, "/admin/commit".to_string(), None),
        AdminCommand::Compact => (Method::POST, "/admin/compact".to_string(), None),
        AdminCommand::Transfers {
            limit: Some(limit), ..
        } => (
            Method::POST,
            "/admin/transfer-limit".to_string(),
            json(serde_json::json!({ "limit": limit })),
        ),
        AdminCommand::Transfers { limit: None, .. } => {
            (Method::GET, "/admin/transfers".to_string(), None)
        }
        AdminCommand::BucketType(c) => match c.request() {
            Ok(r) => r,
            Err(e) => return fail(e),
        },
        AdminCommand::Members
        | AdminCommand::Secret
        | AdminCommand::Certs { .. }
        | AdminCommand::Workers { .. }
        | AdminCommand::Security(_)
        | AdminCommand::Token(_) => (Method::GET, "/admin/members".to_string(), None),
    };
    match a.node.call(method, &path, body, token.as_deref()).await {
        Ok(v) => {
            match a.command {
                AdminCommand::Plan => print_plan(&v),
                AdminCommand::Transfers { json: true, .. } => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default())
                }
                AdminCommand::Transfers { limit: Some(_), .. } => {
                    println!("transfer limit set to {}", v["transfer_limit"])
                }
                AdminCommand::Transfers { .. } => print_transfers(&v),
                AdminCommand::BucketType(c) => c.print(&v),
                AdminCommand::Compact => println!(
                    "{}: SST files {} -> {} bytes in {} ms",
                    v["node"].as_str().unwrap_or("?"),
                    v["sst_bytes_before"],
                    v["sst_bytes_after"],
                    v["duration_ms"]
                ),
                _ => print_members(&v),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `dynkv admin security ...` and `dynkv admin token ...`, authenticated
/// by the cluster secret or by `--user`/`--password`.
async fn security(a: &AdminArgs) -> ExitCode {
    use crate::security_cli::{print_security, security_request, token_request};
    let (verb, body) = match &a.command {
        AdminCommand::Security(c) => match security_request(c) {
            Ok((v, b)) => (v, b),
            Err(e) => return fail(e),
        },
        AdminCommand::Token(c) => match token_request(c) {
            Ok((v, b)) => (Some(v), b),
            Err(e) => return fail(e),
        },
        _ => unreachable!("only security and token commands come here"),
    };
    let (method, path, body) = match verb {
        Some(v) => (
            Method::POST,
            format!("/admin/security/{v}"),
            Some(body.to_string()),
        ),
        None => (Method::GET, "/admin/security".to_string(), None),
    };
    let has_credentials = a.node.has_credentials();
    let token = match (has_credentials, a.admin_token()) {
        (true, _) => None,
        (false, Ok(t)) => Some(t),
        (false, Err(e)) => {
            return fail(format!(
                "{e} (or --auth-user and --auth-password of a user holding dynkv.admin)"
            ));
        }
    };
    match a.node.call(method, &path, body, token.as_deref()).await {
        Ok(v) => {
            match &a.command {
                AdminCommand::Security(c) => print_security(c, &v),
                _ => {
                    if let Some(t) = v["created"]["token"].as_str() {
                        println!("{t}");
                        eprintln!(
                            "token for {} (id {}): shown once, only its hash is kept",
                            v["created"]["user"].as_str().unwrap_or("?"),
                            v["created"]["id"].as_str().unwrap_or("?")
                        );
                    } else {
                        println!("revoked");
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `dynkv admin workers`.
async fn workers(node: &NodeArg, json: bool) -> ExitCode {
    match node.call(Method::GET, "/admin/workers", None, None).await {
        Ok(v) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print_workers(&v, unix_ms_now());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One line per worker, as `garage worker list`: name, state, steps,
/// errors and when its last step ran; then what it is busy with, its last
/// error, why it is off, and its counters.
fn print_workers(v: &serde_json::Value, now_ms: u64) {
    let ago = |ms: &serde_json::Value| match ms.as_u64() {
        Some(t) => format!("{:.1}s ago", now_ms.saturating_sub(t) as f64 / 1000.0),
        None => "-".into(),
    };
    println!("node {}", v["node"].as_str().unwrap_or("?"));
    println!(
        "  {:<20} {:<10} {:>8} {:>7} {:>9}  last step",
        "worker", "state", "steps", "errors", "in a row"
    );
    for w in v["workers"].as_array().cloned().unwrap_or_default() {
        println!(
            "  {:<20} {:<10} {:>8} {:>7} {:>9}  {}",
            w["name"].as_str().unwrap_or("?"),
            w["state"].as_str().unwrap_or("?"),
            w["runs"].as_u64().unwrap_or(0),
            w["errors"].as_u64().unwrap_or(0),
            w["consecutive_errors"].as_u64().unwrap_or(0),
            ago(&w["last_run"]["started_unix_ms"]),
        );
        if let Some(b) = w["busy_with"].as_str() {
            println!("      busy with: {b}");
        }
        if let Some(n) = w["note"].as_str() {
            println!("      {n}");
        }
        if let Some(e) = w["last_error"]["message"].as_str() {
            println!(
                "      last error ({}): {e}",
                ago(&w["last_error"]["at_unix_ms"])
            );
        }
        if let Some(c) = w["counters"].as_object().filter(|c| !c.is_empty()) {
            let c: Vec<String> = c.iter().map(|(k, n)| format!("{k}={n}")).collect();
            println!("      {}", c.join(" "));
        }
    }
}

fn print_members(v: &serde_json::Value) {
    println!("cluster state version {}", v["version"]);
    for m in v["members"].as_array().cloned().unwrap_or_default() {
        let next = match m["partitions_owned_next"].as_u64() {
            Some(n) => format!(" -> {n}"),
            None => String::new(),
        };
        println!(
            "  {:<8} {:<22} {:<8} owns {:>3}{next} partitions",
            m["id"].as_str().unwrap_or("?"),
            m["addr"].as_str().unwrap_or("?"),
            m["status"].as_str().unwrap_or("?"),
            m["partitions_owned"]
        );
    }
    if let Some(t) = v["transition"].as_object() {
        println!(
            "transfers: {} of {} pending",
            t["transfers_pending"], t["transfers_total"]
        );
    }
}

fn print_plan(v: &serde_json::Value) {
    let staged = v["staged"].as_array().cloned().unwrap_or_default();
    if staged.is_empty() {
        println!("nothing staged");
    }
    for s in staged {
        println!(
            "staged: {} {}",
            s["id"].as_str().unwrap_or("?"),
            s["status"].as_str().unwrap_or("?")
        );
    }
    println!(
        "{} of {} partitions would change owner",
        v["partitions_moving"], v["partitions"]
    );
    if let Some(owned) = v["owned_after"].as_object() {
        for (node, n) in owned {
            println!("  {node:<8} would own {n}");
        }
    }
    if v["in_progress"] == true {
        println!("a change is in progress: wait for its transfers before committing another");
    }
}

/// Prints `/admin/transfers` as a table, as `riak-admin transfers` does.
fn print_transfers(v: &serde_json::Value) {
    println!(
        "epoch {}, {}; transfer limit {} on {}",
        v["epoch"],
        if v["in_progress"] == true {
            format!(
                "{} of {} transfers pending",
                v["transfers_pending"], v["transfers_total"]
            )
        } else {
            "no change in progress".to_string()
        },
        v["transfer_limit"],
        v["node"].as_str().unwrap_or("?")
    );
    let names = |x: &serde_json::Value| {
        x.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let rows = v["transfers"].as_array().cloned().unwrap_or_default();
    if !rows.is_empty() {
        println!(
            "{:>9}  {:<8} {:<14} {:<14} {:>9} {:>9}  waiting on",
            "partition", "to", "sources", "streamed", "sent", "obj/s"
        );
    }
    for t in rows.iter().filter(|t| t["complete"] != true) {
        println!(
            "{:>9}  {:<8} {:<14} {:<14} {:>9} {:>9}  {}",
            t["partition"],
            t["target"].as_str().unwrap_or("?"),
            names(&t["sources"]),
            names(&t["streamed_by"]),
            t["objects_sent_here"]
                .as_u64()
                .map_or("-".into(), |n| n.to_string()),
            t["rate_per_s_here"]
                .as_f64()
                .map_or("-".into(), |r| format!("{r:.0}")),
            t["blocker"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("sources {}", names(&t["waiting_for"])))
        );
    }
    let done = rows.iter().filter(|t| t["complete"] == true).count();
    if done > 0 {
        println!("{done} transfers complete");
    }
    let owed = names(&v["hints_owed_by"]);
    if !owed.is_empty() {
        println!("leaving nodes still handing over hints: {owed}");
    }
    let c = &v["cleanup"];
    println!(
        "cleanup after the last change: {} (applied by {}; cleaned up by {})",
        if c["settled"] == true {
            "done"
        } else {
            "pending"
        },
        names(&c["applied"]),
        names(&c["cleaned"])
    );
}
