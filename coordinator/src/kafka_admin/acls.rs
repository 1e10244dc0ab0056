//! ACLs of one principal: DescribeAcls, CreateAcls and exact-match DeleteAcls (every
//! filter field set, so a delete never takes more than the one binding it names).

use stoker_kafka::kafka_protocol::{
    messages::{
        CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
        create_acls_request::AclCreation, delete_acls_request::DeleteAclsFilter,
    },
    protocol::StrBytes,
};

use super::{AdminError, KafkaAdmin, refused};

/// Kafka's wire codes for ACL fields (`org.apache.kafka.common.acl` and `resource`).
pub mod code {
    /// `ResourceType.ANY` (filters only).
    pub const RESOURCE_ANY: i8 = 1;
    /// `ResourceType.TOPIC`.
    pub const RESOURCE_TOPIC: i8 = 2;
    /// `ResourceType.GROUP`.
    pub const RESOURCE_GROUP: i8 = 3;
    /// `ResourceType.CLUSTER`.
    pub const RESOURCE_CLUSTER: i8 = 4;
    /// `ResourceType.TRANSACTIONAL_ID`.
    pub const RESOURCE_TRANSACTIONAL_ID: i8 = 5;
    /// `PatternType.ANY` (filters only).
    pub const PATTERN_ANY: i8 = 1;
    /// `PatternType.LITERAL`.
    pub const PATTERN_LITERAL: i8 = 3;
    /// `PatternType.PREFIXED`.
    pub const PATTERN_PREFIXED: i8 = 4;
    /// `AclOperation.ANY` (filters only).
    pub const OPERATION_ANY: i8 = 1;
    /// `AclPermissionType.ANY` (filters only).
    pub const PERMISSION_ANY: i8 = 1;
    /// `AclPermissionType.DENY`.
    pub const PERMISSION_DENY: i8 = 2;
    /// `AclPermissionType.ALLOW`.
    pub const PERMISSION_ALLOW: i8 = 3;
    /// `AclOperation` codes by name, in Kafka's order from `ALL` (2).
    pub const OPERATIONS: [(&str, i8); 13] = [
        ("All", 2),
        ("Read", 3),
        ("Write", 4),
        ("Create", 5),
        ("Delete", 6),
        ("Alter", 7),
        ("Describe", 8),
        ("ClusterAction", 9),
        ("DescribeConfigs", 10),
        ("AlterConfigs", 11),
        ("IdempotentWrite", 12),
        ("CreateTokens", 13),
        ("DescribeTokens", 14),
    ];
}

/// One ACL binding as Kafka stores it, in wire codes (so bindings Stoker would never
/// create, made by hand, can still be read and removed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    /// Resource type code.
    pub resource_type: i8,
    /// Resource name.
    pub resource_name: String,
    /// Pattern type code.
    pub pattern_type: i8,
    /// Principal, e.g. `User:alice`.
    pub principal: String,
    /// Host, `*` for any.
    pub host: String,
    /// Operation code.
    pub operation: i8,
    /// Permission type code.
    pub permission: i8,
}

impl std::fmt::Display for AclBinding {
    /// `allow Read on topic:orders (literal) from *`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let permission = match self.permission {
            code::PERMISSION_ALLOW => "allow",
            code::PERMISSION_DENY => "deny",
            _ => "unknown-permission",
        };
        let operation = code::OPERATIONS
            .iter()
            .find(|(_, c)| *c == self.operation)
            .map_or("UnknownOperation", |(n, _)| n);
        let resource = match self.resource_type {
            code::RESOURCE_TOPIC => "topic",
            code::RESOURCE_GROUP => "group",
            code::RESOURCE_CLUSTER => "cluster",
            code::RESOURCE_TRANSACTIONAL_ID => "transactionalId",
            _ => "resource",
        };
        let pattern = match self.pattern_type {
            code::PATTERN_PREFIXED => "prefixed",
            _ => "literal",
        };
        write!(
            f,
            "{permission} {operation} on {resource}:{} ({pattern}) from {}",
            self.resource_name, self.host
        )
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

impl KafkaAdmin {
    /// Every ACL binding naming `principal`.
    pub async fn acls(&self, principal: &str) -> Result<Vec<AclBinding>, AdminError> {
        let req = DescribeAclsRequest::default()
            .with_resource_type_filter(code::RESOURCE_ANY)
            .with_resource_name_filter(None)
            .with_pattern_type_filter(code::PATTERN_ANY)
            .with_principal_filter(Some(s(principal)))
            .with_host_filter(None)
            .with_operation(code::OPERATION_ANY)
            .with_permission_type(code::PERMISSION_ANY);
        let mut conn = self.connect().await?;
        let resp = conn
            .send("DescribeAcls", &req, 3)
            .await
            .map_err(|source| AdminError::Wire {
                operation: "describe ACLs",
                source,
            })?;
        if let Some(e) = refused("describe ACLs", resp.error_code, resp.error_message) {
            return Err(e);
        }
        let mut out = Vec::new();
        for r in resp.resources {
            for a in r.acls {
                out.push(AclBinding {
                    resource_type: r.resource_type,
                    resource_name: r.resource_name.to_string(),
                    pattern_type: r.pattern_type,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission: a.permission_type,
                });
            }
        }
        out.sort();
        Ok(out)
    }

    /// Creates `bindings` in one request; the first refusal is returned (Kafka applies
    /// each creation on its own, so the others stand and the next pass retries).
    pub async fn create_acls(&self, bindings: &[AclBinding]) -> Result<(), AdminError> {
        if bindings.is_empty() {
            return Ok(());
        }
        let req = CreateAclsRequest::default().with_creations(
            bindings
                .iter()
                .map(|b| {
                    AclCreation::default()
                        .with_resource_type(b.resource_type)
                        .with_resource_name(s(&b.resource_name))
                        .with_resource_pattern_type(b.pattern_type)
                        .with_principal(s(&b.principal))
                        .with_host(s(&b.host))
                        .with_operation(b.operation)
                        .with_permission_type(b.permission)
                })
                .collect(),
        );
        let mut conn = self.connect().await?;
        let resp = conn
            .send("CreateAcls", &req, 3)
            .await
            .map_err(|source| AdminError::Wire {
                operation: "create ACLs",
                source,
            })?;
        for r in resp.results {
            if let Some(e) = refused("create ACLs", r.error_code, r.error_message) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Deletes exactly `bindings` (each filter matches one binding and nothing else).
    pub async fn delete_acls(&self, bindings: &[AclBinding]) -> Result<(), AdminError> {
        if bindings.is_empty() {
            return Ok(());
        }
        let req = DeleteAclsRequest::default().with_filters(
            bindings
                .iter()
                .map(|b| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(b.resource_type)
                        .with_resource_name_filter(Some(s(&b.resource_name)))
                        .with_pattern_type_filter(b.pattern_type)
                        .with_principal_filter(Some(s(&b.principal)))
                        .with_host_filter(Some(s(&b.host)))
                        .with_operation(b.operation)
                        .with_permission_type(b.permission)
                })
                .collect(),
        );
        let mut conn = self.connect().await?;
        let resp = conn
            .send("DeleteAcls", &req, 3)
            .await
            .map_err(|source| AdminError::Wire {
                operation: "delete ACLs",
                source,
            })?;
        for r in resp.filter_results {
            if let Some(e) = refused("delete ACLs", r.error_code, r.error_message) {
                return Err(e);
            }
        }
        Ok(())
    }
}
