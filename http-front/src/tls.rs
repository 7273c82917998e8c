//! `--tls-cert FILE` and `--tls-key FILE`: HTTPS on the listener, with
//! rustls on the ring provider (no OpenSSL, no aws-lc: the same rustls and
//! ring the SMTP client already links).
//!
//! The files are read once, at start-up; every problem with them stops
//! start-up with one line naming the flag and the file. The handshake
//! itself runs in each connection's task (`server.rs`), never in the accept
//! loop.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The listener's TLS: a certificate chain and its key, ready to accept.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    // The config holds the private key: print nothing of it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

impl Tls {
    /// Reads a PEM certificate chain (the server's certificate first) and a
    /// PEM private key (PKCS#8, RSA or SEC1), and checks that they belong
    /// together. Errors are one line naming the flag and the file.
    pub fn from_pem_files(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        let cert_flag = format!("--tls-cert {}", cert.display());
        let key_flag = format!("--tls-key {}", key.display());
        let cert_pem = read(&cert_flag, cert)?;
        let key_pem = read(&key_flag, key)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{cert_flag}: {}", pem_problem(&e)))?;
        if chain.is_empty() {
            anyhow::bail!("{cert_flag}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
        }
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            pem::Error::NoItemsFound => anyhow::anyhow!(
                "{key_flag}: holds no PEM private key (PKCS#8, RSA or SEC1: -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)"
            ),
            e => anyhow::anyhow!("{key_flag}: {}", pem_problem(&e)),
        })?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow::anyhow!("{cert_flag}: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    anyhow::anyhow!(
                        "{key_flag}: is not the private key of the certificate in {cert_flag}"
                    )
                }
                rustls::Error::InvalidCertificate(e) => {
                    anyhow::anyhow!("{cert_flag}: the first certificate cannot be used: {e}")
                }
                e => anyhow::anyhow!("{key_flag}: the key cannot be used: {e}"),
            })?;
        // The server speaks HTTP/1.1 only (no h2): say so, so that a client
        // offering h2 first settles on http/1.1 instead of failing later.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

fn read(flag: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("{flag}: cannot be read: {e}"))
}

/// What is wrong with a PEM file, in words (pki-types prints the bytes).
fn pem_problem(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no -----END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a -----BEGIN line is malformed".into(),
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64".into(),
        pem::Error::NoItemsFound => "holds nothing of the kind wanted".into(),
        e => e.to_string(),
    }
}
