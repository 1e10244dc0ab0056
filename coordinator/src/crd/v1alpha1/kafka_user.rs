//! `KafkaUser`: a Kafka principal as a Kubernetes resource — its SCRAM-SHA-512
//! credentials, the ACLs it holds (exactly those in the spec) and its quotas.
//!
//! A superset of Koperator's `KafkaUser` (`clusterRef`, `secretName`, `topicGrants`),
//! so a Koperator manifest migrates by changing `apiVersion`; `authentication`, `acls`
//! and `quotas` are Stoker's. TLS client identities will arrive as another
//! `authentication.type`.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{ClusterRef, Condition};

/// The desired state of a Kafka user.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "kafka.stoker.io",
    version = "v1alpha1",
    kind = "KafkaUser",
    plural = "kafkausers",
    shortname = "ku",
    namespaced,
    status = "KafkaUserStatus",
    printcolumn = r#"{"name":"User","type":"string","jsonPath":".status.username"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".status.secret"}"#,
    printcolumn = r#"{"name":"ACLs","type":"integer","jsonPath":".status.aclCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaUserSpec {
    /// The KafkaCluster the user lives in.
    pub cluster_ref: ClusterRef,
    /// The Secret that receives the generated credentials (`username`, `password`,
    /// `sasl.jaas.config`; for `tls`: `tls.crt`, `tls.key`, `ca.crt`, `keystore.pem`);
    /// default: the resource's name. Unused when `authentication.passwordSecretRef`
    /// supplies the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// How the user proves who it is (default: SCRAM-SHA-512 with a generated password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<UserAuthentication>,
    /// Koperator's shorthand grants: `read` allows Describe and Read on the topic and
    /// Read on every consumer group; `write` allows Describe, Write and Create.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topic_grants: Vec<TopicGrant>,
    /// ACL rules, each on one resource. Together with `topicGrants` they are exactly
    /// the ACLs the user holds: any other ACL naming the user is removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acls: Vec<AclRule>,
    /// Quotas; a quota removed here is removed from Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<UserQuotas>,
}

/// How a user authenticates.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserAuthentication {
    /// The mechanism.
    #[serde(rename = "type", default)]
    pub type_: AuthenticationType,
    /// Take the password from this Secret key instead of generating one; changing the
    /// Secret rotates the credentials in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

/// An authentication mechanism.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum AuthenticationType {
    /// SASL/SCRAM-SHA-512.
    #[default]
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    /// A TLS client certificate signed by the KafkaCluster's CA (`sslSecrets`); the
    /// principal is `User:CN=<metadata.name>`.
    #[serde(rename = "tls")]
    Tls,
}

/// One key of a Secret in the user's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key (default `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Koperator's topic grant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopicGrant {
    /// The topic (or prefix, with `patternType: prefixed`).
    #[schemars(length(min = 1, max = 249))]
    pub topic_name: String,
    /// `read` or `write`.
    pub access_type: AccessType,
    /// `literal` (default) or `prefixed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern_type: Option<PatternType>,
}

/// A grant's access.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum AccessType {
    /// Consume.
    #[default]
    Read,
    /// Produce.
    Write,
}

/// How an ACL's resource name matches.
#[derive(
    schemars::JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
)]
#[serde(rename_all = "lowercase")]
pub enum PatternType {
    /// The exact name (`*` means every resource of the type).
    #[default]
    Literal,
    /// Every name starting with the given one.
    Prefixed,
}

/// One ACL rule: operations on one resource.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AclRule {
    /// The resource.
    pub resource: AclResource,
    /// The operations allowed (or denied).
    #[schemars(length(min = 1))]
    pub operations: Vec<AclOperation>,
    /// The client host the rule applies to (default `*`, every host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `allow` (default) or `deny`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<AclPermission>,
}

/// The resource an ACL rule is on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AclResource {
    /// `topic`, `group`, `cluster` or `transactionalId`.
    #[serde(rename = "type")]
    pub type_: AclResourceType,
    /// The name (`*` for all; not used for `cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `literal` (default) or `prefixed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern_type: Option<PatternType>,
}

/// A resource type ACLs can name.
#[derive(
    schemars::JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
)]
#[serde(rename_all = "camelCase")]
pub enum AclResourceType {
    /// A topic.
    #[default]
    Topic,
    /// A consumer group.
    Group,
    /// The cluster itself.
    Cluster,
    /// A transactional id.
    TransactionalId,
}

/// An ACL operation.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum AclOperation {
    /// Every operation.
    All,
    /// Read.
    Read,
    /// Write.
    Write,
    /// Create.
    Create,
    /// Delete.
    Delete,
    /// Alter.
    Alter,
    /// Describe.
    Describe,
    /// Inter-broker actions.
    ClusterAction,
    /// Describe configs.
    DescribeConfigs,
    /// Alter configs.
    AlterConfigs,
    /// Idempotent produce.
    IdempotentWrite,
}

/// Whether an ACL allows or denies.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum AclPermission {
    /// Allow.
    Allow,
    /// Deny (wins over any allow).
    Deny,
}

/// A user's quotas (Kafka's `user` quota entity).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserQuotas {
    /// Bytes per second the user may produce, per broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub producer_byte_rate: Option<i64>,
    /// Bytes per second the user may fetch, per broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub consumer_byte_rate: Option<i64>,
    /// Percentage of a broker's request-handler and network threads' time the user may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub request_percentage: Option<i64>,
}

/// The observed state of a Kafka user.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaUserStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, with a reason and message when not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The user's name in Kafka (principal `User:<username>`; `CN=<name>` for tls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The Secret holding the password (or the client certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The version (`uid/resourceVersion`) of that Secret whose password Kafka has: a
    /// different one means the password changed and is rotated. For tls: when the
    /// client certificate expires (RFC 3339); it is issued again 30 days before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_version: Option<String>,
    /// Number of ACLs the user holds in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl_count: Option<i32>,
    /// The ACLs the user holds, one line each (`allow Read on topic:orders (literal) from *`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acls: Vec<String>,
    /// The quotas in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<UserQuotas>,
}
