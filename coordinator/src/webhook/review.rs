//! One AdmissionReview in, one out: the webhook's decision, pure. A Pod being created
//! that asks for the agent gets the injection patch or a denial that says what to fix;
//! any other request (another kind, another operation, a Pod that did not ask) is
//! allowed unchanged, so a webhook configured too broadly never blocks what it does not
//! own. A body that is not an AdmissionReview is an error the server answers with 400.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};

use super::inject::{self, Injection};

/// Why a body is not a review the webhook can answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON, or not an AdmissionReview.
    #[error("the body is not an AdmissionReview (admission.k8s.io/v1): {0}")]
    Malformed(#[from] serde_json::Error),
    /// An AdmissionReview with no request in it.
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// What the webhook injects and where it refuses to.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The agent image injected.
    pub agent_image: String,
    /// Namespaces whose Pods are never injected (a request from one is denied: the
    /// webhook configuration's namespaceSelector should have kept it away).
    pub forbidden_namespaces: BTreeSet<String>,
}

/// What was decided, for the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The agent was injected.
    Injected,
    /// Allowed as it is (not asked for, already injected, not a Pod creation).
    Unchanged,
    /// Refused, with the reason in the response.
    Denied,
}

impl Outcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Injected => "injected",
            Self::Unchanged => "unchanged",
            Self::Denied => "denied",
        }
    }
}

/// The response to the review in `body`.
pub fn review(
    body: &[u8],
    policy: &Policy,
) -> Result<(AdmissionReview<DynamicObject>, Outcome), ReviewError> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)?;
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| ReviewError::NoRequest)?;
    let (response, outcome) = decide(&request, policy);
    Ok((response.into_review(), outcome))
}

fn decide(
    request: &AdmissionRequest<DynamicObject>,
    policy: &Policy,
) -> (AdmissionResponse, Outcome) {
    let allowed = AdmissionResponse::from(request);
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    if !is_pod || request.operation != Operation::Create || request.sub_resource.is_some() {
        return (allowed, Outcome::Unchanged);
    }
    let Some(object) = request.object.as_ref() else {
        return (
            allowed.deny("the Pod creation carries no Pod object"),
            Outcome::Denied,
        );
    };
    let pod: Pod = match serde_json::to_value(object).and_then(serde_json::from_value) {
        Ok(pod) => pod,
        Err(e) => {
            return (
                allowed.deny(format!("the object is not a valid Pod: {e}")),
                Outcome::Denied,
            );
        }
    };
    let namespace = request
        .namespace
        .as_deref()
        .or(pod.metadata.namespace.as_deref())
        .unwrap_or_default();
    match inject::inject(&pod, &policy.agent_image) {
        Injection::Unchanged => (allowed, Outcome::Unchanged),
        Injection::Denied(why) => (allowed.deny(why), Outcome::Denied),
        Injection::Patch(_) if policy.forbidden_namespaces.contains(namespace) => (
            allowed.deny(format!(
                "stoker-agent is not injected into namespace {namespace}: it is excluded by the coordinator's --webhook-forbidden-namespaces; run the Kafka Pod in another namespace or remove the label {}",
                inject::INJECT_LABEL
            )),
            Outcome::Denied,
        ),
        Injection::Patch(ops) => {
            match serde_json::from_value::<json_patch::Patch>(serde_json::Value::Array(ops))
                .map_err(|e| e.to_string())
                .and_then(|p| allowed.clone().with_patch(p).map_err(|e| e.to_string()))
            {
                Ok(patched) => (patched, Outcome::Injected),
                // Never half-injected: a patch that cannot be sent is a denial.
                Err(e) => (
                    allowed.deny(format!("the injection patch could not be encoded: {e}")),
                    Outcome::Denied,
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn policy() -> Policy {
        Policy {
            agent_image: "stoker-agent:test".into(),
            forbidden_namespaces: BTreeSet::from(["kube-system".to_owned()]),
        }
    }

    fn request(kind: &str, operation: &str, namespace: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "0b1c",
                "kind": {"group": "", "version": "v1", "kind": kind},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": kind},
                "namespace": namespace,
                "operation": operation,
                "userInfo": {"username": "system:serviceaccount:kube-system:statefulset-controller"},
                "object": object,
                "dryRun": false,
            }
        }))
        .expect("json")
    }

    fn kafka_pod(annotations: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "kafka-0",
                "labels": {"kafka.stoker.io/agent": "inject", "app.kubernetes.io/instance": "events"},
                "annotations": annotations,
            },
            "spec": {"containers": [{"name": "kafka", "image": "apache/kafka:4.1.1"}]},
        })
    }

    fn response(body: &[u8]) -> (Value, Outcome) {
        let (review, outcome) = review(body, &policy()).expect("a review");
        (
            serde_json::to_value(review).expect("json")["response"].clone(),
            outcome,
        )
    }

    #[test]
    fn a_pod_that_asks_gets_a_json_patch_and_keeps_the_uid() {
        let (r, outcome) = response(&request("Pod", "CREATE", "kafka", kafka_pod(json!({}))));
        assert_eq!(outcome, Outcome::Injected);
        assert_eq!(r["uid"], "0b1c");
        assert_eq!(r["allowed"], true);
        assert_eq!(r["patchType"], "JSONPatch");
        // The patch bytes (kube-rs sends them as a byte array, which the API server's
        // decoder takes like base64): a JSON Patch that adds the agent.
        let bytes: Vec<u8> = serde_json::from_value(r["patch"].clone()).expect("patch bytes");
        let ops: Vec<Value> = serde_json::from_slice(&bytes).expect("a JSON Patch");
        assert!(
            ops.iter().any(|op| op["path"] == "/spec/initContainers"),
            "{ops:?}"
        );
    }

    #[test]
    fn what_the_webhook_does_not_own_is_allowed_unchanged() {
        for body in [
            request(
                "ConfigMap",
                "CREATE",
                "kafka",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
            ),
            request("Pod", "UPDATE", "kafka", kafka_pod(json!({}))),
            request("Pod", "DELETE", "kafka", kafka_pod(json!({}))),
        ] {
            let (r, outcome) = response(&body);
            assert_eq!(outcome, Outcome::Unchanged);
            assert_eq!(r["allowed"], true);
            assert!(r.get("patch").is_none());
        }
    }

    #[test]
    fn bad_requests_are_denied_with_what_to_fix() {
        let (r, outcome) = response(&request(
            "Pod",
            "CREATE",
            "kafka",
            kafka_pod(json!({"kafka.stoker.io/roles": "leader"})),
        ));
        assert_eq!(outcome, Outcome::Denied);
        assert_eq!(r["allowed"], false);
        assert!(
            r["status"]["message"]
                .as_str()
                .expect("message")
                .contains("kafka.stoker.io/roles")
        );

        let (r, outcome) = response(&request(
            "Pod",
            "CREATE",
            "kube-system",
            kafka_pod(json!({})),
        ));
        assert_eq!(outcome, Outcome::Denied);
        assert!(
            r["status"]["message"]
                .as_str()
                .expect("message")
                .contains("namespace kube-system")
        );

        assert!(matches!(
            review(b"{not json", &policy()),
            Err(ReviewError::Malformed(_))
        ));
        assert!(matches!(
            review(
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                &policy()
            ),
            Err(ReviewError::NoRequest)
        ));
    }
}
