//! Certificates made in the test: a private CA, a server certificate for 127.0.0.1 and
//! localhost, and a client certificate, written as PEM files for `redis-server`.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use super::redis_server::TlsFiles;

/// PEM files and contents of one test PKI; the directory is removed when dropped.
#[derive(Debug)]
pub struct TestCertificates {
    _dir: tempfile::TempDir,
    pub ca_pem: String,
    pub ca_file: PathBuf,
    pub server_cert_file: PathBuf,
    pub server_key_file: PathBuf,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    /// A CA that signed nothing here: trusting it alone must fail.
    pub other_ca_pem: String,
}

impl TestCertificates {
    /// The server's files, for `RedisServer::start_tls`.
    pub fn server_files(&self) -> TlsFiles<'_> {
        TlsFiles {
            certificate: &self.server_cert_file,
            key: &self.server_key_file,
            ca: &self.ca_file,
        }
    }

    pub fn generate() -> Self {
        let (ca_pem, ca) = certificate_authority("s3pool test CA");
        let (other_ca_pem, _) = certificate_authority("unrelated CA");
        let (server_cert, server_key) = leaf(&ca, &["127.0.0.1", "localhost"]);
        let (client_cert_pem, client_key_pem) = leaf(&ca, &["pool-redis-client"]);
        let dir = tempfile::tempdir().expect("temporary directory");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write a PEM file");
            path
        };
        Self {
            ca_file: write("ca.pem", &ca_pem),
            server_cert_file: write("server.pem", &server_cert),
            server_key_file: write("server.key", &server_key),
            _dir: dir,
            ca_pem,
            client_cert_pem,
            client_key_pem,
            other_ca_pem,
        }
    }
}

fn certificate_authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("CA key");
    let pem = params.self_signed(&key).expect("self-signed CA").pem();
    (pem, Issuer::new(params, key))
}

fn leaf(ca: &Issuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
    let params = CertificateParams::new(
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )
    .expect("leaf params");
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, ca).expect("signed leaf");
    (cert.pem(), key.serialize_pem())
}
