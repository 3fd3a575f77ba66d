//! The node's TLS identity: the configured PEM files, or a self-signed certificate for
//! the domain names generated at first start and kept in the store (settings
//! `tls.cert_pem`, `tls.key_pem`) so that both nodes present the same one once
//! replicated. Every TLS listener (SMTP, IMAP, later HTTPS) uses the acceptor built here.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::store::Store;

const CERT_KEY: &str = "tls.cert_pem";
const KEY_KEY: &str = "tls.key_pem";

/// Installs aws-lc-rs as the process-wide rustls provider (call once, first thing).
pub fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// PEM certificate chain and key for this node.
pub async fn identity(cfg: &Config, store: &Store) -> Result<(String, String)> {
    if let Some(tls) = &cfg.tls {
        let cert = std::fs::read_to_string(&tls.cert)
            .with_context(|| format!("reading tls.cert {}", tls.cert.display()))?;
        let key = std::fs::read_to_string(&tls.key)
            .with_context(|| format!("reading tls.key {}", tls.key.display()))?;
        return Ok((cert, key));
    }
    if let (Some(c), Some(k)) = (
        store.setting(CERT_KEY).await?,
        store.setting(KEY_KEY).await?,
    ) {
        return Ok((c, k));
    }
    let mut names = vec![cfg.domain.name.clone()];
    for d in &cfg.domain.local_domains {
        if !names.contains(d) {
            names.push(d.clone());
        }
    }
    for extra in ["mail", "www", "imap", "smtp"] {
        names.push(format!("{extra}.{}", cfg.domain.name));
    }
    names.push("localhost".into());
    let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names)
        .map_err(|e| anyhow!("generating the self-signed certificate: {e}"))?;
    let (c, k) = (cert.pem(), signing_key.serialize_pem());
    store.set_setting(KEY_KEY, &k).await?;
    store.set_setting(CERT_KEY, &c).await?;
    tracing::info!(
        "generated a self-signed TLS certificate for {}",
        cfg.domain.name
    );
    Ok((c, k))
}

/// A rustls server configuration for the PEM pair, with the given ALPN protocols.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("bad certificate PEM: {e}"))?;
    if certs.is_empty() {
        return Err(anyhow!("no certificate in the PEM data"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| anyhow!("bad private key PEM: {e}"))?;
    let mut sc = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    sc.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(sc))
}

/// The acceptor used by the mail listeners.
pub async fn acceptor(cfg: &Config, store: &Store) -> Result<TlsAcceptor> {
    let (c, k) = identity(cfg, store).await?;
    Ok(TlsAcceptor::from(server_config(&c, &k, &[])?))
}
