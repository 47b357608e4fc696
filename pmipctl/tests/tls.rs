//! `pmipctl` against an LMA whose API wants TLS and a client certificate signed by its CA
//! (`api.tls.client_ca`). The certificates are made here.

mod daemons;

use std::path::{Path, PathBuf};

use daemons::*;
use pmip::config::{ApiConfig, TlsConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }
}

fn write(dir: &Path, name: &str, pem: &str) {
    std::fs::write(dir.join(name), pem).unwrap();
}

/// A CA named `ca`, a server certificate for 127.0.0.1 and `lma.pmip.test`, and a client
/// certificate, all signed by it; and a CA nobody trusts, with a client certificate of its own.
fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    };
    let leaf = |issuer: &CertifiedIssuer<'_, KeyPair>,
                names: &[&str],
                usage: ExtendedKeyUsagePurpose,
                file: &str| {
        let mut p =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name.push(DnType::CommonName, names[0]);
        p.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, issuer).unwrap();
        write(dir.path(), &format!("{file}.pem"), &cert.pem());
        write(dir.path(), &format!("{file}.key"), &key.serialize_pem());
    };
    let trusted = ca("pmip test CA");
    write(dir.path(), "ca.pem", &trusted.pem());
    leaf(
        &trusted,
        &["lma.pmip.test", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        "server",
    );
    leaf(
        &trusted,
        &["pmipctl"],
        ExtendedKeyUsagePurpose::ClientAuth,
        "client",
    );
    let other = ca("another CA");
    write(dir.path(), "other-ca.pem", &other.pem());
    leaf(
        &other,
        &["stranger"],
        ExtendedKeyUsagePurpose::ClientAuth,
        "stranger",
    );
    Pki { dir }
}

#[tokio::test]
async fn client_certificates_over_tls() {
    let pki = pki();
    let mut lma = Lma::start_with(ApiConfig {
        tls: Some(TlsConfig {
            cert: pki.path("server.pem"),
            key: pki.path("server.key"),
            client_ca: Some(pki.path("ca.pem")),
        }),
        ..ApiConfig::default()
    })
    .await;
    lma.attach(MAG1, 1).await;
    assert!(lma.url.starts_with("https://"));
    let (ca, cert, key) = (
        pki.arg("ca.pem"),
        pki.arg("client.pem"),
        pki.arg("client.key"),
    );

    let o = pmipctl(&[
        "--lma", &lma.url, "--ca", &ca, "--cert", &cert, "--key", &key, "-o", "json", "bindings",
        "list",
    ])
    .await;
    let list: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(list[0]["mn_id"], nai(1));

    // Without a scheme, --ca makes it https; the certificate is checked against another name.
    let bare = lma.addr.to_string();
    let o = pmipctl(&[
        "--lma",
        &bare,
        "--ca",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--tls-server-name",
        "lma.pmip.test",
        "stats",
    ])
    .await;
    assert!(ok(&o).contains("lma-test"));

    // A name the certificate does not carry.
    let o = pmipctl(&[
        "--lma",
        &bare,
        "--ca",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--tls-server-name",
        "elsewhere.pmip.test",
        "stats",
    ])
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));

    // The server is not signed by the CA we are told to trust.
    let o = pmipctl(&[
        "--lma",
        &lma.url,
        "--ca",
        &pki.arg("other-ca.pem"),
        "--cert",
        &cert,
        "--key",
        &key,
        "stats",
    ])
    .await;
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.starts_with(&format!("error: cannot reach {}: ", lma.url)),
        "{e}"
    );
    assert!(e.contains("certificate"), "{e}");

    // No client certificate, or one the LMA does not trust: refused.
    for extra in [
        vec![],
        vec![
            "--cert".to_owned(),
            pki.arg("stranger.pem"),
            "--key".to_owned(),
            pki.arg("stranger.key"),
        ],
    ] {
        let mut args = vec!["--lma", &lma.url, "--ca", &ca, "stats"];
        args.extend(extra.iter().map(String::as_str));
        let o = pmipctl(&args).await;
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.starts_with(&format!("error: the connection to {} failed: ", lma.url)),
            "{e}"
        );
        assert!(e.contains("see --cert and --key"), "{e}");
    }

    // TLS flags with a plain URL, or half a key pair, are usage errors.
    let plain = format!("http://{bare}");
    let o = pmipctl(&["--lma", &plain, "--ca", &ca, "stats"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("use https://"), "{}", stderr(&o));
    let o = pmipctl(&["--lma", &lma.url, "--ca", &ca, "--cert", &cert, "stats"]).await;
    assert_eq!(o.status.code(), Some(2));
    let o = pmipctl(&["--lma", &lma.url, "--ca", "/nonexistent/ca.pem", "stats"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--ca: cannot read /nonexistent/ca.pem"),
        "{}",
        stderr(&o)
    );
    lma.stop().await;
}
