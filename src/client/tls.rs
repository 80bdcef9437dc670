//! TLS for client connections, as go-nsq's `tls_*` options set it up: which server
//! certificates to trust (a PEM root CA file, else the system's store, or anything at all
//! with `tls_insecure_skip_verify`), an optional client certificate, and the lowest version.
//!
//! rustls speaks TLS 1.2 and 1.3 only. A floor of tls1.0 or tls1.1 (go-nsq's default is
//! tls1.0) is still met by every connection made, so it is accepted, as `serve` accepts it;
//! ssl3.0 is refused, as nsqd refuses it.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The oldest TLS version a connection may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MinVersion {
    #[default]
    Tls12,
    Tls13,
}

impl MinVersion {
    /// go-nsq's spelling (`tls1.0` … `tls1.3`).
    pub fn parse(value: &str) -> Result<MinVersion, String> {
        match value {
            "tls1.0" | "tls1.1" | "tls1.2" => Ok(MinVersion::Tls12),
            "tls1.3" => Ok(MinVersion::Tls13),
            "ssl3.0" => Err(format!(
                "{value} is not available: nsqrs speaks TLS 1.2 and 1.3 only (use tls1.0 or later)"
            )),
            _ => Err(format!("{value:?} is not a TLS version (use tls1.0 … tls1.3)")),
        }
    }
}

/// The `tls_*` options other than `tls_v1`, which only decides whether TLS is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CAs to trust instead of the system's.
    pub root_ca_file: Option<PathBuf>,
    /// Accept any server certificate for any name, as Go's `InsecureSkipVerify` does.
    pub insecure_skip_verify: bool,
    /// PEM client certificate (chain) and its key, for servers that demand one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub min_version: MinVersion,
}

impl TlsOptions {
    /// Whether any option was changed from its default.
    pub fn is_set(&self) -> bool {
        *self != TlsOptions::default()
    }

    /// The rustls configuration these options describe; reads the files named, so every
    /// problem with them shows up here.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            MinVersion::Tls13 => &[&rustls::version::TLS13],
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS configuration: {e}"))?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(InsecureAcceptAnyServerCert::new(&provider)))
        } else {
            builder.with_root_certificates(self.roots()?)
        };
        let config = match (&self.cert, &self.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(read_certs("tls_cert", cert)?, read_key(key)?)
                .map_err(|e| format!("tls_cert {} with tls_key {}: {e}", cert.display(), key.display()))?,
            (Some(_), None) => return Err("tls_cert is set but tls_key is not: give both".into()),
            (None, Some(_)) => return Err("tls_key is set but tls_cert is not: give both".into()),
        };
        Ok(Arc::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match &self.root_ca_file {
            Some(path) => {
                for cert in read_certs("tls_root_ca_file", path)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("tls_root_ca_file: {}: {e}", path.display()))?;
                }
            }
            None => {
                // Go verifies against the system pool when no CA is named; so do we.
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err("no system root certificates found: set tls_root_ca_file".into());
                }
            }
        }
        Ok(roots)
    }
}

/// The name a server certificate must carry: the host part of `host:port`, as go-nsq uses
/// (an IP address is checked against the certificate's IP addresses).
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("{addr}: {host:?} cannot be a TLS server name: {e}"))
}

fn read_certs(option: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("{option}: cannot read {}: {e}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{option}: {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{option}: no PEM certificate in {}", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("tls_key: cannot read {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| format!("tls_key: {}: {e}", path.display()))?
        .ok_or_else(|| format!("tls_key: no PEM private key in {}", path.display()))
}

/// `tls_insecure_skip_verify`: trusts any certificate chain for any name. The handshake
/// signatures are still checked, so the peer must at least hold the key of what it presents
/// (Go's `InsecureSkipVerify` does the same).
#[derive(Debug)]
struct InsecureAcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl InsecureAcceptAnyServerCert {
    fn new(provider: &CryptoProvider) -> Self {
        InsecureAcceptAnyServerCert {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for InsecureAcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_versions_below_what_rustls_speaks_mean_tls12() {
        assert_eq!(MinVersion::parse("tls1.3"), Ok(MinVersion::Tls13));
        for floor in ["tls1.0", "tls1.1", "tls1.2"] {
            assert_eq!(MinVersion::parse(floor), Ok(MinVersion::Tls12), "{floor}");
        }
        assert!(MinVersion::parse("ssl3.0")
            .unwrap_err()
            .contains("TLS 1.2 and 1.3 only"));
        assert!(MinVersion::parse("tls9").is_err());
        assert!(MinVersion::parse("tls9")
            .unwrap_err()
            .contains("not a TLS version"));
    }

    #[test]
    fn server_name_is_the_host_part() {
        assert_eq!(server_name("localhost:4150").unwrap().to_str(), "localhost");
        assert_eq!(server_name("127.0.0.1:4150").unwrap().to_str(), "127.0.0.1");
        assert_eq!(server_name("[::1]:4150").unwrap().to_str(), "::1");
        assert!(server_name("bad name:4150").is_err());
    }

    #[test]
    fn half_a_client_certificate_is_refused() {
        let only_cert = TlsOptions {
            cert: Some("c.pem".into()),
            insecure_skip_verify: true,
            ..TlsOptions::default()
        };
        assert!(only_cert.client_config().unwrap_err().contains("tls_key is not"));
        let missing_ca = TlsOptions {
            root_ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let err = missing_ca.client_config().unwrap_err();
        assert!(
            err.starts_with("tls_root_ca_file: cannot read /nonexistent/ca.pem"),
            "{err}"
        );
    }
}
