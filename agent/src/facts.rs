//! The Pod's facts: downward-API environment variables, secret files, and the rack
//! from the Node's labels (read through the Kubernetes API, as a Pod cannot see its
//! Node's labels through the downward API).

use std::collections::BTreeMap;

use crate::{
    config::ValidatedConfig,
    render::{PodFacts, SecretValues},
};

/// Why the Pod's facts are incomplete.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// A downward-API variable is missing.
    #[error(
        "failed to read the Pod's facts: environment variable {0} is not set; the Pod spec must set it from the downward API"
    )]
    MissingEnv(&'static str),
    /// A secret file could not be read; the message names the key and path, never the content.
    #[error("failed to read the secret file for `{key}` at {path}: {message}")]
    SecretFile {
        /// The config key.
        key: String,
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// A secret file's content would corrupt server.properties.
    #[error(
        "the secret file for `{key}` at {path} holds more than one line; store the value on a single line"
    )]
    SecretMultiline {
        /// The config key.
        key: String,
        /// The file.
        path: String,
    },
    /// The rack could not be determined.
    #[error("failed to read the rack of node {node} from its labels {labels:?}: {message}")]
    Rack {
        /// The Node.
        node: String,
        /// The label names.
        labels: Vec<String>,
        /// What went wrong.
        message: String,
    },
}

/// Reads `POD_NAME`, `POD_NAMESPACE`, `POD_IP`, `NODE_NAME` and `HOST_IP`.
pub fn pod_facts_from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<PodFacts, FactsError> {
    let need = |name: &'static str| {
        lookup(name)
            .filter(|v| !v.is_empty())
            .ok_or(FactsError::MissingEnv(name))
    };
    Ok(PodFacts {
        pod_name: need("POD_NAME")?,
        namespace: need("POD_NAMESPACE")?,
        pod_ip: need("POD_IP")?,
        node_name: lookup("NODE_NAME").unwrap_or_default(),
        host_ip: lookup("HOST_IP").filter(|v| !v.is_empty()),
        rack: None,
        config_dir: std::path::PathBuf::new(),
    })
}

/// Checks that the Pod's facts hold what the config's listeners advertise: the
/// Node's address (`HOST_IP`) for a listener advertised on it.
pub fn check_advertised(config: &ValidatedConfig, facts: &PodFacts) -> Result<(), FactsError> {
    let needs_node = config.listeners.iter().any(|l| l.advertise_node_address);
    if needs_node && facts.host_ip.is_none() {
        return Err(FactsError::MissingEnv("HOST_IP"));
    }
    Ok(())
}

/// Reads every secret file the config names. A single trailing newline (as
/// `kubectl create secret --from-file` often leaves) is dropped.
pub fn read_secrets(config: &ValidatedConfig) -> Result<SecretValues, FactsError> {
    let mut values = BTreeMap::new();
    for (key, path) in &config.secret_files {
        let raw = std::fs::read_to_string(path).map_err(|e| FactsError::SecretFile {
            key: key.clone(),
            path: path.display().to_string(),
            message: e.kind().to_string(),
        })?;
        let value = raw.strip_suffix('\n').unwrap_or(&raw);
        let value = value.strip_suffix('\r').unwrap_or(value);
        if value.contains(['\n', '\r', '\0']) {
            return Err(FactsError::SecretMultiline {
                key: key.clone(),
                path: path.display().to_string(),
            });
        }
        values.insert(key.clone(), value.to_owned());
    }
    Ok(SecretValues(values))
}

/// broker.rack from a Node's labels: the values of `rack_labels`, in order, joined
/// with commas (Koperator's convention). Every label must be present.
pub fn rack_from_labels(
    node: &str,
    labels: &BTreeMap<String, String>,
    rack_labels: &[String],
) -> Result<String, FactsError> {
    let mut parts = Vec::new();
    for name in rack_labels {
        match labels.get(name) {
            Some(v) => parts.push(v.as_str()),
            None => {
                return Err(FactsError::Rack {
                    node: node.to_owned(),
                    labels: rack_labels.to_vec(),
                    message: format!(
                        "the Node has no label {name}; label the Node or remove it from rackAwareness.labels"
                    ),
                });
            }
        }
    }
    Ok(parts.join(","))
}

/// Reads the Node's labels through the Kubernetes API (in-cluster config).
pub async fn node_labels(node: &str) -> Result<BTreeMap<String, String>, FactsError> {
    use k8s_openapi::api::core::v1::Node;
    let fail = |message: String| FactsError::Rack {
        node: node.to_owned(),
        labels: vec![],
        message,
    };
    let client = kube::Client::try_default()
        .await
        .map_err(|e| fail(format!("no Kubernetes client: {e}")))?;
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let n = nodes
        .get(node)
        .await
        .map_err(|e| fail(format!("get Node: {e}")))?;
    Ok(n.metadata.labels.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_downward_api_variables_are_named() {
        let err = pod_facts_from_env(|k| (k != "POD_IP").then(|| "x".to_owned()))
            .expect_err("POD_IP missing");
        assert!(err.to_string().contains("POD_IP"));
    }

    #[test]
    fn a_listener_advertised_on_the_node_needs_host_ip() {
        let mut doc = crate::config::tests::broker_doc();
        doc.listeners[0].advertise_node_address = true;
        doc.listeners[0].advertised_host.clear();
        let config = ValidatedConfig::validate(doc).expect("valid");
        let without = pod_facts_from_env(|k| (k != "HOST_IP").then(|| "x".to_owned()))
            .expect("HOST_IP is optional on its own");
        let err = check_advertised(&config, &without).expect_err("HOST_IP missing");
        assert!(err.to_string().contains("HOST_IP"), "{err}");
        let with = pod_facts_from_env(|_| Some("x".to_owned())).expect("facts");
        check_advertised(&config, &with).expect("HOST_IP set");
    }

    #[test]
    fn rack_joins_label_values_in_order_and_names_a_missing_label() {
        let labels = BTreeMap::from([
            ("topology.kubernetes.io/zone".to_owned(), "z1".to_owned()),
            ("topology.kubernetes.io/region".to_owned(), "r1".to_owned()),
        ]);
        let names = vec![
            "topology.kubernetes.io/region".to_owned(),
            "topology.kubernetes.io/zone".to_owned(),
        ];
        assert_eq!(
            rack_from_labels("n", &labels, &names).expect("present"),
            "r1,z1"
        );
        let err = rack_from_labels("n", &labels, &["rack".to_owned()]).expect_err("absent");
        assert!(err.to_string().contains("no label rack"));
    }

    #[test]
    fn secret_files_drop_one_trailing_newline_and_reject_more_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good");
        std::fs::write(&good, "s3cret\n").expect("write");
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "line1\nline2\n").expect("write");
        let mut doc = crate::config::tests::broker_doc();
        doc.secret_files = vec![stoker_proto::agent::v1::SecretFileRef {
            key: "ssl.key.password".into(),
            path: good.display().to_string(),
        }];
        let config = ValidatedConfig::validate(doc.clone()).expect("valid");
        assert_eq!(
            read_secrets(&config).expect("reads").0["ssl.key.password"],
            "s3cret"
        );
        doc.secret_files[0].path = bad.display().to_string();
        let config = ValidatedConfig::validate(doc).expect("valid");
        let err = read_secrets(&config).expect_err("multi-line").to_string();
        assert!(
            err.contains("ssl.key.password") && !err.contains("line1"),
            "{err}"
        );
    }
}
