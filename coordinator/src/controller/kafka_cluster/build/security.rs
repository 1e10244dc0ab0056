//! Security contexts of the Pods the coordinator builds: Pod Security Standard
//! `restricted` unless the spec says otherwise. Pure.

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};

/// The user (and group) Kafka runs as: the `apache/kafka` image's `appuser`. Set as a
/// number, because a kubelet cannot check `runAsNonRoot` against a user name.
pub const KAFKA_UID: i64 = 1000;
/// The agent image's user (`Dockerfile.agent`, distroless `nonroot`).
pub const AGENT_UID: i64 = 65532;

/// A Pod that runs as `uid` (never root), its volumes group-owned by `uid` so that user
/// can write them, under the runtime's default seccomp profile.
pub fn restricted_pod(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// A container with no privilege escalation and no capability; `uid` when it runs as a
/// user other than the Pod's; a read-only root filesystem when it writes only to volumes.
pub fn restricted_container(uid: Option<i64>, read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        run_as_non_root: Some(true),
        run_as_user: uid,
        read_only_root_filesystem: read_only_root.then_some(true),
        ..SecurityContext::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_meet_the_restricted_standard() {
        let pod = restricted_pod(KAFKA_UID);
        assert_eq!(pod.run_as_non_root, Some(true));
        assert_ne!(pod.run_as_user, Some(0));
        assert_eq!(
            pod.seccomp_profile.map(|p| p.type_).as_deref(),
            Some("RuntimeDefault")
        );
        let c = restricted_container(Some(AGENT_UID), true);
        assert_eq!(c.allow_privilege_escalation, Some(false));
        assert_eq!(
            c.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_owned()])
        );
        assert_eq!(c.read_only_root_filesystem, Some(true));
    }
}
