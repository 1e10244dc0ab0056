//! Pure rules of the KafkaUser controller: what a spec means in Kafka's terms (the
//! exact set of ACL bindings, the quota values) and what must change to get there.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    crd::v1alpha1::{
        AccessType, AclOperation, AclPermission, AclResourceType, AclRule, AuthenticationType,
        KafkaUserSpec, PatternType, UserQuotas,
    },
    kafka_admin::{AclBinding, acls::code},
};

/// The name Kafka gives the cluster resource in ACLs.
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";
/// Quota keys a KafkaUser manages; any other quota on the user is left alone.
pub const QUOTA_PRODUCER: &str = "producer_byte_rate";
/// See [`QUOTA_PRODUCER`].
pub const QUOTA_CONSUMER: &str = "consumer_byte_rate";
/// See [`QUOTA_PRODUCER`].
pub const QUOTA_REQUEST: &str = "request_percentage";

/// Why a spec cannot be applied: a condition reason and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The condition reason.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

fn invalid(message: String) -> Invalid {
    Invalid {
        reason: "InvalidUser",
        message,
    }
}

/// The principal ACLs name for `username`.
pub fn principal(username: &str) -> String {
    format!("User:{username}")
}

/// Whether the user authenticates with a client certificate.
pub fn is_tls(spec: &KafkaUserSpec) -> bool {
    spec.authentication
        .as_ref()
        .is_some_and(|a| a.type_ == AuthenticationType::Tls)
}

/// The name Kafka knows user `name` by (its principal is `User:<that>`, its quotas are
/// on that user entity): `name` for SCRAM, its certificate's subject `CN=<name>` for
/// TLS (Kafka's default mapping of a certificate to a principal).
pub fn kafka_name(spec: &KafkaUserSpec, name: &str) -> String {
    if is_tls(spec) {
        format!("CN={name}")
    } else {
        name.to_owned()
    }
}

fn operation_code(op: AclOperation) -> i8 {
    let name = match op {
        AclOperation::All => "All",
        AclOperation::Read => "Read",
        AclOperation::Write => "Write",
        AclOperation::Create => "Create",
        AclOperation::Delete => "Delete",
        AclOperation::Alter => "Alter",
        AclOperation::Describe => "Describe",
        AclOperation::ClusterAction => "ClusterAction",
        AclOperation::DescribeConfigs => "DescribeConfigs",
        AclOperation::AlterConfigs => "AlterConfigs",
        AclOperation::IdempotentWrite => "IdempotentWrite",
    };
    code::OPERATIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, c)| *c)
}

/// The operations Kafka defines for each resource type (Kafka's "Operations and
/// Resources on Protocols" table).
fn allowed_operations(t: AclResourceType) -> &'static [AclOperation] {
    use AclOperation::*;
    match t {
        AclResourceType::Topic => &[
            All,
            Read,
            Write,
            Create,
            Delete,
            Alter,
            Describe,
            DescribeConfigs,
            AlterConfigs,
        ],
        AclResourceType::Group => &[All, Read, Describe, Delete],
        AclResourceType::Cluster => &[
            All,
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        AclResourceType::TransactionalId => &[All, Describe, Write],
    }
}

fn resource_code(t: AclResourceType) -> i8 {
    match t {
        AclResourceType::Topic => code::RESOURCE_TOPIC,
        AclResourceType::Group => code::RESOURCE_GROUP,
        AclResourceType::Cluster => code::RESOURCE_CLUSTER,
        AclResourceType::TransactionalId => code::RESOURCE_TRANSACTIONAL_ID,
    }
}

fn pattern_code(p: Option<PatternType>) -> i8 {
    match p.unwrap_or_default() {
        PatternType::Literal => code::PATTERN_LITERAL,
        PatternType::Prefixed => code::PATTERN_PREFIXED,
    }
}

fn type_name(t: AclResourceType) -> &'static str {
    match t {
        AclResourceType::Topic => "topic",
        AclResourceType::Group => "group",
        AclResourceType::Cluster => "cluster",
        AclResourceType::TransactionalId => "transactionalId",
    }
}

/// Checks what the schema cannot: the authentication type is supported, and every ACL
/// rule names its resource properly and only operations Kafka defines for it.
pub fn validate(spec: &KafkaUserSpec) -> Result<(), Invalid> {
    if let Some(auth) = &spec.authentication
        && auth.type_ == AuthenticationType::Tls
        && auth.password_secret_ref.is_some()
    {
        return Err(Invalid {
            reason: "InvalidUser",
            message: "authentication.passwordSecretRef is for scram-sha-512; a tls user gets a client certificate issued into spec.secretName, so remove passwordSecretRef".into(),
        });
    }
    for (i, rule) in spec.acls.iter().enumerate() {
        validate_rule(i, rule)?;
    }
    Ok(())
}

fn validate_rule(i: usize, rule: &AclRule) -> Result<(), Invalid> {
    let t = rule.resource.type_;
    let at = format!("spec.acls[{i}]");
    match (t, rule.resource.name.as_deref()) {
        (AclResourceType::Cluster, None | Some(CLUSTER_RESOURCE_NAME))
            if rule.resource.pattern_type == Some(PatternType::Prefixed) =>
        {
            return Err(invalid(format!(
                "{at}: a cluster rule cannot be prefixed; remove resource.patternType"
            )));
        }
        (AclResourceType::Cluster, None | Some(CLUSTER_RESOURCE_NAME)) => {}
        (AclResourceType::Cluster, Some(other)) => {
            return Err(invalid(format!(
                "{at}: a cluster rule names no resource (Kafka calls it {CLUSTER_RESOURCE_NAME}), not {other:?}; remove resource.name"
            )));
        }
        (_, None | Some("")) => {
            return Err(invalid(format!(
                "{at}: a {} rule needs resource.name (use \"*\" for every {})",
                type_name(t),
                type_name(t)
            )));
        }
        _ => {}
    }
    let allowed = allowed_operations(t);
    if let Some(op) = rule.operations.iter().find(|op| !allowed.contains(op)) {
        return Err(invalid(format!(
            "{at}: {op:?} is not an operation on a {}; allowed: {}",
            type_name(t),
            allowed
                .iter()
                .map(|o| format!("{o:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if rule.host.as_deref() == Some("") {
        return Err(invalid(format!(
            "{at}: host is empty; use \"*\" for every host or leave it out"
        )));
    }
    Ok(())
}

/// The exact set of ACL bindings `spec` gives `username`: `topicGrants` expanded as
/// Koperator does, then `acls`, one binding per operation.
pub fn desired_acls(spec: &KafkaUserSpec, username: &str) -> BTreeSet<AclBinding> {
    let principal = principal(username);
    let binding =
        |t: AclResourceType, name: &str, pattern: i8, op: AclOperation, perm: i8| AclBinding {
            resource_type: resource_code(t),
            resource_name: name.to_owned(),
            pattern_type: pattern,
            principal: principal.clone(),
            host: "*".into(),
            operation: operation_code(op),
            permission: perm,
        };
    let mut out = BTreeSet::new();
    for g in &spec.topic_grants {
        let pattern = pattern_code(g.pattern_type);
        let ops: &[AclOperation] = match g.access_type {
            AccessType::Read => &[AclOperation::Describe, AclOperation::Read],
            AccessType::Write => &[
                AclOperation::Describe,
                AclOperation::Write,
                AclOperation::Create,
            ],
        };
        for op in ops {
            out.insert(binding(
                AclResourceType::Topic,
                &g.topic_name,
                pattern,
                *op,
                code::PERMISSION_ALLOW,
            ));
        }
        if g.access_type == AccessType::Read {
            out.insert(binding(
                AclResourceType::Group,
                "*",
                code::PATTERN_LITERAL,
                AclOperation::Read,
                code::PERMISSION_ALLOW,
            ));
        }
    }
    for rule in &spec.acls {
        let t = rule.resource.type_;
        let name = match t {
            AclResourceType::Cluster => CLUSTER_RESOURCE_NAME,
            _ => rule.resource.name.as_deref().unwrap_or("*"),
        };
        let perm = match rule.type_.unwrap_or(AclPermission::Allow) {
            AclPermission::Allow => code::PERMISSION_ALLOW,
            AclPermission::Deny => code::PERMISSION_DENY,
        };
        for op in &rule.operations {
            let mut b = binding(t, name, pattern_code(rule.resource.pattern_type), *op, perm);
            b.host = rule.host.clone().unwrap_or_else(|| "*".into());
            out.insert(b);
        }
    }
    out
}

/// What to create and what to delete so that Kafka holds exactly `desired`.
pub fn acl_changes(
    desired: &BTreeSet<AclBinding>,
    actual: &[AclBinding],
) -> (Vec<AclBinding>, Vec<AclBinding>) {
    let actual: BTreeSet<&AclBinding> = actual.iter().collect();
    let create = desired
        .iter()
        .filter(|b| !actual.contains(b))
        .cloned()
        .collect();
    let delete = actual
        .into_iter()
        .filter(|b| !desired.contains(*b))
        .cloned()
        .collect();
    (create, delete)
}

/// The quota values `quotas` asks for, by Kafka key.
pub fn desired_quotas(quotas: Option<&UserQuotas>) -> BTreeMap<&'static str, Option<f64>> {
    let q = quotas.cloned().unwrap_or_default();
    #[allow(clippy::cast_precision_loss)] // byte rates far below 2^53
    let f = |v: Option<i64>| v.map(|v| v as f64);
    BTreeMap::from([
        (QUOTA_PRODUCER, f(q.producer_byte_rate)),
        (QUOTA_CONSUMER, f(q.consumer_byte_rate)),
        (QUOTA_REQUEST, f(q.request_percentage)),
    ])
}

/// The quota operations (`Some` sets, `None` removes) that take `actual` to the spec,
/// touching only the keys a KafkaUser manages.
pub fn quota_changes(
    quotas: Option<&UserQuotas>,
    actual: &BTreeMap<String, f64>,
) -> BTreeMap<String, Option<f64>> {
    desired_quotas(quotas)
        .into_iter()
        .filter(|(k, want)| actual.get(*k).copied() != *want)
        .map(|(k, want)| (k.to_owned(), want))
        .collect()
}

/// Quotas as the status reports them.
pub fn observed_quotas(actual: &BTreeMap<String, f64>) -> Option<UserQuotas> {
    #[allow(clippy::cast_possible_truncation)] // Kafka holds what we set: whole numbers
    let get = |k: &str| actual.get(k).map(|v| v.round() as i64);
    let q = UserQuotas {
        producer_byte_rate: get(QUOTA_PRODUCER),
        consumer_byte_rate: get(QUOTA_CONSUMER),
        request_percentage: get(QUOTA_REQUEST),
    };
    (q != UserQuotas::default()).then_some(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::v1alpha1::{AclResource, TopicGrant, UserAuthentication};

    fn rule(t: AclResourceType, name: Option<&str>, ops: &[AclOperation]) -> AclRule {
        AclRule {
            resource: AclResource {
                type_: t,
                name: name.map(str::to_owned),
                pattern_type: None,
            },
            operations: ops.to_vec(),
            host: None,
            type_: None,
        }
    }

    #[test]
    fn read_and_write_grants_expand_like_koperator() {
        let spec = KafkaUserSpec {
            topic_grants: vec![
                TopicGrant {
                    topic_name: "orders".into(),
                    access_type: AccessType::Read,
                    pattern_type: None,
                },
                TopicGrant {
                    topic_name: "audit-".into(),
                    access_type: AccessType::Write,
                    pattern_type: Some(PatternType::Prefixed),
                },
            ],
            ..Default::default()
        };
        let acls: Vec<String> = desired_acls(&spec, "alice")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            acls,
            [
                "allow Write on topic:audit- (prefixed) from *",
                "allow Create on topic:audit- (prefixed) from *",
                "allow Describe on topic:audit- (prefixed) from *",
                "allow Read on topic:orders (literal) from *",
                "allow Describe on topic:orders (literal) from *",
                "allow Read on group:* (literal) from *",
            ]
        );
        assert!(
            desired_acls(&spec, "alice")
                .iter()
                .all(|b| b.principal == "User:alice")
        );
    }

    #[test]
    fn rules_become_one_binding_per_operation_with_host_and_deny() {
        let mut r = rule(
            AclResourceType::Group,
            Some("billing"),
            &[AclOperation::Read, AclOperation::Describe],
        );
        r.host = Some("10.0.0.1".into());
        r.type_ = Some(AclPermission::Deny);
        let spec = KafkaUserSpec {
            acls: vec![
                r,
                rule(
                    AclResourceType::Cluster,
                    None,
                    &[AclOperation::IdempotentWrite],
                ),
            ],
            ..Default::default()
        };
        let acls: Vec<String> = desired_acls(&spec, "bob")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            acls,
            [
                "deny Read on group:billing (literal) from 10.0.0.1",
                "deny Describe on group:billing (literal) from 10.0.0.1",
                "allow IdempotentWrite on cluster:kafka-cluster (literal) from *",
            ]
        );
    }

    #[test]
    fn changes_create_the_missing_and_delete_everything_else() {
        let spec = KafkaUserSpec {
            acls: vec![rule(
                AclResourceType::Topic,
                Some("t"),
                &[AclOperation::Read, AclOperation::Write],
            )],
            ..Default::default()
        };
        let desired = desired_acls(&spec, "u");
        let mut actual: Vec<AclBinding> = desired.iter().take(1).cloned().collect();
        let mut stray = actual[0].clone();
        stray.resource_name = "other".into();
        actual.push(stray.clone());
        let (create, delete) = acl_changes(&desired, &actual);
        assert_eq!(create.len(), 1);
        assert!(!actual.contains(&create[0]));
        assert_eq!(delete, vec![stray]);
        let (create, delete) = acl_changes(&desired, &desired.iter().cloned().collect::<Vec<_>>());
        assert!(create.is_empty() && delete.is_empty());
    }

    #[test]
    fn validation_names_the_rule_and_the_fix() {
        let spec = |r: AclRule| KafkaUserSpec {
            acls: vec![r],
            ..Default::default()
        };
        let e = validate(&spec(rule(
            AclResourceType::Group,
            Some("g"),
            &[AclOperation::Write],
        )))
        .expect_err("Write on a group");
        assert!(
            e.message
                .starts_with("spec.acls[0]: Write is not an operation on a group"),
            "{}",
            e.message
        );
        let e = validate(&spec(rule(
            AclResourceType::Topic,
            None,
            &[AclOperation::Read],
        )))
        .expect_err("no name");
        assert!(e.message.contains("needs resource.name"), "{}", e.message);
        let e = validate(&spec(rule(
            AclResourceType::Cluster,
            Some("c"),
            &[AclOperation::Describe],
        )))
        .expect_err("named cluster");
        assert!(e.message.contains("remove resource.name"), "{}", e.message);
        let mut tls = KafkaUserSpec {
            authentication: Some(UserAuthentication {
                type_: AuthenticationType::Tls,
                password_secret_ref: None,
            }),
            ..Default::default()
        };
        assert!(validate(&tls).is_ok());
        assert_eq!(kafka_name(&tls, "alice"), "CN=alice");
        assert_eq!(kafka_name(&KafkaUserSpec::default(), "alice"), "alice");
        if let Some(a) = tls.authentication.as_mut() {
            a.password_secret_ref = Some(Default::default());
        }
        let e = validate(&tls).expect_err("a password for a tls user");
        assert!(e.message.contains("passwordSecretRef"), "{}", e.message);
        assert!(validate(&KafkaUserSpec::default()).is_ok());
    }

    #[test]
    fn quota_changes_set_and_remove_only_managed_keys() {
        let actual = BTreeMap::from([
            (QUOTA_PRODUCER.to_owned(), 1024.0),
            (QUOTA_REQUEST.to_owned(), 50.0),
            ("controller_mutation_rate".to_owned(), 10.0),
        ]);
        let q = UserQuotas {
            producer_byte_rate: Some(2048),
            consumer_byte_rate: Some(4096),
            request_percentage: None,
        };
        let changes = quota_changes(Some(&q), &actual);
        assert_eq!(
            changes,
            BTreeMap::from([
                (QUOTA_CONSUMER.to_owned(), Some(4096.0)),
                (QUOTA_PRODUCER.to_owned(), Some(2048.0)),
                (QUOTA_REQUEST.to_owned(), None),
            ])
        );
        assert!(quota_changes(None, &BTreeMap::new()).is_empty());
        assert_eq!(
            observed_quotas(&actual).and_then(|q| q.request_percentage),
            Some(50)
        );
    }
}
