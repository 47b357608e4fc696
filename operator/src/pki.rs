//! A domain's PKI: a CA of its own (Secret `pmip-<domain>-ca`, read only by the operator) and
//! one certificate signed by it (Secret `pmip-<domain>-tls`, mounted in the daemons' pods).
//! The daemons serve their gRPC APIs with that certificate and require a client certificate
//! from the same CA, which the operator, the MAGs (towards the LMA's policy service) and
//! `pmipctl` in the pods present: so the certificate is for server and client use. A CA per
//! domain keeps a certificate of one domain from opening another's API.
//!
//! [`decide`] is pure: from what the Secrets hold and the time, what must be (re)issued. Only
//! [`new_ca`] and [`new_leaf`] draw random keys.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::render::{Names, lma_service_host, mag_tls_name};

/// Keys of the Secrets.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

const DAY: i64 = 86_400;
/// The CA outlives many certificates; it is replaced (and with it the certificate, which rolls
/// the pods) when it comes within [`RENEW_BEFORE`] of its end.
const CA_LIFETIME: i64 = 3650 * DAY;
const LEAF_LIFETIME: i64 = 365 * DAY;
/// A certificate is reissued this long before it ends.
pub const RENEW_BEFORE: i64 = 30 * DAY;
/// Clocks of the nodes may lag the operator's: a certificate is valid from a little earlier.
const BACKDATE: i64 = 3600;

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("making a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("time {0} is out of range")]
    Time(i64),
}

/// The names the domain's certificate carries: its LMA Service (as a client inside or outside
/// the namespace writes it), the name the MAGs are checked against (they are reached by
/// address), and the loopback names `pmipctl` uses inside the pods.
pub fn subject_names(namespace: &str, domain: &str) -> Vec<String> {
    let n = Names::of(domain);
    let svc = lma_service_host(namespace, domain);
    vec![
        n.lma.clone(),
        format!("{}.{namespace}", n.lma),
        svc.clone(),
        format!("{svc}.cluster.local"),
        mag_tls_name(namespace, domain),
        "localhost".into(),
        "::1".into(),
        "127.0.0.1".into(),
    ]
}

/// The PEM files a daemon or a client uses.
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("cert", &crate::render::config_hash(&self.cert))
            .finish_non_exhaustive()
    }
}

fn field(s: &Secret, key: &str) -> Option<String> {
    let b = s.data.as_ref()?.get(key)?;
    String::from_utf8(b.0.clone()).ok()
}

/// The CA's certificate and key from its Secret.
pub fn ca_of(s: &Secret) -> Option<(String, String)> {
    Some((field(s, CA_CERT)?, field(s, CA_KEY)?))
}

/// The daemons' files from the TLS Secret.
pub fn material_of(s: &Secret) -> Option<Material> {
    Some(Material {
        ca: field(s, CA_CERT)?,
        cert: field(s, TLS_CERT)?,
        key: field(s, TLS_KEY)?,
    })
}

/// What must be issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// The Secrets are good.
    Nothing,
    /// A new certificate from the existing CA.
    Leaf,
    /// A new CA, and a certificate from it.
    CaAndLeaf,
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub not_after: i64,
    /// DNS names and IP addresses, as text.
    pub names: Vec<String>,
}

/// Parses one PEM certificate; `None` when it is not one.
pub fn parse(pem: &str) -> Option<Parsed> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = p.parse_x509().ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                        _ => None,
                    };
                    names.extend(ip.map(|i| i.to_string()));
                }
                _ => {}
            }
        }
    }
    Some(Parsed {
        not_after: cert.validity().not_after.timestamp(),
        names,
    })
}

/// From the CA (certificate, key) and the daemons' files as the Secrets hold them, the names
/// the certificate must carry and the time (Unix seconds): what to issue. A CA or certificate
/// that does not parse, ends within [`RENEW_BEFORE`], or (the certificate) names something
/// else or comes from another CA is replaced.
pub fn decide(
    ca: Option<&(String, String)>,
    tls: Option<&Material>,
    names: &[String],
    now: i64,
) -> Issue {
    let fresh = |pem: &str| parse(pem).filter(|p| p.not_after > now + RENEW_BEFORE);
    let Some((ca_cert, ca_key)) = ca else {
        return Issue::CaAndLeaf;
    };
    if fresh(ca_cert).is_none() || KeyPair::from_pem(ca_key).is_err() {
        return Issue::CaAndLeaf;
    }
    let Some(m) = tls else {
        return Issue::Leaf;
    };
    if m.ca != *ca_cert || KeyPair::from_pem(&m.key).is_err() {
        return Issue::Leaf;
    }
    match fresh(&m.cert) {
        Some(p) => {
            let mut have = p.names;
            have.sort();
            let mut want = names.to_vec();
            want.sort();
            if have == want {
                Issue::Nothing
            } else {
                Issue::Leaf
            }
        }
        None => Issue::Leaf,
    }
}

fn at(unix: i64) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|_| PkiError::Time(unix))
}

/// A new CA for a domain: (certificate, key) in PEM.
pub fn new_ca(namespace: &str, domain: &str, now: i64) -> Result<(String, String), PkiError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.distinguished_name
        .push(DnType::CommonName, format!("pmip {namespace}/{domain} CA"));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = at(now - BACKDATE)?;
    p.not_after = at(now + CA_LIFETIME)?;
    let key = KeyPair::generate()?;
    let ca = CertifiedIssuer::self_signed(p, key)?;
    Ok((ca.pem(), ca.key().serialize_pem()))
}

/// A new certificate for `names`, for server and client use, signed by the CA: (certificate,
/// key) in PEM.
pub fn new_leaf(
    ca_cert: &str,
    ca_key: &str,
    names: &[String],
    now: i64,
) -> Result<(String, String), PkiError> {
    let issuer = Issuer::from_ca_cert_pem(ca_cert, KeyPair::from_pem(ca_key)?)?;
    let mut p = CertificateParams::new(names.to_vec())?;
    p.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    p.not_before = at(now - BACKDATE)?;
    p.not_after = at(now + LEAF_LIFETIME)?;
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn material(ca: &(String, String), names: &[String], now: i64) -> Material {
        let (cert, key) = new_leaf(&ca.0, &ca.1, names, now).unwrap();
        Material {
            ca: ca.0.clone(),
            cert,
            key,
        }
    }

    #[test]
    fn a_domain_gets_a_ca_then_a_certificate_with_its_names() {
        let names = subject_names("pmip", "lab");
        assert!(names.contains(&"pmip-lab-lma.pmip.svc".to_string()));
        assert!(names.contains(&"pmip-lab-mag.pmip.svc".to_string()));
        assert_eq!(decide(None, None, &names, NOW), Issue::CaAndLeaf);
        let ca = new_ca("pmip", "lab", NOW).unwrap();
        assert_eq!(decide(Some(&ca), None, &names, NOW), Issue::Leaf);
        let m = material(&ca, &names, NOW);
        let p = parse(&m.cert).unwrap();
        let mut got = p.names.clone();
        got.sort();
        let mut want = names.clone();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(p.not_after, NOW + LEAF_LIFETIME);
        assert_eq!(decide(Some(&ca), Some(&m), &names, NOW), Issue::Nothing);
    }

    #[test]
    fn renewal_other_names_another_ca_and_garbage_are_replaced() {
        let names = subject_names("pmip", "lab");
        let ca = new_ca("pmip", "lab", NOW).unwrap();
        let m = material(&ca, &names, NOW);
        // Within 30 days of its end.
        let late = NOW + LEAF_LIFETIME - RENEW_BEFORE + 1;
        assert_eq!(decide(Some(&ca), Some(&m), &names, late), Issue::Leaf);
        assert_eq!(
            decide(Some(&ca), Some(&m), &names, late - 2),
            Issue::Nothing
        );
        // The domain moved to another namespace.
        let other = subject_names("elsewhere", "lab");
        assert_eq!(decide(Some(&ca), Some(&m), &other, NOW), Issue::Leaf);
        // A new CA: the certificate from the old one goes.
        let ca2 = new_ca("pmip", "lab", NOW).unwrap();
        assert_eq!(decide(Some(&ca2), Some(&m), &names, NOW), Issue::Leaf);
        // An old CA is replaced, with the certificate.
        let old = NOW + CA_LIFETIME - RENEW_BEFORE + 1;
        assert_eq!(decide(Some(&ca), Some(&m), &names, old), Issue::CaAndLeaf);
        // Garbage in the Secrets.
        let junk = ("not a certificate".to_string(), ca.1.clone());
        assert_eq!(decide(Some(&junk), None, &names, NOW), Issue::CaAndLeaf);
        let bad_key = (ca.0.clone(), "not a key".to_string());
        assert_eq!(decide(Some(&bad_key), None, &names, NOW), Issue::CaAndLeaf);
        let mut broken = m.clone();
        broken.cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into();
        assert_eq!(decide(Some(&ca), Some(&broken), &names, NOW), Issue::Leaf);
    }

    /// The certificate is one rustls accepts as a server's and a client's, chained to the CA:
    /// a TLS handshake in memory with client authentication, both sides verifying.
    #[test]
    fn the_certificate_passes_a_mutual_tls_handshake() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        use std::sync::Arc;
        let names = subject_names("pmip", "lab");
        let ca = new_ca("pmip", "lab", jiff::Timestamp::now().as_second()).unwrap();
        let m = material(&ca, &names, jiff::Timestamp::now().as_second());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(m.ca.as_bytes()).unwrap())
            .unwrap();
        let roots = Arc::new(roots);
        let chain = || vec![CertificateDer::from_pem_slice(m.cert.as_bytes()).unwrap()];
        let key = || PrivateKeyDer::from_pem_slice(m.key.as_bytes()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .unwrap();
        let server_cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain(), key())
            .unwrap();
        let client_cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain(), key())
            .unwrap();
        for server_name in ["pmip-lab-lma.pmip.svc", "pmip-lab-mag.pmip.svc", "::1"] {
            let mut client = rustls::ClientConnection::new(
                Arc::new(client_cfg.clone()),
                ServerName::try_from(server_name.to_string()).unwrap(),
            )
            .unwrap();
            let mut server = rustls::ServerConnection::new(Arc::new(server_cfg.clone())).unwrap();
            for _ in 0..10 {
                let mut buf = Vec::new();
                client.write_tls(&mut buf).unwrap();
                server.read_tls(&mut buf.as_slice()).unwrap();
                server.process_new_packets().unwrap();
                let mut buf = Vec::new();
                server.write_tls(&mut buf).unwrap();
                client.read_tls(&mut buf.as_slice()).unwrap();
                client.process_new_packets().unwrap();
                if !client.is_handshaking() && !server.is_handshaking() {
                    break;
                }
            }
            assert!(!client.is_handshaking(), "{server_name}");
            assert!(
                server.peer_certificates().is_some(),
                "the client presented its certificate"
            );
        }
        // A name the certificate does not carry is refused.
        let mut client = rustls::ClientConnection::new(
            Arc::new(client_cfg),
            ServerName::try_from("pmip-other-lma.pmip.svc").unwrap(),
        )
        .unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(server_cfg)).unwrap();
        let mut failed = false;
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            if server.read_tls(&mut buf.as_slice()).is_err()
                || server.process_new_packets().is_err()
            {
                failed = true;
                break;
            }
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            if client.process_new_packets().is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "a wrong server name must fail");
    }
}
