//! Issuing the certificates Stoker keeps itself (feature `pki`): a CA, and leaves it
//! signs for serving or for client authentication. Pure: the caller says when "now" is
//! and stores what comes out.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// Why a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
#[error("failed to issue the {what}: {source}")]
pub struct IssueError {
    /// What was being issued.
    pub what: String,
    /// The cause.
    #[source]
    pub source: rcgen::Error,
}

fn failed(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> IssueError {
    let what = what.into();
    move |source| IssueError { what, source }
}

/// A CA certificate and its key, PEM-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ca {
    /// A name for the CA in messages (the certificates it signs name the subject of
    /// `cert` as their issuer).
    pub common_name: String,
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (extended key usage `serverAuth`).
    Server,
    /// A TLS client (`clientAuth`): a verifier of clients refuses a server certificate.
    Client,
}

/// Whom a leaf certificate names as its subject (what Kafka turns into its principal:
/// `User:CN=<common name>[,O=<organization>]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    /// The common name.
    pub common_name: &'a str,
    /// The organization, if any.
    pub organization: Option<&'a str>,
}

/// A leaf certificate and its key, PEM-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
    /// When it expires (Unix seconds).
    pub not_after: i64,
}

fn ca_params(common_name: &str) -> Result<CertificateParams, IssueError> {
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(failed(format!("CA {common_name}")))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// A new self-signed CA named `common_name`, valid from an hour before `now` for
/// `validity`.
pub fn issue_ca(
    common_name: &str,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<Ca, IssueError> {
    let key = KeyPair::generate().map_err(failed(format!("CA {common_name} key")))?;
    let mut params = ca_params(common_name)?;
    params.not_before = now - Duration::hours(1);
    params.not_after = now + validity;
    let cert = params
        .self_signed(&key)
        .map_err(failed(format!("CA {common_name}")))?;
    Ok(Ca {
        common_name: common_name.to_owned(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A certificate for `names` (DNS names or IP addresses; the first is also its common
/// name) signed by `ca`, for `usage`, valid from an hour before `now` for `validity`.
pub fn issue_leaf(
    ca: &Ca,
    names: &[String],
    usage: Usage,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<Leaf, IssueError> {
    let first = names.first().cloned().unwrap_or_default();
    let subject = Subject {
        common_name: &first,
        organization: None,
    };
    issue_leaf_for(ca, subject, names, &[usage], now, validity)
}

/// A certificate for `subject` and `names` (DNS names or IP addresses, may be empty)
/// signed by `ca`, for every one of `usages`, valid from an hour before `now` for
/// `validity`.
pub fn issue_leaf_for(
    ca: &Ca,
    subject: Subject<'_>,
    names: &[String],
    usages: &[Usage],
    now: OffsetDateTime,
    validity: Duration,
) -> Result<Leaf, IssueError> {
    let cn = subject.common_name;
    let signer =
        KeyPair::from_pem(&ca.key).map_err(failed(format!("CA {} key", ca.common_name)))?;
    // The issuer as its certificate says (subject, key identifier): a CA Stoker made
    // and one a user brings sign alike.
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, signer)
        .map_err(failed(format!("CA {} certificate", ca.common_name)))?;
    let key = KeyPair::generate().map_err(failed(format!("key for {cn}")))?;
    let mut params =
        CertificateParams::new(names.to_vec()).map_err(failed(format!("names {names:?}")))?;
    // Encoded organization first: Kafka prints a subject most specific first (RFC
    // 2253), so the principal reads `CN=...,O=...`.
    params.distinguished_name = DistinguishedName::new();
    if let Some(o) = subject.organization {
        params.distinguished_name.push(DnType::OrganizationName, o);
    }
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages
        .iter()
        .map(|u| match u {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        })
        .collect();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + validity;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(failed(format!("certificate for {cn}")))?;
    Ok(Leaf {
        cert: cert.pem(),
        key: key.serialize_pem(),
        not_after: params.not_after.unix_timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_names_its_issuer_and_expires_when_asked() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a time");
        let ca = issue_ca("test-ca", now, Duration::days(10)).expect("a CA");
        let leaf = issue_leaf(
            &ca,
            &["a.example".to_owned()],
            Usage::Client,
            now,
            Duration::days(1),
        )
        .expect("a leaf");
        assert_eq!(leaf.not_after, 1_800_000_000 + 86_400);
        assert!(leaf.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(leaf.cert, ca.cert);
    }

    #[test]
    fn a_broken_ca_key_says_which_ca() {
        let now = OffsetDateTime::now_utc();
        let mut ca = issue_ca("test-ca", now, Duration::days(10)).expect("a CA");
        ca.key = "not a key".into();
        let e = issue_leaf(&ca, &["a".into()], Usage::Server, now, Duration::days(1))
            .expect_err("a broken key");
        assert!(e.to_string().contains("CA test-ca key"), "{e}");
    }
}
