//! A test PKI, made fresh for each use.

use std::path::PathBuf;

/// Test PKI made fresh for each use: a CA, a server certificate for 127.0.0.1/localhost, a
/// client certificate from that CA, and one from an unrelated CA. Files live in `dir`.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

impl Default for Certs {
    fn default() -> Self {
        Certs::new()
    }
}

impl Certs {
    pub fn new() -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let ca_for = |cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca, ca_key) = ca_for("nsqrs test CA");
        let (rogue_ca, rogue_ca_key) = ca_for("someone else's CA");
        let leaf =
            |names: Vec<String>, cn: &str, usage, issuer: &rcgen::Certificate, issuer_key: &KeyPair| {
                let key = KeyPair::generate().unwrap();
                let mut p = CertificateParams::new(names).unwrap();
                p.distinguished_name.push(DnType::CommonName, cn);
                p.extended_key_usages = vec![usage];
                let cert = p.signed_by(&key, issuer, issuer_key).unwrap();
                (cert.pem(), key.serialize_pem())
            };
        let (server, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca,
            &ca_key,
        );
        let (client, client_key) = leaf(
            vec![],
            "test-client",
            ExtendedKeyUsagePurpose::ClientAuth,
            &ca,
            &ca_key,
        );
        let (rogue, rogue_key) = leaf(
            vec![],
            "rogue-client",
            ExtendedKeyUsagePurpose::ClientAuth,
            &rogue_ca,
            &rogue_ca_key,
        );
        Certs {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server),
            server_key: write("server.key", server_key),
            client_cert: write("client.pem", client),
            client_key: write("client.key", client_key),
            rogue_cert: write("rogue.pem", rogue),
            rogue_key: write("rogue.key", rogue_key),
            dir,
        }
    }

    /// `--tls-cert`/`--tls-key` flags for the broker.
    pub fn server_flags(&self) -> Vec<String> {
        vec![
            format!("--tls-cert={}", self.server_cert.display()),
            format!("--tls-key={}", self.server_key.display()),
            "--https-address=127.0.0.1:0".into(),
        ]
    }
}
