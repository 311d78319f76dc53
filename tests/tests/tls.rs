//! TLS on the public listener, with certificates generated in the test:
//! both engines serve HTTPS and refuse plaintext on the TLS port, SIGHUP
//! swaps the certificate (and a bad file keeps the old one), and the
//! `openssl` engine configured with the Riak Python client's cipher list
//! accepts that client's TLS 1.2 DHE-RSA suite and refuses a client that
//! offers only ECDHE.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};

/// What the riak 2.7.0 Python client offers (`SECURITY_CIPHERS` in
/// `riak/tests/__init__.py`).
const RIAK_CIPHERS: &str = "DHE-RSA-AES128-SHA256:DHE-RSA-AES128-SHA:DHE-RSA-AES256-SHA256:DHE-RSA-AES256-SHA:AES128-SHA256:AES128-SHA:AES256-SHA256:AES256-SHA:RC4-SHA";

/// A test CA and the files of the server certificate it issues.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "dynkv test CA");
        let ca = p.self_signed(&ca_key).unwrap();
        Pki {
            ca,
            ca_key,
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }

    /// (Re)writes the server certificate and key: an RSA key, which the
    /// DHE-RSA and RSA suites need, for 127.0.0.1 and localhost.
    fn issue(&self, cn: &str, serial: u8) {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let pkey = openssl::pkey::PKey::from_rsa(rsa).unwrap();
        let pem = String::from_utf8(pkey.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let key = rcgen::KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
        let mut p =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[serial]));
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        std::fs::write(&self.cert, cert.pem()).unwrap();
        std::fs::write(&self.key, pem).unwrap();
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }
}

/// A one-node cluster serving HTTPS with `engine` and `extra` settings.
async fn tls_node(pki: &Pki, engine: &str, extra: &[(&str, &str)]) -> Cluster {
    let mut opts = ClusterOptions {
        n_val: 1,
        ..ClusterOptions::default()
    }
    .serve_tls(pki.ca_pem(), &pki.cert, &pki.key)
    .set("DYNKV__NODE__TLS_ENGINE", engine);
    for (k, v) in extra {
        opts = opts.set(k, v);
    }
    Cluster::start(1, opts).await
}

/// What a handshake with the node on `port` agreed on.
struct Handshake {
    cipher: String,
    serial: Vec<u8>,
    subject: String,
}

/// An OpenSSL client handshake (no certificate check: the test reads what
/// was served), TLS 1.2 at most when `ciphers` is given, offering only them.
fn handshake(port: u16, ciphers: Option<&str>) -> Result<Handshake, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    b.set_verify(SslVerifyMode::NONE);
    if let Some(c) = ciphers {
        b.set_cipher_list(c).map_err(|e| e.to_string())?;
        b.set_max_proto_version(Some(SslVersion::TLS1_2))
            .map_err(|e| e.to_string())?;
    }
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let s = b
        .build()
        .configure()
        .unwrap()
        .verify_hostname(false)
        .connect("localhost", tcp)
        .map_err(|e| e.to_string())?;
    let ssl = s.ssl();
    let cert = ssl.peer_certificate().ok_or("no certificate")?;
    let subject = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
        .unwrap_or_default();
    Ok(Handshake {
        cipher: ssl
            .current_cipher()
            .map(|c| c.name().to_string())
            .unwrap_or_default(),
        serial: cert.serial_number().to_bn().unwrap().to_vec(),
        subject,
    })
}

#[tokio::test]
async fn both_engines_serve_https_and_refuse_plaintext() {
    for engine in ["rustls", "openssl"] {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        pki.issue("dynkv-node", 1);
        let c = tls_node(&pki, engine, &[]).await;
        assert!(c.url(1).starts_with("https://"));
        let w = c.put(1, "k", "over tls", "", None).await;
        assert_eq!(w.status, StatusCode::NO_CONTENT, "{engine}: {}", w.text());
        let r = c.get(1, "k", "").await;
        assert_eq!(r.status, StatusCode::OK, "{engine}");
        assert_eq!(r.text(), "over tls");

        // Plain HTTP on the TLS port gets no answer.
        let plain = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = format!("http://127.0.0.1:{}/health", c.nodes[0].port);
        let answered = matches!(plain.get(&url).send().await, Ok(r) if r.status().is_success());
        assert!(!answered, "{engine}: plaintext served on the TLS port");
        let counted = poll(Duration::from_secs(5), || async {
            c.metric(1, "dynkv_tls_handshake_failures_total", "").await >= 1.0
        })
        .await;
        assert!(
            counted,
            "{engine}: the plaintext attempt is a failed handshake"
        );
        // And the node still serves TLS clients.
        assert_eq!(c.get(1, "k", "").await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn sighup_swaps_the_certificate_and_a_bad_file_keeps_the_old_one() {
    for engine in ["rustls", "openssl"] {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        pki.issue("dynkv-first", 1);
        let c = tls_node(&pki, engine, &[]).await;
        let port = c.nodes[0].port;
        let first = tokio::task::spawn_blocking(move || handshake(port, None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (first.serial.as_slice(), first.subject.as_str()),
            (&[1u8][..], "dynkv-first")
        );

        pki.issue("dynkv-second", 2);
        let hup = |c: &Cluster| {
            let pid = c.nodes[0].pid().unwrap();
            let ok = std::process::Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()
                .unwrap()
                .success();
            assert!(ok);
        };
        hup(&c);
        let swapped = poll(Duration::from_secs(10), || async move {
            let h = tokio::task::spawn_blocking(move || handshake(port, None))
                .await
                .unwrap();
            matches!(h, Ok(h) if h.serial == [2] && h.subject == "dynkv-second")
        })
        .await;
        assert!(swapped, "{engine}: SIGHUP did not swap the certificate");
        // The client trusting the CA still gets answers, on new connections.
        assert_eq!(c.get(1, "absent", "").await.status, StatusCode::NOT_FOUND);

        // A broken certificate file: the reload is refused and logged, the
        // second certificate stays in service.
        std::fs::write(&pki.cert, "not a certificate").unwrap();
        hup(&c);
        let logged = poll(Duration::from_secs(10), || async {
            c.log_tail(1).contains("TLS certificate not reloaded")
        })
        .await;
        assert!(logged, "{engine}: a bad reload is not logged");
        let h = tokio::task::spawn_blocking(move || handshake(port, None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(h.subject, "dynkv-second", "{engine}");
        assert_eq!(c.get(1, "absent", "").await.status, StatusCode::NOT_FOUND);
    }
}

/// The riak Python client's `test_security_bad_ciphers` expects a server
/// configured with its cipher list to refuse a client offering only
/// ECDHE-RSA-AES256-GCM-SHA384, and its other tests connect with TLS 1.2
/// and DHE-RSA suites.
#[tokio::test]
async fn openssl_engine_with_the_riak_cipher_list_accepts_dhe_and_refuses_ecdhe_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    pki.issue("riak-test", 1);
    let c = tls_node(
        &pki,
        "openssl",
        &[("DYNKV__NODE__TLS_CIPHERS", RIAK_CIPHERS)],
    )
    .await;
    let port = c.nodes[0].port;
    for suite in ["DHE-RSA-AES128-SHA256", "DHE-RSA-AES256-SHA", "AES128-SHA"] {
        let h = tokio::task::spawn_blocking(move || handshake(port, Some(suite)))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{suite} refused: {e}"));
        assert_eq!(h.cipher, suite);
    }
    let refused =
        tokio::task::spawn_blocking(move || handshake(port, Some("ECDHE-RSA-AES256-GCM-SHA384")))
            .await
            .unwrap();
    assert!(
        refused.is_err(),
        "an ECDHE-only client was accepted: {:?}",
        refused.ok().map(|h| h.cipher)
    );
    // The node keeps serving.
    assert_eq!(c.get(1, "absent", "").await.status, StatusCode::NOT_FOUND);
}
