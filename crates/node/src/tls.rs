//! TLS on the public listener: two engines behind one acceptor, and a
//! certificate that can be swapped while the node runs.
//!
//! `rustls` (the default) speaks TLS 1.2 and 1.3 with forward-secret AEAD
//! suites only; it is memory-safe and needs no system library. `openssl`
//! links the system libssl and takes an OpenSSL cipher string: it exists
//! for clients that offer nothing rustls accepts, such as the Riak Python
//! client (TLS 1.2 pinned, DHE-RSA and RSA AES-CBC suites only). It starts
//! from Mozilla's "intermediate" server profile, which also installs the
//! RFC 7919 ffdhe2048 group that the DHE suites need.
//!
//! [`Tls::reload`] re-reads the certificate and key (the node calls it on
//! SIGHUP): new handshakes use the new pair, connections already open keep
//! theirs, and a pair that cannot be loaded leaves the old one in place.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use openssl::ssl::{SslAcceptor, SslContext, SslFiletype, SslMethod, SslVersion};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::{NodeSection, TlsEngine};

/// Why a certificate, key or TLS setting could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("TLS ({engine}): {message}")]
pub struct TlsError {
    engine: &'static str,
    message: String,
}

/// The TLS side of the public listener: settings plus the acceptor built
/// from the current certificate files.
pub struct Tls {
    settings: Settings,
    current: ArcSwap<Acceptor>,
}

/// What a [`Tls`] is built from, kept for reloads.
struct Settings {
    engine: TlsEngine,
    cert: PathBuf,
    key: PathBuf,
    ciphers: String,
    min_version: String,
}

/// One loaded certificate, ready to accept handshakes.
enum Acceptor {
    Rustls(tokio_rustls::TlsAcceptor),
    Openssl(SslContext),
}

impl Tls {
    /// Loads the node's TLS settings; `None` when no certificate is set
    /// (plain HTTP).
    pub fn from_config(node: &NodeSection) -> Result<Option<Tls>, TlsError> {
        if node.tls_cert.is_empty() {
            return Ok(None);
        }
        let settings = Settings {
            engine: node.tls_engine,
            cert: PathBuf::from(&node.tls_cert),
            key: PathBuf::from(&node.tls_key),
            ciphers: node.tls_ciphers.clone(),
            min_version: node.tls_min_version.clone(),
        };
        let current = ArcSwap::from_pointee(settings.build()?);
        Ok(Some(Tls { settings, current }))
    }

    /// The engine's name, for logs.
    pub fn engine(&self) -> &'static str {
        match self.settings.engine {
            TlsEngine::Rustls => "rustls",
            TlsEngine::Openssl => "openssl",
        }
    }

    /// Re-reads the certificate and key. On error the previous pair stays
    /// in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let acceptor = self.settings.build()?;
        self.current.store(Arc::new(acceptor));
        Ok(())
    }

    /// Runs the server side of a handshake on `tcp`.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
        let acceptor = self.current.load_full();
        match &*acceptor {
            Acceptor::Rustls(a) => Ok(Stream::Rustls(Box::new(a.accept(tcp).await?))),
            Acceptor::Openssl(ctx) => {
                let ssl = openssl::ssl::Ssl::new(ctx).map_err(io::Error::other)?;
                let mut s = tokio_openssl::SslStream::new(ssl, tcp).map_err(io::Error::other)?;
                Pin::new(&mut s).accept().await.map_err(io::Error::other)?;
                Ok(Stream::Openssl(Box::new(s)))
            }
        }
    }
}

impl Settings {
    fn build(&self) -> Result<Acceptor, TlsError> {
        match self.engine {
            TlsEngine::Rustls => self.build_rustls().map_err(|message| TlsError {
                engine: "rustls",
                message,
            }),
            TlsEngine::Openssl => self.build_openssl().map_err(|message| TlsError {
                engine: "openssl",
                message,
            }),
        }
    }

    fn build_rustls(&self) -> Result<Acceptor, String> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", self.cert.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate", self.cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| format!("{}: {e}", self.key.display()))?;
        let versions: &[&rustls::SupportedProtocolVersion] = if self.min_version == "1.3" {
            &[&rustls::version::TLS13]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let mut cfg = rustls::ServerConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} / {}: {e}", self.cert.display(), self.key.display()))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Acceptor::Rustls(tokio_rustls::TlsAcceptor::from(Arc::new(
            cfg,
        ))))
    }

    fn build_openssl(&self) -> Result<Acceptor, String> {
        let e = |what: &str, path: Option<&Path>, err: openssl::error::ErrorStack| match path {
            Some(p) => format!("{what} {}: {err}", p.display()),
            None => format!("{what}: {err}"),
        };
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
            .map_err(|err| e("profile", None, err))?;
        if !self.ciphers.is_empty() {
            b.set_cipher_list(&self.ciphers)
                .map_err(|err| e(&format!("cipher list {:?}", self.ciphers), None, err))?;
        }
        let min = if self.min_version == "1.3" {
            SslVersion::TLS1_3
        } else {
            SslVersion::TLS1_2
        };
        b.set_min_proto_version(Some(min))
            .map_err(|err| e("minimum version", None, err))?;
        b.set_certificate_chain_file(&self.cert)
            .map_err(|err| e("certificate", Some(&self.cert), err))?;
        b.set_private_key_file(&self.key, SslFiletype::PEM)
            .map_err(|err| e("key", Some(&self.key), err))?;
        b.check_private_key()
            .map_err(|err| e("key does not match certificate", Some(&self.key), err))?;
        Ok(Acceptor::Openssl(b.build().into_context()))
    }
}

/// A public connection: plain TCP or one of the TLS engines' streams.
pub enum Stream {
    /// Plain HTTP.
    Plain(TcpStream),
    /// TLS through rustls.
    Rustls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS through OpenSSL.
    Openssl(Box<tokio_openssl::SslStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Rustls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Openssl(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Rustls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Openssl(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Rustls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::Openssl(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Rustls(s) => s.is_write_vectored(),
            Stream::Openssl(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Rustls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Openssl(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Rustls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Openssl(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
