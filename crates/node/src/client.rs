//! The command-line client: speaks the public HTTP API of any node.
//!
//! Reads print the value on stdout and the context token on stderr
//! (`context: ...`); with siblings they print every sibling and the context.
//! To resolve siblings, write the value you choose with `--context`.

use std::io::Read;
use std::process::ExitCode;

use std::time::Duration;

use clap::Args;
use dynkv_rpc::retry::Backoff;
use reqwest::{StatusCode, Url};

/// Which node to talk to.
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
}

impl NodeArg {
    /// Adds the credentials given, if any, to a request.
    pub fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.auth_user, &self.auth_token) {
            (Some(u), _) => req.basic_auth(u, self.auth_password.as_deref()),
            (None, Some(t)) => req.bearer_auth(t),
            (None, None) => req,
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
    #[arg(long)]
    r: Option<String>,
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
    #[arg(long)]
    w: Option<String>,
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
    #[arg(long)]
    w: Option<String>,
    /// Retries with backoff (safe: the delete carries an Idempotency-Key).
    #[arg(long, default_value_t = 3)]
    retries: u32,
}

fn key_url(node: &str, key: &str, params: &[(&str, Option<&str>)]) -> Result<Url, String> {
    let mut url = Url::parse(node).map_err(|e| format!("bad --node URL {node:?}: {e}"))?;
    url.path_segments_mut()
        .map_err(|_| format!("bad --node URL {node:?}"))?
        .pop_if_empty()
        .push("kv")
        .push(key);
    for (k, v) in params {
        if let Some(v) = v {
            url.query_pairs_mut().append_pair(k, v);
        }
    }
    Ok(url)
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("dynkv: {msg}");
    ExitCode::FAILURE
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

async fn error_body(resp: reqwest::Response) -> String {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    format!("{status}: {text}")
}

/// `dynkv get KEY`.
pub async fn get(a: GetArgs) -> ExitCode {
    let sloppy = a.strict.then_some("false");
    let url = match key_url(
        &a.node.node,
        &a.key,
        &[("r", a.r.as_deref()), ("sloppy", sloppy)],
    ) {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    let mut req = a
        .node
        .authorize(client().get(url).header("accept", "application/json"));
    if let Some(ctx) = &a.after {
        req = req.header("x-dynkv-context", ctx);
    }
    let resp = match send_with_retries(req, a.retries).await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let ctx = resp
        .headers()
        .get("x-dynkv-context")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    match resp.status() {
        StatusCode::OK => {
            let body = resp.bytes().await.unwrap_or_default();
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"context": ctx, "siblings": [{"value": String::from_utf8_lossy(&body)}]})
                );
            } else {
                use std::io::Write;
                let _ = std::io::stdout().write_all(&body);
                println!();
                eprintln!("context: {ctx}");
            }
            ExitCode::SUCCESS
        }
        StatusCode::MULTIPLE_CHOICES => {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            if a.json {
                println!("{body}");
            } else {
                print_siblings(&body);
                println!(
                    "resolve with: dynkv put {} <value> --context {}",
                    a.key,
                    body["context"].as_str().unwrap_or("")
                );
            }
            ExitCode::SUCCESS
        }
        StatusCode::NOT_FOUND => {
            eprintln!("not found\ncontext: {ctx}");
            ExitCode::from(1)
        }
        _ => fail(error_body(resp).await),
    }
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
    let sloppy = a.strict.then_some("false");
    let url = match key_url(
        &a.node.node,
        &a.key,
        &[("w", a.w.as_deref()), ("sloppy", sloppy)],
    ) {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    let mut req = a
        .node
        .authorize(client().put(url))
        .header("content-type", &a.content_type)
        .body(body);
    if let Some(c) = &a.context {
        req = req.header("x-dynkv-context", c);
    }
    write_outcome(req, a.retries).await
}

/// `dynkv delete KEY`.
pub async fn delete(a: DeleteArgs) -> ExitCode {
    let url = match key_url(&a.node.node, &a.key, &[("w", a.w.as_deref())]) {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    let mut req = a.node.authorize(client().delete(url));
    if let Some(c) = &a.context {
        req = req.header("x-dynkv-context", c);
    }
    write_outcome(req, a.retries).await
}

/// Sends a request, retrying what may succeed later (no connection, a
/// timeout, 503) with capped exponential backoff and full jitter. Writes
/// carry an `Idempotency-Key`, so a retry of a write that was in fact
/// applied is recognised and not applied twice.
async fn send_with_retries(
    req: reqwest::RequestBuilder,
    retries: u32,
) -> Result<reqwest::Response, String> {
    let backoff = Backoff {
        base: Duration::from_millis(200),
        max: Duration::from_secs(5),
    };
    let mut attempt = 0;
    loop {
        let this = req.try_clone().ok_or("request body cannot be retried")?;
        let retry_after = match this.send().await {
            Ok(resp) if resp.status() == StatusCode::SERVICE_UNAVAILABLE && attempt < retries => {
                resp.headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs)
            }
            Ok(resp) => return Ok(resp),
            Err(e) if attempt < retries && (e.is_connect() || e.is_timeout()) => None,
            Err(e) => return Err(e.to_string()),
        };
        let delay = retry_after.unwrap_or_else(|| backoff.jittered(attempt));
        eprintln!(
            "dynkv: attempt {} failed; retrying in {delay:?}",
            attempt + 1
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

fn idempotency_key() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

async fn write_outcome(req: reqwest::RequestBuilder, retries: u32) -> ExitCode {
    let req = req.header("idempotency-key", idempotency_key());
    match send_with_retries(req, retries).await {
        Ok(resp) if resp.status().is_success() => {
            let ctx = resp
                .headers()
                .get("x-dynkv-context")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if resp.status() == StatusCode::OK {
                // The write left siblings: show them, as a read would.
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                print_siblings(&body);
            }
            println!("context: {ctx}");
            ExitCode::SUCCESS
        }
        Ok(resp) => fail(error_body(resp).await),
        Err(e) => fail(e),
    }
}

fn print_siblings(body: &serde_json::Value) {
    let sibs = body["siblings"].as_array().cloned().unwrap_or_default();
    println!("{} siblings:", sibs.len());
    for (i, s) in sibs.iter().enumerate() {
        let deleted = if s["deleted"].as_bool() == Some(true) {
            " (deleted)"
        } else {
            ""
        };
        println!("  [{i}] {}{deleted}", s["value"].as_str().unwrap_or(""));
    }
}

/// `dynkv status`.
pub async fn status(a: NodeArg) -> ExitCode {
    let url = format!("{}/admin/cluster", a.node.trim_end_matches('/'));
    match a.authorize(client().get(&url)).send().await {
        Ok(resp) if resp.status().is_success() => {
            let v: serde_json::Value = resp.json().await.unwrap_or_default();
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
        Ok(resp) => fail(error_body(resp).await),
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
    /// The request this command makes against `base`.
    fn request(
        &self,
        http: &reqwest::Client,
        base: &str,
    ) -> Result<reqwest::RequestBuilder, String> {
        let at = |name: &str, verb: &str| format!("{base}/admin/bucket-types/{name}/{verb}");
        let body = |props: Option<&str>| -> Result<String, String> {
            let Some(p) = props else {
                return Ok("{}".into());
            };
            match serde_json::from_str::<serde_json::Value>(p) {
                Ok(v) if v.is_object() => Ok(v.to_string()),
                _ => Err(format!("not a JSON object {{\"props\": {{...}}}}: {p}")),
            }
        };
        let json = |r: reqwest::RequestBuilder, b: String| {
            r.header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b)
        };
        Ok(match self {
            BucketTypeCommand::Create { name, props } => {
                json(http.post(at(name, "create")), body(props.as_deref())?)
            }
            BucketTypeCommand::Update { name, props } => {
                json(http.post(at(name, "update")), body(Some(props))?)
            }
            BucketTypeCommand::Activate { name } => http.post(at(name, "activate")),
            BucketTypeCommand::List => http.get(format!("{base}/admin/bucket-types")),
            BucketTypeCommand::Status { name } => {
                http.get(format!("{base}/admin/bucket-types/{name}"))
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
    let has_credentials = a.node.auth_user.is_some() || a.node.auth_token.is_some();
    let token = match a.admin_token() {
        Ok(t) => Some(t),
        // A user holding dynkv.admin may stand in for the secret.
        Err(_) if has_credentials => None,
        Err(e) => return fail(e),
    };
    let base = a.node.node.trim_end_matches('/').to_string();
    let http = client();
    let req = match &a.command {
        AdminCommand::Join { seed } => http
            .post(format!("{base}/admin/join"))
            .json(&serde_json::json!({ "seed": seed })),
        AdminCommand::Leave { id } => http
            .post(format!("{base}/admin/leave"))
            .json(&serde_json::json!({ "node": id })),
        AdminCommand::Plan => http.get(format!("{base}/admin/plan")),
        AdminCommand::Commit => http.post(format!("{base}/admin/commit")),
        AdminCommand::Compact => http.post(format!("{base}/admin/compact")),
        AdminCommand::Transfers {
            limit: Some(limit), ..
        } => http
            .post(format!("{base}/admin/transfer-limit"))
            .json(&serde_json::json!({ "limit": limit })),
        AdminCommand::Transfers { limit: None, .. } => http.get(format!("{base}/admin/transfers")),
        AdminCommand::BucketType(c) => match c.request(&http, &base) {
            Ok(r) => r,
            Err(e) => return fail(e),
        },
        AdminCommand::Members
        | AdminCommand::Secret
        | AdminCommand::Certs { .. }
        | AdminCommand::Workers { .. }
        | AdminCommand::Security(_)
        | AdminCommand::Token(_) => http.get(format!("{base}/admin/members")),
    };
    let req = match token {
        Some(t) => req.header(dynkv_api::ADMIN_TOKEN_HEADER, t),
        None => a.node.authorize(req),
    };
    match req.send().await {
        Ok(resp) if resp.status().is_success() => {
            let v: serde_json::Value = resp.json().await.unwrap_or_default();
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
        Ok(resp) => fail(error_body(resp).await),
        Err(e) => fail(e),
    }
}

/// `dynkv admin security ...` and `dynkv admin token ...`, authenticated
/// by the cluster secret or by `--user`/`--password`.
async fn security(a: &AdminArgs) -> ExitCode {
    use crate::security_cli::{print_security, security_request, token_request};
    let base = a.node.node.trim_end_matches('/').to_string();
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
    let http = client();
    let mut req = match verb {
        Some(v) => http.post(format!("{base}/admin/security/{v}")).json(&body),
        None => http.get(format!("{base}/admin/security")),
    };
    let has_credentials = a.node.auth_user.is_some() || a.node.auth_token.is_some();
    match (has_credentials, a.admin_token()) {
        (true, _) => req = a.node.authorize(req),
        (false, Ok(t)) => req = req.header(dynkv_api::ADMIN_TOKEN_HEADER, t),
        (false, Err(e)) => {
            return fail(format!(
                "{e} (or --auth-user and --auth-password of a user holding dynkv.admin)"
            ));
        }
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => {
            let v: serde_json::Value = resp.json().await.unwrap_or_default();
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
        Ok(resp) => fail(error_body(resp).await),
        Err(e) => fail(e),
    }
}

/// `dynkv admin workers`.
async fn workers(node: &NodeArg, json: bool) -> ExitCode {
    let url = format!("{}/admin/workers", node.node.trim_end_matches('/'));
    match node.authorize(client().get(&url)).send().await {
        Ok(resp) if resp.status().is_success() => {
            let v: serde_json::Value = resp.json().await.unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print_workers(&v, unix_ms_now());
            }
            ExitCode::SUCCESS
        }
        Ok(resp) => fail(error_body(resp).await),
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
