//! A TLS user's client certificate, pure: when to issue it (again) and the Secret that
//! holds it. The coordinator signs it with the KafkaCluster's CA; the subject is
//! `CN=<user>`, which Kafka maps to the principal `User:CN=<user>` — never one of the
//! `O=stoker.io` identities of the cluster's own parts.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use stoker_proto::{
    agent_tls::{CA_FILE, CERT_FILE, KEY_FILE},
    pki::{self, Ca, IssueError, Leaf, Subject, Usage},
};
use time::{Duration, OffsetDateTime};

use crate::secret_data::text;

/// The Secret key of Kafka's PEM keystore (the key, then the certificate):
/// `ssl.keystore.type=PEM`, `ssl.keystore.location=<mounted>/keystore.pem`.
pub const KEYSTORE_FILE: &str = "keystore.pem";
/// Annotation: when the certificate expires (Unix seconds).
pub const NOT_AFTER_ANNOTATION: &str = "kafka.stoker.io/not-after";
/// How long a user's certificate is valid.
pub const VALIDITY: Duration = Duration::days(90);
/// It is issued again this long before it expires.
pub const RENEW_BEFORE: Duration = Duration::days(30);

/// Why the certificate in `secret` must be issued again for a user of `ca`, at `now`
/// (Unix seconds); `None` when it serves.
pub fn reissue_reason(secret: &Secret, ca: &Ca, now: i64) -> Option<&'static str> {
    if text(secret, CERT_FILE).is_empty() || text(secret, KEY_FILE).is_empty() {
        return Some("the Secret holds no certificate yet");
    }
    if text(secret, CA_FILE) != ca.cert {
        return Some("the certificate was signed by another CA");
    }
    let not_after = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NOT_AFTER_ANNOTATION))
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    (not_after - now < RENEW_BEFORE.whole_seconds())
        .then_some("the certificate expires within 30 days")
}

/// A client certificate for user `name`, signed by `ca`.
pub fn issue(ca: &Ca, name: &str, now: OffsetDateTime) -> Result<Leaf, IssueError> {
    pki::issue_leaf_for(
        ca,
        Subject {
            common_name: name,
            organization: None,
        },
        &[],
        &[Usage::Client],
        now,
        VALIDITY,
    )
}

/// `base` (the Secret's name, labels and owner) holding `leaf` and the CA that signed
/// it, with what a Kafka client mounts.
pub fn secret(mut base: Secret, ca: &Ca, leaf: &Leaf) -> Secret {
    base.type_ = Some("kubernetes.io/tls".into());
    base.string_data = None;
    base.data = Some(
        [
            (CERT_FILE, leaf.cert.clone()),
            (KEY_FILE, leaf.key.clone()),
            (CA_FILE, ca.cert.clone()),
            (KEYSTORE_FILE, format!("{}{}", leaf.key, leaf.cert)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
        .collect(),
    );
    base.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(NOT_AFTER_ANNOTATION.to_owned(), leaf.not_after.to_string());
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_issued_again_for_a_new_ca_or_before_it_expires() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a time");
        let ca = pki::issue_ca("ca", now, Duration::days(365)).expect("a CA");
        assert_eq!(
            reissue_reason(&Secret::default(), &ca, now.unix_timestamp()),
            Some("the Secret holds no certificate yet")
        );
        let leaf = issue(&ca, "alice", now).expect("a certificate");
        let s = secret(Secret::default(), &ca, &leaf);
        assert_eq!(reissue_reason(&s, &ca, now.unix_timestamp()), None);
        let late = now + VALIDITY - RENEW_BEFORE + Duration::hours(2);
        assert_eq!(
            reissue_reason(&s, &ca, late.unix_timestamp()),
            Some("the certificate expires within 30 days")
        );
        let other = pki::issue_ca("other", now, Duration::days(365)).expect("a CA");
        assert_eq!(
            reissue_reason(&s, &other, now.unix_timestamp()),
            Some("the certificate was signed by another CA")
        );
        assert_eq!(
            text(&s, KEYSTORE_FILE),
            format!("{}{}", leaf.key, leaf.cert),
            "Kafka's PEM keystore: the key, then the certificate"
        );
    }
}
