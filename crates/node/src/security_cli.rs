//! `dynkv admin security ...` and `dynkv admin token ...`: Riak's
//! `riak-admin security` verbs, sent to `/admin/security/{verb}` of the
//! node given by `--node` (which gossips the change to every member).
//!
//! ```text
//! dynkv admin security enable|disable|status
//! dynkv admin security add-user alice password=s3cret
//! dynkv admin security alter-user alice password=n3w
//! dynkv admin security del-user alice
//! dynkv admin security add-source alice|all 10.0.0.0/8 password|trust
//! dynkv admin security del-source alice|all 10.0.0.0/8
//! dynkv admin security grant riak_kv.get,riak_kv.put on default mybucket to alice
//! dynkv admin security revoke riak_kv.put on any from alice
//! dynkv admin security print-users|print-sources|print-grants
//! dynkv admin token create --user alice
//! dynkv admin token revoke TOKEN | --user alice
//! ```

use serde_json::{Value, json};

/// The security verbs.
#[derive(clap::Subcommand)]
pub enum SecurityCommand {
    /// Start enforcing users, sources and grants on every node.
    Enable,
    /// Stop enforcing: every request is served again without credentials.
    Disable,
    /// Whether security is enabled.
    Status,
    /// Create a user: `add-user NAME [password=PASSWORD]`.
    AddUser {
        /// User name.
        name: String,
        /// `password=...`.
        options: Vec<String>,
    },
    /// Change a user's password: `alter-user NAME password=PASSWORD`.
    AlterUser {
        /// User name.
        name: String,
        /// `password=...`.
        options: Vec<String>,
    },
    /// Delete a user, with its sources, grants and tokens.
    DelUser {
        /// User name.
        name: String,
    },
    /// `add-source USERS|all CIDR password|trust`.
    AddSource {
        /// Comma-separated users, or `all`.
        users: String,
        /// Addresses, e.g. 10.0.0.0/8 or 127.0.0.1/32.
        cidr: String,
        /// `password` or `trust`.
        method: String,
    },
    /// `del-source USERS|all CIDR`.
    DelSource {
        /// Comma-separated users, or `all`.
        users: String,
        /// The source's CIDR.
        cidr: String,
    },
    /// `grant PERMS on any|TYPE [BUCKET] to USERS|all`.
    Grant {
        /// The words after `grant`.
        #[arg(num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// `revoke PERMS on any|TYPE [BUCKET] from USERS|all`.
    Revoke {
        /// The words after `revoke`.
        #[arg(num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// List the users.
    PrintUsers,
    /// List the sources, in the order they are matched.
    PrintSources,
    /// List the grants.
    PrintGrants,
}

/// The token verbs.
#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a bearer token for a user; it is printed once and only its
    /// hash is kept.
    Create {
        /// The user the token stands for.
        #[arg(long)]
        user: String,
    },
    /// Revoke one token, or every token of `--user`.
    Revoke {
        /// The token.
        token: Option<String>,
        /// Revoke every token of this user instead.
        #[arg(long)]
        user: Option<String>,
    },
}

fn password_option(options: &[String]) -> Result<Option<String>, String> {
    let mut password = None;
    for o in options {
        match o.split_once('=') {
            Some(("password", p)) => password = Some(p.to_string()),
            _ => return Err(format!("unknown option {o:?}: use password=...")),
        }
    }
    Ok(password)
}

fn users(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect()
}

/// Parses `PERMS on any|TYPE [BUCKET] to|from USERS` into the body of
/// `grant` / `revoke`.
pub fn grant_body(words: &[String], to: &str) -> Result<Value, String> {
    let usage = format!("usage: PERMS on any|TYPE [BUCKET] {to} USERS|all");
    let [perms, on, rest @ ..] = words else {
        return Err(usage);
    };
    if on != "on" {
        return Err(usage);
    }
    let at = rest
        .iter()
        .position(|w| w == to)
        .ok_or_else(|| usage.clone())?;
    let (scope, who) = (&rest[..at], &rest[at + 1..]);
    let (bucket_type, bucket) = match scope {
        [any] if any == "any" => (None, None),
        [t] => (Some(t.clone()), None),
        [t, b] => (Some(t.clone()), Some(b.clone())),
        _ => return Err(usage),
    };
    let [who] = who else {
        return Err(usage);
    };
    Ok(json!({
        "permissions": users(perms),
        "bucket_type": bucket_type,
        "bucket": bucket,
        "users": users(who),
    }))
}

/// The verb and body a security command sends (`None` verb: a read).
pub fn security_request(c: &SecurityCommand) -> Result<(Option<&'static str>, Value), String> {
    Ok(match c {
        SecurityCommand::Enable => (Some("enable"), json!({})),
        SecurityCommand::Disable => (Some("disable"), json!({})),
        SecurityCommand::AddUser { name, options } => (
            Some("add-user"),
            json!({"name": name, "password": password_option(options)?}),
        ),
        SecurityCommand::AlterUser { name, options } => (
            Some("alter-user"),
            json!({"name": name, "password": password_option(options)?}),
        ),
        SecurityCommand::DelUser { name } => (Some("del-user"), json!({"name": name})),
        SecurityCommand::AddSource {
            users: u,
            cidr,
            method,
        } => (
            Some("add-source"),
            json!({"users": users(u), "cidr": cidr, "method": method}),
        ),
        SecurityCommand::DelSource { users: u, cidr } => {
            (Some("del-source"), json!({"users": users(u), "cidr": cidr}))
        }
        SecurityCommand::Grant { words } => (Some("grant"), grant_body(words, "to")?),
        SecurityCommand::Revoke { words } => (Some("revoke"), grant_body(words, "from")?),
        SecurityCommand::Status
        | SecurityCommand::PrintUsers
        | SecurityCommand::PrintSources
        | SecurityCommand::PrintGrants => (None, Value::Null),
    })
}

/// The verb and body a token command sends.
pub fn token_request(c: &TokenCommand) -> Result<(&'static str, Value), String> {
    Ok(match c {
        TokenCommand::Create { user } => ("token-create", json!({"user": user})),
        TokenCommand::Revoke { token: Some(t), .. } => ("token-revoke", json!({"token": t})),
        TokenCommand::Revoke {
            token: None,
            user: Some(u),
        } => ("token-revoke", json!({"user": u})),
        TokenCommand::Revoke { .. } => return Err("token revoke needs TOKEN or --user".into()),
    })
}

/// Prints the answer of a security command.
pub fn print_security(c: &SecurityCommand, v: &Value) {
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    match c {
        SecurityCommand::PrintUsers => {
            println!("{:<24} password", "user");
            for u in list("users") {
                println!(
                    "{:<24} {}",
                    u["name"].as_str().unwrap_or("?"),
                    if u["password"] == true { "yes" } else { "no" }
                );
            }
        }
        SecurityCommand::PrintSources => {
            println!("{:<24} {:<20} method", "user", "cidr");
            for s in list("sources") {
                println!(
                    "{:<24} {:<20} {}",
                    s["user"].as_str().unwrap_or("?"),
                    s["cidr"].as_str().unwrap_or("?"),
                    s["method"].as_str().unwrap_or("?")
                );
            }
        }
        SecurityCommand::PrintGrants => {
            println!("{:<24} {:<30} permissions", "user", "on");
            for g in list("grants") {
                let perms: Vec<&str> = g["permissions"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
                    .unwrap_or_default();
                println!(
                    "{:<24} {:<30} {}",
                    g["user"].as_str().unwrap_or("?"),
                    g["on"].as_str().unwrap_or("?"),
                    perms.join(",")
                );
            }
        }
        _ => println!(
            "security {} (rules version {})",
            if v["enabled"] == true {
                "enabled"
            } else {
                "disabled"
            },
            v["version"]
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn grant_words_as_riak_admin_takes_them() {
        assert_eq!(
            grant_body(
                &words("riak_kv.get,riak_kv.put on default b to alice,bob"),
                "to"
            )
            .unwrap(),
            json!({"permissions": ["riak_kv.get", "riak_kv.put"], "bucket_type": "default", "bucket": "b", "users": ["alice", "bob"]})
        );
        assert_eq!(
            grant_body(&words("dynkv.admin on any to ops"), "to").unwrap()["bucket_type"],
            Value::Null
        );
        assert!(grant_body(&words("riak_kv.get on any from x"), "to").is_err());
        assert!(grant_body(&words("riak_kv.get default to x"), "to").is_err());
        assert!(grant_body(&words("riak_kv.get on a b c to x"), "to").is_err());
    }
}
