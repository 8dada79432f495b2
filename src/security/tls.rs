//! TLS settings: the server's certificate, key and (optionally) the CA its
//! clients' certificates must chain to; a client's trusted CAs and its own
//! certificate. Both sides use rustls with the `ring` provider, TLS 1.2 and
//! 1.3 and rustls's safe defaults (docs/SECURITY.md "TLS").
//!
//! The files are PEM, read once at start (server) or at connect (client). Every
//! failure names the file and what is wrong with it.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a client looks for the system's CA bundle when no CA file is given
/// (after `SSL_CERT_FILE`): Debian/Ubuntu/Alpine, then Fedora/RHEL.
pub const SYSTEM_CA_BUNDLES: [&str; 2] = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];

/// A server's TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// With it, every client must present a certificate chaining to one of
    /// these CAs (mutual TLS); without it, none is asked for.
    pub client_ca_file: Option<PathBuf>,
}

/// A client's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientTls {
    /// CAs the server's certificate must chain to; the system bundle when `None`.
    pub ca_file: Option<PathBuf>,
    /// The client's own certificate chain and key, for servers that ask (both or neither).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry; the host of the
    /// bootstrap address when `None`.
    pub server_name: Option<String>,
}

/// rustls's `ring` provider. rustls 0.23.48 deprecates it because it lacks
/// the post-quantum key exchange (X25519MLKEM768) that only its aws-lc-rs
/// provider has; that one needs cmake and minutes of C build on every fresh
/// machine, so ringmq keeps ring's classical X25519/P-256 suites
/// (docs/SECURITY.md says so).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let read = |e: &dyn std::fmt::Display| format!("{what} {}: {e}", path.display());
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(path).map_err(|e| read(&e))?.collect::<Result<_, _>>().map_err(|e| read(&e))?;
    if certificates.is_empty() {
        return Err(format!("{what} {}: no PEM certificate in it", path.display()));
    }
    Ok(certificates)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("TLS key {}: {e} (expected a PEM private key: PKCS#8, PKCS#1 or SEC1)", path.display()))
}

fn roots(path: &Path, what: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(path, what)? {
        roots.add(certificate).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    }
    Ok(roots)
}

impl ServerTls {
    /// The rustls configuration both listeners use.
    pub fn load(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let chain = certificates(&self.cert_file, "TLS certificate")?;
        let key = private_key(&self.key_file)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let roots = roots(path, "TLS client CA")?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| format!("TLS client CA {}: {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| {
            format!(
                "TLS certificate {} and key {}: {e} (is the key the certificate's?)",
                self.cert_file.display(),
                self.key_file.display()
            )
        })?;
        Ok(Arc::new(config))
    }
}

/// A client configuration, ready to open connections to one server name.
#[derive(Clone)]
pub struct ClientTlsConfig {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for ClientTlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTlsConfig").field("server_name", &self.server_name).finish()
    }
}

impl ClientTls {
    /// The rustls configuration for connections to `host` (the bootstrap
    /// address's host, unless [`ClientTls::server_name`] says otherwise).
    pub fn load(&self, host: &str) -> Result<ClientTlsConfig, String> {
        let roots = match &self.ca_file {
            Some(path) => roots(path, "TLS CA")?,
            None => {
                let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
                let bundle = from_env
                    .into_iter()
                    .chain(SYSTEM_CA_BUNDLES.iter().map(PathBuf::from))
                    .find(|path| path.is_file())
                    .ok_or_else(|| {
                        format!(
                            "no CA to check the server's certificate with: give a CA file (--tls-ca), \
                             or install the system bundle ({})",
                            SYSTEM_CA_BUNDLES.join(" or ")
                        )
                    })?;
                // A system bundle may hold certificates webpki cannot
                // parse; they are skipped, as every TLS client does.
                let mut roots = rustls::RootCertStore::empty();
                let (added, _ignored) = roots.add_parsable_certificates(certificates(&bundle, "system CA bundle")?);
                if added == 0 {
                    return Err(format!("system CA bundle {}: no usable CA certificate in it", bundle.display()));
                }
                roots
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match (&self.cert_file, &self.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(certificates(cert, "TLS client certificate")?, private_key(key)?)
                .map_err(|e| format!("TLS client certificate {}: {e}", cert.display()))?,
            _ => return Err("a TLS client certificate needs both its certificate file and its key file".into()),
        };
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| format!("{name:?} is not a name a TLS certificate can carry"))?;
        Ok(ClientTlsConfig { config: Arc::new(config), server_name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named() {
        let directory = std::env::temp_dir().join(format!("ringmq-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let empty = directory.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let server =
            ServerTls { cert_file: directory.join("absent.pem"), key_file: empty.clone(), client_ca_file: None };
        let error = server.load().unwrap_err();
        assert!(error.contains("absent.pem"), "{error}");
        let server = ServerTls { cert_file: empty.clone(), key_file: empty.clone(), client_ca_file: None };
        assert!(server.load().unwrap_err().contains("no PEM certificate"));
        let client = ClientTls { ca_file: Some(empty.clone()), ..Default::default() };
        assert!(client.load("localhost").unwrap_err().contains("no PEM certificate"));
        let half = ClientTls { cert_file: Some(empty), ..Default::default() };
        assert!(half.load("localhost").is_err());
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
