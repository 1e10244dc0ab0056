//! Stoker's Helm chart as tests use it: `helm` itself (provisioned into the cache) and
//! objects rendered from the chart, so a test exercises what the chart ships rather
//! than a copy of it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, WebhookClientConfig,
};
use serde::Deserialize;

use crate::{Error, provisioned};

/// The chart's folder in this repository.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/stoker")
}

/// Runs the provisioned `helm` with `args` and returns its output.
pub fn helm(args: &[&str]) -> Result<String, Error> {
    let helm = provisioned("helm", "bin/helm")?;
    let out = Command::new(&helm)
        .args(args)
        .output()
        .map_err(|source| Error::Io {
            what: format!("run {}", helm.display()),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "helm {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    String::from_utf8(out.stdout).map_err(|e| Error::Other(format!("helm's output: {e}")))
}

/// The chart's MutatingWebhookConfiguration as `helm template` renders it for a release
/// `stoker` in `namespace` (its selectors, failure policy, rules), with its webhooks
/// sent to `url` instead of the coordinator's Service (a test's webhook runs outside
/// the cluster, on a loopback address).
pub fn webhook_configuration(
    namespace: &str,
    url: &str,
) -> Result<MutatingWebhookConfiguration, Error> {
    let chart = chart_dir();
    let rendered = helm(&[
        "template",
        "stoker",
        &chart.display().to_string(),
        "--namespace",
        namespace,
        "--show-only",
        "templates/webhook.yaml",
    ])?;
    let mut config = serde_yaml::Deserializer::from_str(&rendered)
        .filter_map(|doc| serde_yaml::Value::deserialize(doc).ok())
        .filter(|doc| doc["kind"] == "MutatingWebhookConfiguration")
        .find_map(|doc| serde_yaml::from_value::<MutatingWebhookConfiguration>(doc).ok())
        .ok_or_else(|| Error::Other("the chart renders no MutatingWebhookConfiguration".into()))?;
    for webhook in config.webhooks.iter_mut().flatten() {
        webhook.client_config = WebhookClientConfig {
            url: Some(url.to_owned()),
            ..WebhookClientConfig::default()
        };
    }
    Ok(config)
}
