//! TLS for the TCP protocol (upgrade inside IDENTIFY) and the HTTPS listener: the rustls
//! server configuration built from nsqd's `--tls-*` flags, and what a finished handshake tells
//! about the connection (version, cipher suite, the client certificate's common name).
//!
//! rustls speaks TLS 1.2 and 1.3 only, so `--tls-min-version` tls1.0 and tls1.1 both mean
//! "1.2 or later"; every client nsqd supports also speaks 1.2.

use std::io::BufReader;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

use crate::nsqd::options::NsqdOptions;

/// Where Debian keeps the system CAs, used for `require-verify` without `--tls-root-ca-file`
/// (Go verifies against the system pool then).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Builds the server configuration, or `None` when no certificate is configured.
pub fn server_config(o: &NsqdOptions) -> Result<Option<Arc<ServerConfig>>, String> {
    if o.tls_cert.is_empty() && o.tls_key.is_empty() {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&o.tls_cert)?;
    let key = read_key(&o.tls_key)?;
    let versions: &[&rustls::SupportedProtocolVersion] = if o.tls_min_version == "tls1.3" {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS config - {e}"))?;
    let builder = match o.tls_client_auth_policy.as_str() {
        "require" => builder.with_client_cert_verifier(Arc::new(AnyClientCert {
            algorithms: provider.signature_verification_algorithms,
        })),
        "require-verify" => {
            let ca = if o.tls_root_ca_file.is_empty() {
                SYSTEM_CA_BUNDLE
            } else {
                &o.tls_root_ca_file
            };
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("failed to append certificate to pool - {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("TLS client verifier - {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        // nsqd asks for no client certificate under any other policy, even with a root CA.
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("failed to load TLS key pair - {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// The same certificate without ALPN, for the TCP protocol (clients offer none there).
pub fn tcp_config(http: &Arc<ServerConfig>) -> Arc<ServerConfig> {
    let mut c = (**http).clone();
    c.alpn_protocols.clear();
    Arc::new(c)
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("open {path} - {e}"))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("read {path} - {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {path}"));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("open {path} - {e}"))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| format!("read {path} - {e}"))?
        .ok_or_else(|| format!("no private key found in {path}"))
}

/// `--tls-client-auth-policy=require`: Go's `RequireAnyClientCert` demands a certificate and
/// proof of its key, but trusts no CA for it.
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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

/// What /stats shows about a TLS connection, in Go's spelling.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    pub version: String,
    pub cipher_suite: String,
    pub negotiated_protocol: String,
    /// Subject CN of the client certificate, sent to the auth server.
    pub common_name: String,
}

pub fn describe(conn: &ServerConnection) -> TlsInfo {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS1.2".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS1.3".to_string(),
        Some(v) => format!("{v:?}"),
        None => String::new(),
    };
    // Go names TLS 1.3 suites TLS_AES_128_GCM_SHA256 where rustls says TLS13_AES_128_GCM_SHA256.
    let cipher_suite = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .map(|s| s.replacen("TLS13_", "TLS_", 1))
        .unwrap_or_default();
    let negotiated_protocol = conn
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let common_name = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| subject_common_name(c))
        .unwrap_or_default();
    TlsInfo {
        version,
        cipher_suite,
        negotiated_protocol,
        common_name,
    }
}

/// One DER element: (tag, contents, rest). None on anything malformed.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The subject's commonName (OID 2.5.4.3) of an X.509 certificate. The certificate comes from
/// the client, so every step is bounds-checked and a malformed one simply has no name.
pub fn subject_common_name(cert: &[u8]) -> Option<String> {
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
    let (_, certificate, _) = der(cert)?;
    let (_, mut tbs, _) = der(certificate)?;
    // Optional [0] version, then serial, signature algorithm, issuer, validity, subject.
    if tbs.first() == Some(&0xa0) {
        tbs = der(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = der(tbs)?.2;
    }
    let (_, mut subject, _) = der(tbs)?;
    while !subject.is_empty() {
        let (_, mut rdn, rest) = der(subject)?;
        subject = rest;
        while !rdn.is_empty() {
            let (_, attr, rest) = der(rdn)?;
            rdn = rest;
            let (oid_tag, oid, value) = der(attr)?;
            if oid_tag == 0x06 && oid == CN_OID {
                let (_, text, _) = der(value)?;
                return Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_der_has_no_common_name() {
        for input in [
            &b""[..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x02, 0x30],
        ] {
            assert_eq!(subject_common_name(input), None);
        }
    }
}
