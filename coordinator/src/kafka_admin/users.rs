//! A user's SCRAM credentials (Describe/AlterUserScramCredentials) and quotas
//! (Describe/AlterClientQuotas on the `user` entity).
//!
//! Kafka stores only a salted password: the coordinator draws the salt, derives the
//! salted password with PBKDF2-HMAC-SHA-512 (SCRAM's `Hi()`, RFC 5802) and sends that,
//! so the password itself never travels to Kafka.

use std::{collections::BTreeMap, num::NonZeroU32};

use ring::rand::{SecureRandom, SystemRandom};
use stoker_kafka::kafka_protocol::{
    ResponseError,
    messages::{
        AlterClientQuotasRequest, AlterUserScramCredentialsRequest, DescribeClientQuotasRequest,
        DescribeUserScramCredentialsRequest,
        alter_client_quotas_request::{EntityData, EntryData, OpData},
        alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion},
        describe_client_quotas_request::ComponentData,
        describe_user_scram_credentials_request::UserName,
    },
    protocol::StrBytes,
};

use super::{AdminError, KafkaAdmin, refused};

/// Kafka's code for SCRAM-SHA-512.
pub const SCRAM_SHA_512: i8 = 2;
/// PBKDF2 iterations: Kafka's minimum for SCRAM-SHA-512 and its tools' default.
pub const SCRAM_ITERATIONS: u32 = 4096;
const SALT_BYTES: usize = 32;
/// `ClientQuotaFilterComponent` match type EXACT.
const MATCH_EXACT: i8 = 0;
const USER_ENTITY: &str = "user";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// The salted password SCRAM-SHA-512 stores: PBKDF2-HMAC-SHA-512 of the password.
pub fn salted_password(password: &str, salt: &[u8], iterations: NonZeroU32) -> [u8; 64] {
    let mut out = [0; 64];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA512,
        iterations,
        salt,
        password.as_bytes(),
        &mut out,
    );
    out
}

/// A new random password: 32 characters from `[A-Za-z0-9]` (190 bits).
pub fn generate_password() -> Result<String, AdminError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut buf = [0u8; 64];
        rng.fill(&mut buf).map_err(|_| AdminError::Random)?;
        // Rejection sampling keeps every character equally likely.
        out.extend(
            buf.iter()
                .filter(|b| usize::from(**b) < 248)
                .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
                .take(32 - out.len()),
        );
    }
    Ok(out)
}

impl KafkaAdmin {
    /// The SCRAM mechanisms (Kafka codes) `user` has credentials for.
    pub async fn scram_mechanisms(&self, user: &str) -> Result<Vec<i8>, AdminError> {
        let req = DescribeUserScramCredentialsRequest::default()
            .with_users(Some(vec![UserName::default().with_name(s(user))]));
        let mut conn = self.connect().await?;
        let resp = conn
            .send("DescribeUserScramCredentials", &req, 0)
            .await
            .map_err(|source| AdminError::Wire {
                operation: "describe SCRAM credentials",
                source,
            })?;
        if let Some(e) = refused(
            "describe SCRAM credentials",
            resp.error_code,
            resp.error_message,
        ) {
            return Err(e);
        }
        let mut out = Vec::new();
        for r in resp.results {
            if ResponseError::try_from_code(r.error_code) == Some(ResponseError::ResourceNotFound) {
                continue;
            }
            if let Some(e) = refused("describe SCRAM credentials", r.error_code, r.error_message) {
                return Err(e);
            }
            out.extend(r.credential_infos.iter().map(|c| c.mechanism));
        }
        Ok(out)
    }

    /// Sets `user`'s SCRAM-SHA-512 password (creating or rotating it).
    pub async fn upsert_scram_sha512(&self, user: &str, password: &str) -> Result<(), AdminError> {
        let mut salt = [0u8; SALT_BYTES];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| AdminError::Random)?;
        let iterations = NonZeroU32::new(SCRAM_ITERATIONS).expect("4096 is not zero");
        let salted = salted_password(password, &salt, iterations);
        let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            ScramCredentialUpsertion::default()
                .with_name(s(user))
                .with_mechanism(SCRAM_SHA_512)
                .with_iterations(i32::try_from(SCRAM_ITERATIONS).unwrap_or(i32::MAX))
                .with_salt(bytes::Bytes::copy_from_slice(&salt))
                .with_salted_password(bytes::Bytes::copy_from_slice(&salted)),
        ]);
        self.alter_scram(req, "set SCRAM credentials").await
    }

    /// Removes `user`'s SCRAM-SHA-512 credentials (absent ones are fine).
    pub async fn delete_scram_sha512(&self, user: &str) -> Result<(), AdminError> {
        let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![
            ScramCredentialDeletion::default()
                .with_name(s(user))
                .with_mechanism(SCRAM_SHA_512),
        ]);
        self.alter_scram(req, "delete SCRAM credentials").await
    }

    async fn alter_scram(
        &self,
        req: AlterUserScramCredentialsRequest,
        operation: &'static str,
    ) -> Result<(), AdminError> {
        let mut conn = self.connect().await?;
        let resp = conn
            .send("AlterUserScramCredentials", &req, 0)
            .await
            .map_err(|source| AdminError::Wire { operation, source })?;
        for r in resp.results {
            if ResponseError::try_from_code(r.error_code) == Some(ResponseError::ResourceNotFound) {
                continue;
            }
            if let Some(e) = refused(operation, r.error_code, r.error_message) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The quotas set on exactly the `user` entity (not user+client-id ones).
    pub async fn user_quotas(&self, user: &str) -> Result<BTreeMap<String, f64>, AdminError> {
        let req = DescribeClientQuotasRequest::default()
            .with_components(vec![
                ComponentData::default()
                    .with_entity_type(s(USER_ENTITY))
                    .with_match_type(MATCH_EXACT)
                    .with_match(Some(s(user))),
            ])
            .with_strict(true);
        let mut conn = self.connect().await?;
        let resp = conn
            .send("DescribeClientQuotas", &req, 1)
            .await
            .map_err(|source| AdminError::Wire {
                operation: "describe quotas",
                source,
            })?;
        if let Some(e) = refused("describe quotas", resp.error_code, resp.error_message) {
            return Err(e);
        }
        Ok(resp
            .entries
            .unwrap_or_default()
            .into_iter()
            .flat_map(|e| e.values)
            .map(|v| (v.key.to_string(), v.value))
            .collect())
    }

    /// Sets (`Some`) and removes (`None`) `user`'s quotas in one request; with
    /// `validate_only` Kafka checks them without applying.
    pub async fn alter_user_quotas(
        &self,
        user: &str,
        ops: &BTreeMap<String, Option<f64>>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        if ops.is_empty() {
            return Ok(());
        }
        let req = AlterClientQuotasRequest::default()
            .with_entries(vec![
                EntryData::default()
                    .with_entity(vec![
                        EntityData::default()
                            .with_entity_type(s(USER_ENTITY))
                            .with_entity_name(Some(s(user))),
                    ])
                    .with_ops(
                        ops.iter()
                            .map(|(k, v)| {
                                OpData::default()
                                    .with_key(s(k))
                                    .with_value(v.unwrap_or_default())
                                    .with_remove(v.is_none())
                            })
                            .collect(),
                    ),
            ])
            .with_validate_only(validate_only);
        let mut conn = self.connect().await?;
        let resp = conn
            .send("AlterClientQuotas", &req, 1)
            .await
            .map_err(|source| AdminError::Wire {
                operation: "change quotas",
                source,
            })?;
        for e in resp.entries {
            if let Some(e) = refused("change quotas", e.error_code, e.error_message) {
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published PBKDF2-HMAC-SHA512 vector for RFC 6070's first inputs.
    #[test]
    fn salted_password_is_pbkdf2_hmac_sha512() {
        let out = salted_password("password", b"salt", NonZeroU32::new(1).expect("1"));
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce"
        );
    }

    #[test]
    fn generated_passwords_are_long_alphanumeric_and_differ() {
        let a = generate_password().expect("random");
        let b = generate_password().expect("random");
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
