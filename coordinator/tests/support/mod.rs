//! Helpers the controllers' integration tests share.

use std::{sync::Arc, time::Duration};

use kube::{Api, Client};
#[allow(unused_imports)]
pub(crate) use stoker_coordinator::controller::resource_status::ready;
use stoker_coordinator::{context::Context, controller::resource_status::WithConditions};

/// The resource's status once `pred` holds (panics after 60 s, showing the last status).
#[allow(dead_code)]
pub(crate) async fn status_where<K: WithConditions>(
    api: &Api<K>,
    name: &str,
    what: &str,
    pred: impl Fn(&K::Status) -> bool,
) -> K::Status {
    status_within(api, name, what, Duration::from_secs(60), pred).await
}

/// The resource's status once `pred` holds (panics after `within`, showing the last status).
pub(crate) async fn status_within<K: WithConditions>(
    api: &Api<K>,
    name: &str,
    what: &str,
    within: Duration,
    pred: impl Fn(&K::Status) -> bool,
) -> K::Status {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(st) = api
            .get_opt(name)
            .await
            .expect("get")
            .and_then(|o| o.status().cloned())
            && pred(&st)
        {
            return st;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: timed out waiting for {what}: {:?}",
            api.get_opt(name)
                .await
                .ok()
                .flatten()
                .and_then(|o| o.status().cloned())
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The coordinator's shared context over `client`, with its own metrics registry.
#[allow(dead_code)]
pub(crate) fn context(client: Client) -> Arc<Context> {
    Context::new(
        client,
        "stoker-agent:test".into(),
        &prometheus::Registry::new(),
    )
}
