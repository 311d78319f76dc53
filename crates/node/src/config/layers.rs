//! Loading the layers (embedded defaults → node file → `DYNKV__...`
//! variables), remembering where every value came from, and accepting the
//! duration keys of the previous release (`rpc_timeout_ms = 1000`, now
//! `rpc_timeout = "1s"`) with a warning that names the new key.
//!
//! Between an old and a new key, the later layer wins; within one layer the
//! new key wins (the old one is reported as ignored). Scripts and compose
//! files that set the old variables keep working, and a new variable set
//! beside them overrides them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use config::{Source, Value, ValueKind};

use super::{ConfigError, DEFAULT_TOML};

/// The duration settings whose key changed: `(section, new key, old unit)`.
/// The old key is the new one with `_ms` or `_s` appended, an integer in
/// that unit. Accepted for one more release, with a warning.
pub const LEGACY_DURATIONS: &[(&str, &str, Unit)] = &[
    ("quorum", "request_timeout", Unit::Ms),
    ("quorum", "rpc_timeout", Unit::Ms),
    ("quorum", "rpc_connect_timeout", Unit::Ms),
    ("quorum", "idempotency_window", Unit::S),
    ("storage", "sync_interval", Unit::Ms),
    ("storage", "tombstone_grace", Unit::Ms),
    ("storage", "reap_interval", Unit::Ms),
    ("storage", "reap_settle", Unit::Ms),
    ("limits", "max_timeout", Unit::Ms),
    ("failure_detector", "ping_interval", Unit::Ms),
    ("failure_detector", "ping_timeout", Unit::Ms),
    ("failure_detector", "breaker_cooldown", Unit::Ms),
    ("handoff", "interval", Unit::Ms),
    ("handoff", "hint_window", Unit::Ms),
    ("handoff", "backoff_base", Unit::Ms),
    ("handoff", "backoff_max", Unit::Ms),
    ("read_repair", "wait", Unit::Ms),
    ("antientropy", "exchange_interval", Unit::Ms),
    ("antientropy", "batch_pause", Unit::Ms),
    ("antientropy", "rebuild_interval", Unit::S),
    ("membership", "gossip_interval", Unit::Ms),
    ("membership", "transfer_pause", Unit::Ms),
    ("membership", "cleanup_grace", Unit::Ms),
    ("internode", "handshake_timeout", Unit::Ms),
    ("internode", "reconnect_backoff_max", Unit::Ms),
];

/// The unit of an old duration key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// `_ms`: milliseconds.
    Ms,
    /// `_s`: seconds.
    S,
}

impl Unit {
    fn suffix(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::S => "s",
        }
    }

    fn duration(self, n: u64) -> Duration {
        match self {
            Unit::Ms => Duration::from_millis(n),
            Unit::S => Duration::from_secs(n),
        }
    }
}

/// Where a value came from, in precedence order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Defaults,
    File,
    Env,
}

/// Where each setting came from, and the warnings of the load.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    file: Option<String>,
    /// Key → the layer that set it.
    layers: HashMap<String, Layer>,
    /// New key → the old key its value was read from.
    legacy: HashMap<String, String>,
    /// What the operator should change: deprecated keys, ignored keys.
    pub warnings: Vec<String>,
}

impl Sources {
    /// Where `key` (`section.key`) came from: `file node.toml`,
    /// `environment variable DYNKV__QUORUM__W` or `the defaults`.
    pub fn origin(&self, key: &str) -> String {
        let name = self.legacy.get(key).map_or(key, String::as_str);
        match self.layers.get(key) {
            Some(Layer::Env) => format!("environment variable {}", env_var(name)),
            Some(Layer::File) => format!(
                "file {}",
                self.file.as_deref().unwrap_or("given with --config")
            ),
            _ => "the defaults".into(),
        }
    }

    /// `key` as the operator wrote it (the old key when that was used),
    /// with where it came from: `quorum.w (file node.toml)`.
    pub fn describe(&self, key: &str) -> String {
        let name = self.legacy.get(key).map_or(key, String::as_str);
        format!("{name} ({})", self.origin(key))
    }
}

/// The environment variable of `section.key`.
pub fn env_var(key: &str) -> String {
    format!("DYNKV__{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// The layers merged, with the old duration keys carried over to the new
/// ones, and where every value came from. `env` replaces the process
/// environment (tests).
pub fn load(
    file: Option<&Path>,
    env: Option<config::Map<String, String>>,
) -> Result<(config::Config, Sources), ConfigError> {
    let mut b = config::Config::builder().add_source(config::File::from_str(
        DEFAULT_TOML,
        config::FileFormat::Toml,
    ));
    if let Some(f) = file {
        b = b.add_source(
            config::File::from(f)
                .format(config::FileFormat::Toml)
                .required(true),
        );
    }
    b = b.add_source(
        config::Environment::with_prefix("DYNKV")
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("cluster.members")
            .with_list_parse_key("membership.seeds")
            .try_parsing(true)
            .source(env),
    );
    let merged = b.build()?;
    let mut sources = Sources {
        file: file.map(|f| f.display().to_string()),
        ..Sources::default()
    };
    let mut values = HashMap::new();
    walk("", merged.collect()?, &mut values);
    for (key, v) in &values {
        let layer = match v.origin() {
            None => Layer::Defaults,
            Some("the environment") => Layer::Env,
            Some(_) => Layer::File,
        };
        sources.layers.insert(key.clone(), layer);
    }
    let mut b = config::Config::builder().add_source(merged);
    for &(section, stem, unit) in LEGACY_DURATIONS {
        let new = format!("{section}.{stem}");
        let old = format!("{new}_{}", unit.suffix());
        let Some(value) = values.get(&old) else {
            continue;
        };
        let old_layer = sources.layers[&old].clone();
        let n = value.clone().into_uint().map_err(|_| {
            ConfigError::Invalid(format!(
                "{old} ({}) must be a whole number of {}, got {}; better, use {new} = \"<duration>\" (e.g. \"500ms\", \"3s\")",
                sources.origin(&old),
                match unit {
                    Unit::Ms => "milliseconds",
                    Unit::S => "seconds",
                },
                shown(value),
            ))
        })?;
        let as_new = humantime::format_duration(unit.duration(n)).to_string();
        let new_layer = sources.layers.get(&new).cloned();
        // The new key wins when it is set in the same layer or a later one.
        if new_layer.as_ref().is_some_and(|l| *l >= old_layer) {
            sources.warnings.push(format!(
                "{old} ({}) is ignored: {new} ({}) overrides it; remove the old key",
                sources.origin(&old),
                sources.origin(&new)
            ));
            continue;
        }
        let how = match old_layer {
            Layer::Env => format!("{}={as_new}", env_var(&new)),
            _ => format!("{stem} = \"{as_new}\" in [{section}]"),
        };
        sources.warnings.push(format!(
            "{old} ({}) is deprecated and will be removed in a later release: use {new} instead ({how})",
            sources.origin(&old)
        ));
        b = b.set_override(new.as_str(), format!("{n}{}", unit.suffix()))?;
        sources.layers.insert(new.clone(), old_layer);
        sources.legacy.insert(new, old);
    }
    Ok((b.build()?, sources))
}

/// Every value under `prefix`, by dotted key (tables are walked; an array
/// is one value).
fn walk(prefix: &str, table: config::Map<String, Value>, out: &mut HashMap<String, Value>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v.kind {
            ValueKind::Table(t) => walk(&key, t, out),
            _ => {
                out.insert(key, v);
            }
        }
    }
}

fn shown(v: &Value) -> String {
    match &v.kind {
        ValueKind::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Rewrites a deserialisation error to name the setting and where its
/// value came from.
pub fn explain(e: config::ConfigError, sources: &Sources) -> ConfigError {
    // "cluster.members[2]" is the setting cluster.members.
    let setting = |k: &str| sources.describe(k.split('[').next().unwrap_or(k));
    match e {
        config::ConfigError::Type {
            key: Some(key),
            unexpected,
            expected,
            ..
        } => ConfigError::Invalid(format!(
            "{}: expected {expected}, got {unexpected}",
            setting(&key)
        )),
        config::ConfigError::At {
            key: Some(key),
            error,
            ..
        } => ConfigError::Invalid(format!("{}: {error}", setting(&key))),
        config::ConfigError::NotFound(key) => {
            ConfigError::Invalid(format!("{key} is missing (and has no default)"))
        }
        other => ConfigError::Load(other),
    }
}
