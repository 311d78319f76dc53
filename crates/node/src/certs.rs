//! `dynkv admin certs`: a private CA and one node certificate for a
//! cluster's public listeners, for clusters without a CA of their own (the
//! docker cluster makes its certificates with it in its one-shot `secret`
//! service). The CA's private key is never written: nothing can be signed
//! by it later, so a leaked directory cannot mint certificates.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// What `certs` writes into the directory: the CA certificate clients
/// trust, and the node certificate chain and key `node.tls_cert` and
/// `node.tls_key` name.
pub const FILES: [&str; 3] = ["ca.pem", "node.pem", "node.key"];

/// Makes the CA and a node certificate valid for every name and address of
/// `hosts` (IP addresses become IP subject alternative names) and writes
/// them into `dir` (the key with mode 0600).
pub fn write(dir: &Path, hosts: &[String], days: u32) -> Result<(), String> {
    let err = |e: rcgen::Error| format!("cannot make the certificates: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "dynkv cluster CA");
    let not_after = time_after(days);
    ca.not_after = not_after;
    let ca = ca.self_signed(&ca_key).map_err(err)?;

    let node_key = KeyPair::generate().map_err(err)?;
    let mut node = CertificateParams::new(hosts.to_vec()).map_err(err)?;
    node.distinguished_name.push(
        DnType::CommonName,
        hosts.first().map_or("dynkv", |h| h.as_str()),
    );
    node.not_after = not_after;
    let node = node.signed_by(&node_key, &ca, &ca_key).map_err(err)?;

    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let put = |name: &str, text: &str, private: bool| -> Result<(), String> {
        let path = dir.join(name);
        let tmp = dir.join(format!("{name}.tmp"));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
    };
    put(FILES[0], &ca.pem(), false)?;
    put(FILES[1], &format!("{}{}", node.pem(), ca.pem()), false)?;
    put(FILES[2], &node_key.serialize_pem(), true)?;
    Ok(())
}

/// `days` from now, as the certificates' end of validity.
fn time_after(days: u32) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(i64::from(days))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_ca_and_a_node_chain_that_name_every_host() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["n1".to_string(), "127.0.0.1".to_string()];
        write(dir.path(), &hosts, 30).unwrap();
        let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        let chain = std::fs::read_to_string(dir.path().join("node.pem")).unwrap();
        let key = std::fs::read_to_string(dir.path().join("node.key")).unwrap();
        assert_eq!(ca.matches("BEGIN CERTIFICATE").count(), 1);
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(chain.ends_with(&ca), "the chain ends with the CA");
        assert!(key.contains("PRIVATE KEY"));
        // The node certificate verifies against the CA for both names.
        let node = openssl::x509::X509::from_pem(chain.as_bytes()).unwrap();
        let ca = openssl::x509::X509::from_pem(ca.as_bytes()).unwrap();
        assert!(node.verify(&ca.public_key().unwrap()).unwrap());
        let names: Vec<String> = node
            .subject_alt_names()
            .unwrap()
            .iter()
            .map(|n| {
                n.dnsname()
                    .map(str::to_string)
                    .unwrap_or_else(|| n.ipaddress().map_or(String::new(), |ip| format!("{ip:?}")))
            })
            .collect();
        assert!(names.contains(&"n1".to_string()), "{names:?}");
        assert!(names.contains(&"[127, 0, 0, 1]".to_string()), "{names:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("node.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
