//! Reading what a Secret holds.

use k8s_openapi::api::core::v1::Secret;

/// The text under `key` in `secret`'s data (invalid UTF-8 replaced); empty when the
/// Secret has no such key.
pub fn text(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}
