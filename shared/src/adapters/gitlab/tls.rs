//! TLS set-up for GitLab calls: public roots loaded once per process, TLS 1.2+, and an optional
//! per-integration private CA added on top (never a "skip verification" switch).

use std::sync::Arc;

use rustls::crypto::aws_lc_rs;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::domain::gitlab::GitlabError;

/// Most certificates accepted in one CA bundle.
pub const MAX_CA_CERTIFICATES: usize = 20;
/// Largest accepted CA bundle.
pub const MAX_CA_BYTES: usize = 48 * 1024;

/// The process-wide TLS material: parsed public roots, reused by every client.
#[derive(Clone, Debug)]
pub struct TlsRoots {
    roots: Arc<RootCertStore>,
}

impl TlsRoots {
    /// Loads the Mozilla roots compiled into `webpki-roots` (no file system access, so the same
    /// trust everywhere and a fast cold start).
    pub fn public() -> Self {
        let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        Self { roots: Arc::new(roots) }
    }

    /// A client configuration trusting the public roots plus `ca_pem`, if given.
    pub fn client_config(&self, ca_pem: Option<&str>) -> Result<ClientConfig, GitlabError> {
        let roots = match ca_pem {
            None => Arc::clone(&self.roots),
            Some(pem) => {
                let mut roots = (*self.roots).clone();
                for cert in parse_ca_bundle(pem)? {
                    roots.add(cert).map_err(|_| GitlabError::InvalidCaCertificate)?;
                }
                Arc::new(roots)
            }
        };
        let mut config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|_| GitlabError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Parses a PEM bundle of CA certificates with size and count limits.
pub fn parse_ca_bundle(pem: &str) -> Result<Vec<CertificateDer<'static>>, GitlabError> {
    if pem.len() > MAX_CA_BYTES {
        return Err(GitlabError::InvalidCaCertificate);
    }
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|_| GitlabError::InvalidCaCertificate)?;
        certs.push(cert);
        if certs.len() > MAX_CA_CERTIFICATES {
            return Err(GitlabError::InvalidCaCertificate);
        }
    }
    if certs.is_empty() {
        return Err(GitlabError::InvalidCaCertificate);
    }
    // A bundle must hold only CA certificates that rustls accepts as trust anchors.
    let mut probe = RootCertStore::empty();
    for cert in &certs {
        probe.add(cert.clone()).map_err(|_| GitlabError::InvalidCaCertificate)?;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_garbage_and_oversized_bundles() {
        assert_eq!(parse_ca_bundle("").unwrap_err(), GitlabError::InvalidCaCertificate);
        assert_eq!(parse_ca_bundle("hello").unwrap_err(), GitlabError::InvalidCaCertificate);
        let fake = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(parse_ca_bundle(fake).unwrap_err(), GitlabError::InvalidCaCertificate);
        assert_eq!(parse_ca_bundle(&"x".repeat(MAX_CA_BYTES + 1)).unwrap_err(), GitlabError::InvalidCaCertificate);
    }

    #[test]
    fn public_roots_build_a_client_config() {
        let roots = TlsRoots::public();
        let config = roots.client_config(None).expect("config");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
