//! The alert receiver's HTTP side: authentication, the reply Alertmanager and
//! Prometheus understand, and the reads and writes each decision needs (the cluster,
//! the claim a disk alert names, Cruise Control's replica counts; the status record
//! and the spec change). It runs on every replica: a decision holds because its record
//! is written with the cluster's resourceVersion, so two replicas never both act.

use std::{path::PathBuf, sync::Arc, time::Instant};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    response::{IntoResponse, Response},
    routing::post,
};
use k8s_openapi::{
    api::core::v1::{PersistentVolumeClaim, Pod},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    command::{self, ClusterName, Command, DiskTarget},
    decide::{self, Decision, Resolved},
    payload::{self, Alert, MAX_BODY_BYTES},
};
use crate::{
    controller::{
        kafka_cluster::build::{ANNOTATION_MOUNT_PATH, LABEL_BROKER_ID},
        resource_status::{Note, publish},
    },
    crd::v1alpha1::{AlertingStatus, KafkaCluster},
    cruise_control,
    events::Publisher,
};

/// The field manager of the receiver's status record.
pub const STATUS_MANAGER: &str = "stoker-alert-receiver";
/// Attempts at one decision when the cluster changes under it.
const ATTEMPTS: usize = 3;
/// Events waiting to be published; beyond it a flood's Events are dropped (and
/// logged), never its decisions.
const EVENT_QUEUE: usize = 256;

/// Buckets of `stoker_alert_record_seconds`, fine around the 50 ms goal.
pub const RECORD_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer <token>`, the token read from this file on every request
    /// (a mounted Secret rotates without a restart).
    BearerFile(PathBuf),
    /// None (only when asked for by flag).
    Unauthenticated,
}

/// How the receiver authenticates, from the flags; None: it does not run.
pub fn auth_from(token_file: Option<PathBuf>, unauthenticated: bool) -> Option<Auth> {
    match (token_file, unauthenticated) {
        (Some(f), _) => Some(Auth::BearerFile(f)),
        (None, true) => Some(Auth::Unauthenticated),
        (None, false) => None,
    }
}

/// The receiver's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    decisions: IntCounterVec,
    requests: IntCounterVec,
    recorded: Histogram,
}

impl Metrics {
    /// Registers `stoker_alert_decisions_total{command,outcome}`,
    /// `stoker_alert_requests_total{code}` and `stoker_alert_record_seconds` in
    /// `registry`.
    pub fn new(registry: &Registry) -> Self {
        let decisions = IntCounterVec::new(
            Opts::new(
                "stoker_alert_decisions_total",
                "Decisions on alert commands, by command and outcome (acted, dry_run, held, refused, retry, ignored).",
            ),
            &["command", "outcome"],
        )
        .expect("a valid metric");
        let requests = IntCounterVec::new(
            Opts::new(
                "stoker_alert_requests_total",
                "Requests to the alert receiver, by HTTP status code.",
            ),
            &["code"],
        )
        .expect("a valid metric");
        let recorded = Histogram::with_opts(
            HistogramOpts::new(
                "stoker_alert_record_seconds",
                "Time from a notification's receipt to an action's record written in the cluster's status.",
            )
            .buckets(RECORD_BUCKETS.to_vec()),
        )
        .expect("a valid metric");
        // A second registration (tests build several receivers) keeps the first.
        let _ = registry.register(Box::new(decisions.clone()));
        let _ = registry.register(Box::new(requests.clone()));
        let _ = registry.register(Box::new(recorded.clone()));
        Self {
            decisions,
            requests,
            recorded,
        }
    }
}

/// When a notification arrived: the wall clock decisions are dated with, and the
/// monotonic instant the time to a recorded decision is measured from.
#[derive(Debug, Clone, Copy)]
struct Receipt {
    now: Timestamp,
    at: Instant,
}

/// What the receiver shares between requests.
pub struct Receiver {
    client: Client,
    events: mpsc::Sender<(KafkaCluster, Note)>,
    cruise_controls: Arc<cruise_control::Pool>,
    auth: Auth,
    metrics: Metrics,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// A receiver writing through `client`. Its Events are published by a task of
    /// their own, after the reply: Alertmanager waits for the decision, not for the
    /// report of it. Call inside a Tokio runtime.
    pub fn new(client: Client, auth: Auth, registry: &Registry) -> Arc<Self> {
        let (events, queue) = mpsc::channel(EVENT_QUEUE);
        tokio::spawn(publish_events(
            Publisher::new(client.clone(), STATUS_MANAGER),
            queue,
        ));
        Arc::new(Self {
            events,
            client,
            cruise_controls: Arc::default(),
            auth,
            metrics: Metrics::new(registry),
        })
    }
}

/// Publishes the decisions' Events in the order they were decided, until every
/// receiver is gone.
async fn publish_events(recorder: Publisher, mut queue: mpsc::Receiver<(KafkaCluster, Note)>) {
    while let Some((kc, note)) = queue.recv().await {
        publish(&recorder, &kc, note).await;
    }
}

/// The receiver's routes: `POST /` and `POST /alerts` (Alertmanager's webhook) and
/// `POST /api/v2/alerts` (Prometheus pushing as to an Alertmanager); either body on
/// any of them.
pub fn router(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route("/", post(receive))
        .route("/alerts", post(receive))
        .route("/api/v2/alerts", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(receiver)
}

/// One alert's outcome, as the reply lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// `alertname`.
    pub alert: String,
    /// Its fingerprint.
    pub fingerprint: String,
    /// `namespace/name` of the cluster, when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The command, when it carries one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// What happened.
    pub outcome: Kind,
    /// Why, in words.
    pub reason: String,
}

/// What happened to one alert.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The spec was changed.
    Acted,
    /// The change was decided and reported, not made (`dryRun`).
    DryRun,
    /// No action by a guard.
    Held,
    /// Never as written.
    Refused,
    /// Could not be decided now (the API server or Cruise Control failed): send again.
    Retry,
    /// No command: not for the receiver.
    Ignored,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Acted => "acted",
            Self::DryRun => "dry_run",
            Self::Held => "held",
            Self::Refused => "refused",
            Self::Retry => "retry",
            Self::Ignored => "ignored",
        }
    }
}

/// The reply code for a body's outcomes: 503 when any must be retried (Alertmanager
/// retries only 5xx), 422 when every alert with a command was refused (it will never
/// work; not retried), else 200 — a held alert is a decision too.
pub fn reply_code(outcomes: &[Outcome]) -> StatusCode {
    if outcomes.iter().any(|o| o.outcome == Kind::Retry) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let commands: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.outcome != Kind::Ignored)
        .collect();
    if !commands.is_empty() && commands.iter().all(|o| o.outcome == Kind::Refused) {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    StatusCode::OK
}

fn reply(r: &Receiver, code: StatusCode, body: serde_json::Value) -> Response {
    r.metrics.requests.with_label_values(&[code.as_str()]).inc();
    (code, axum::Json(body)).into_response()
}

/// Whether `headers` carry the token in `file`: Ok(false) for a missing or wrong
/// one, Err when the file cannot be read.
async fn authorized(auth: &Auth, headers: &HeaderMap) -> Result<bool, String> {
    let file = match auth {
        Auth::Unauthenticated => return Ok(true),
        Auth::BearerFile(f) => f,
    };
    let token = tokio::fs::read_to_string(file)
        .await
        .map_err(|e| format!("the token file {} cannot be read: {e}", file.display()))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", file.display()));
    }
    let Some(given) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Ok(false);
    };
    Ok(same(given.trim().as_bytes(), token.as_bytes()))
}

/// Compares in time that depends on the lengths only, not on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let received = Instant::now();
    match authorized(&r.auth, &headers).await {
        Ok(true) => {}
        Ok(false) => {
            warn!("Alert request refused: no or wrong bearer token");
            return reply(
                &r,
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "a bearer token is required: set http_config.authorization.credentials_file in Alertmanager's webhook_config to the receiver's token"}),
            );
        }
        Err(e) => {
            warn!(error = %e, "Alert request not answered: the receiver's token cannot be read");
            return reply(
                &r,
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": format!("the receiver cannot check tokens now: {e}")}),
            );
        }
    }
    let receipt = Receipt {
        now: Timestamp::now(),
        at: received,
    };
    let notification = match payload::parse(&body, receipt.now) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "Alert body refused");
            return reply(
                &r,
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": e.to_string()}),
            );
        }
    };
    if notification.truncated > 0 {
        warn!(
            truncated = notification.truncated,
            "Alertmanager left alerts out of this notification (max_alerts); they are not seen"
        );
    }
    let mut outcomes = Vec::with_capacity(notification.alerts.len());
    for alert in &notification.alerts {
        let outcome = handle(&r, alert, receipt).await;
        r.metrics
            .decisions
            .with_label_values(&[
                outcome.command.as_deref().unwrap_or("none"),
                outcome.outcome.label(),
            ])
            .inc();
        info!(
            alert = %outcome.alert,
            fingerprint = %outcome.fingerprint,
            cluster = outcome.cluster.as_deref().unwrap_or(""),
            command = outcome.command.as_deref().unwrap_or(""),
            outcome = outcome.outcome.label(),
            reason = %outcome.reason,
            "Alert decided"
        );
        outcomes.push(outcome);
    }
    let code = reply_code(&outcomes);
    reply(&r, code, serde_json::json!({ "outcomes": outcomes }))
}

async fn handle(r: &Receiver, alert: &Alert, receipt: Receipt) -> Outcome {
    let mut out = Outcome {
        alert: alert.name.clone(),
        fingerprint: alert.fingerprint.clone(),
        cluster: None,
        command: None,
        outcome: Kind::Ignored,
        reason: "no command annotation".into(),
    };
    let request = match command::read(alert) {
        Ok(None) => return out,
        Ok(Some(req)) => req,
        Err(e) => {
            out.command = alert.annotations.get("command").cloned();
            out.outcome = Kind::Refused;
            out.reason = e.0;
            return out;
        }
    };
    out.cluster = Some(format!(
        "{}/{}",
        request.cluster.namespace, request.cluster.name
    ));
    out.command = Some(request.command.name().to_owned());
    let (kind, reason, kc) =
        decide_and_write(r, alert, &request.cluster, &request.command, receipt).await;
    out.outcome = kind;
    out.reason = reason;
    if let Some(kc) = kc {
        let what = format!(
            "alert {} ({}): {}",
            alert.name,
            request.command.name(),
            out.reason
        );
        let note = match kind {
            Kind::Acted => Note::normal("AlertScaled", "Scaling", what),
            Kind::DryRun => Note::normal(
                "AlertDryRun",
                "Scaling",
                format!("dry run, nothing changed: {what}"),
            ),
            Kind::Held => Note::normal("AlertHeld", "Scaling", what),
            Kind::Refused => Note::warning("AlertRefused", "Scaling", what),
            Kind::Retry => Note::warning("AlertNotDecided", "Scaling", what),
            Kind::Ignored => return out,
        };
        if let Err(e) = r.events.try_send((kc, note)) {
            let (kc, note) = e.into_inner();
            warn!(cluster = %kc.name_any(), reason = %note.reason, "Alert Event dropped: {EVENT_QUEUE} Events are waiting to be published");
        }
    }
    out
}

/// Reads, decides and writes; the cluster is returned when it was read (for the Event).
async fn decide_and_write(
    r: &Receiver,
    alert: &Alert,
    name: &ClusterName,
    cmd: &Command,
    receipt: Receipt,
) -> (Kind, String, Option<KafkaCluster>) {
    let api: Api<KafkaCluster> = Api::namespaced(r.client.clone(), &name.namespace);
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let kc = match api.get_opt(&name.name).await {
            Ok(Some(kc)) => kc,
            Ok(None) => {
                return (
                    Kind::Refused,
                    format!(
                        "KafkaCluster {}/{} does not exist; check the rule's kafka_cr and namespace labels",
                        name.namespace, name.name
                    ),
                    None,
                );
            }
            Err(e) => {
                return (
                    Kind::Retry,
                    format!(
                        "reading KafkaCluster {}/{} failed: {e}",
                        name.namespace, name.name
                    ),
                    None,
                );
            }
        };
        let resolved = match resolve(r, &kc, cmd).await {
            Ok(res) => res,
            Err((kind, why)) => return (kind, why, Some(kc)),
        };
        let (spec, change) = match decide::decide(&kc, alert, &resolved, receipt.now) {
            Decision::Act { spec, change } => (spec, change),
            Decision::Hold(why) => return (Kind::Held, why, Some(kc)),
            Decision::Refuse(why) => return (Kind::Refused, why, Some(kc)),
        };
        if kc
            .spec
            .alert_manager_config
            .as_ref()
            .is_some_and(|c| c.dry_run)
        {
            return (Kind::DryRun, change, Some(kc));
        }
        match write(r, &kc, alert, cmd.name(), &spec, &change, receipt).await {
            Ok(()) => return (Kind::Acted, change, Some(kc)),
            Err(Write::Conflict) => {
                last = Some(kc);
            }
            Err(Write::Failed(why)) => return (Kind::Retry, why, Some(kc)),
        }
    }
    (
        Kind::Retry,
        format!("the KafkaCluster changed under {ATTEMPTS} attempts to act; send again"),
        last,
    )
}

enum Write {
    Conflict,
    Failed(String),
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The status record first (with the cluster's resourceVersion: a second replica, or
/// a second copy of the alert, finds it and holds), then the spec (with the version
/// the record left); a failed spec write takes the record back.
async fn write(
    r: &Receiver,
    kc: &KafkaCluster,
    alert: &Alert,
    command: &str,
    spec: &crate::crd::v1alpha1::KafkaClusterSpec,
    change: &str,
    receipt: Receipt,
) -> Result<(), Write> {
    let api: Api<KafkaCluster> =
        Api::namespaced(r.client.clone(), &kc.namespace().unwrap_or_default());
    let previous = kc.status.as_ref().and_then(|s| s.alerting.clone());
    let record = decide::record(previous.as_ref(), alert, command, change, receipt.now);
    let recorded = api
        .patch_status(
            &kc.name_any(),
            &PatchParams::apply(STATUS_MANAGER).force(),
            &Patch::Apply(status_body(kc, Some(&record), kc.resource_version())),
        )
        .await
        .map_err(|e| {
            if is_conflict(&e) {
                Write::Conflict
            } else {
                Write::Failed(format!(
                    "recording the decision in status.alerting failed: {e}"
                ))
            }
        })?;
    r.metrics
        .recorded
        .observe(receipt.at.elapsed().as_secs_f64());
    let manager = field_manager(&alert.name);
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": recorded.resource_version()},
        "spec": {"brokers": spec.brokers},
    });
    match api
        .patch(
            &kc.name_any(),
            &PatchParams {
                field_manager: Some(manager),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let undo = api
                .patch_status(
                    &kc.name_any(),
                    &PatchParams::apply(STATUS_MANAGER).force(),
                    &Patch::Apply(status_body(kc, previous.as_ref(), None)),
                )
                .await;
            if let Err(u) = undo {
                warn!(error = %u, cluster = %kc.name_any(), "Taking back status.alerting after a failed spec write failed; the cooldown holds further alerts");
            }
            if is_conflict(&e) {
                Err(Write::Conflict)
            } else {
                Err(Write::Failed(format!("changing spec.brokers failed: {e}")))
            }
        }
    }
}

fn status_body(
    kc: &KafkaCluster,
    alerting: Option<&AlertingStatus>,
    resource_version: Option<String>,
) -> serde_json::Value {
    let mut metadata = serde_json::json!({"name": kc.name_any()});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = rv.into();
    }
    serde_json::json!({
        "apiVersion": KafkaCluster::api_version(&()),
        "kind": KafkaCluster::kind(&()),
        "metadata": metadata,
        "status": {"alerting": alerting.cloned().unwrap_or_default()},
    })
}

/// `stoker-alert-<alertname>`: `kubectl get -o yaml --show-managed-fields` names the
/// alert that changed the spec.
pub fn field_manager(alert: &str) -> String {
    let name: String = alert
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    format!("stoker-alert-{name}")
}

/// The facts a command needs beyond the cluster: the claim a disk alert names, the
/// broker Cruise Control finds least loaded.
async fn resolve(
    r: &Receiver,
    kc: &KafkaCluster,
    cmd: &Command,
) -> Result<Resolved, (Kind, String)> {
    let ns = kc.namespace().unwrap_or_default();
    let disk = |target: &DiskTarget| {
        let target = target.clone();
        let client = r.client.clone();
        let ns = ns.clone();
        async move {
            match target {
                DiskTarget::Broker { id, mount_path } => Ok((id, mount_path)),
                DiskTarget::Claim(claim) => {
                    let pvc = Api::<PersistentVolumeClaim>::namespaced(client, &ns)
                        .get_opt(&claim)
                        .await
                        .map_err(|e| {
                            (Kind::Retry, format!("reading PVC {ns}/{claim} failed: {e}"))
                        })?
                        .ok_or_else(|| {
                            (Kind::Refused, format!("PVC {ns}/{claim} does not exist"))
                        })?;
                    let id = pvc
                        .labels()
                        .get(LABEL_BROKER_ID)
                        .and_then(|b| b.parse().ok())
                        .ok_or_else(|| {
                            (
                                Kind::Refused,
                                format!("PVC {ns}/{claim} has no {LABEL_BROKER_ID} label: it is not a Stoker broker's disk"),
                            )
                        })?;
                    Ok((id, pvc.annotations().get(ANNOTATION_MOUNT_PATH).cloned()))
                }
            }
        }
    };
    Ok(match cmd {
        Command::UpScale { group } => Resolved::UpScale {
            group: group.clone(),
        },
        Command::DownScale { broker: Some(b) } => Resolved::DownScale {
            broker: *b,
            why: "named by the alert's brokerId label".into(),
        },
        Command::DownScale { broker: None } => least_loaded(r, kc).await?,
        Command::AddPvc {
            target,
            mount_path,
            size,
            storage_class,
        } => Resolved::AddPvc {
            broker: disk(target).await?.0,
            mount_path: mount_path.clone(),
            size: size.clone(),
            storage_class: storage_class.clone(),
        },
        Command::ResizePvc {
            target,
            increment_by,
        } => {
            let (broker, mount_path) = disk(target).await?;
            let mount_path = mount_path.ok_or_else(|| {
                (
                    Kind::Refused,
                    "the claim has no mount-path annotation; name the disk with the mountPath annotation".to_owned(),
                )
            })?;
            Resolved::ResizePvc {
                broker,
                mount_path,
                increment_by: increment_by.clone(),
            }
        }
    })
}

/// The broker (not a controller) with the fewest replicas by Cruise Control's
/// `kafka_cluster_state`.
async fn least_loaded(r: &Receiver, kc: &KafkaCluster) -> Result<Resolved, (Kind, String)> {
    if kc.spec.cruise_control_config.is_none() {
        return Err((
            Kind::Refused,
            "downScale without a brokerId label asks Cruise Control for the least loaded broker, and this cluster has no spec.cruiseControlConfig; add the label to the rule".into(),
        ));
    }
    let pods = Api::<Pod>::namespaced(r.client.clone(), &kc.namespace().unwrap_or_default())
        .list(&ListParams::default().labels(&format!(
            "{}={},{}={}",
            cruise_control::LABEL_INSTANCE,
            kc.name_any(),
            cruise_control::LABEL_COMPONENT,
            cruise_control::COMPONENT
        )))
        .await
        .map_err(|e| {
            (
                Kind::Retry,
                format!("listing the Cruise Control Pods failed: {e}"),
            )
        })?;
    let url = cruise_control::endpoint(kc, pods.items.iter()).map_err(|e| (Kind::Retry, e))?;
    let state = r
        .cruise_controls
        .get(&url)
        .map_err(|e| (Kind::Retry, e.to_string()))?
        .kafka_cluster_state()
        .await
        .map_err(|e| {
            (
                Kind::Retry,
                format!("Cruise Control's kafka_cluster_state failed: {e}"),
            )
        })?;
    let candidates: Vec<i32> = crate::controller::kafka_cluster::validate::validate(&kc.spec)
        .map(|c| {
            c.brokers
                .values()
                .filter(|b| b.roles.broker && !b.roles.controller)
                .map(|b| b.id)
                .collect()
        })
        .unwrap_or_default();
    pick_least_loaded(&state, &candidates)
        .map(|(broker, replicas)| Resolved::DownScale {
            broker,
            why: format!("the fewest replicas ({replicas}) by Cruise Control"),
        })
        .ok_or_else(|| {
            (
                Kind::Retry,
                "Cruise Control's kafka_cluster_state has no replica count for any removable broker yet".into(),
            )
        })
}

/// Among `candidates`, the broker with the fewest replicas in a `kafka_cluster_state`
/// answer (`KafkaBrokerState.ReplicaCountByBrokerId`); on a tie the highest id (the
/// newest broker).
pub fn pick_least_loaded(state: &serde_json::Value, candidates: &[i32]) -> Option<(i32, u64)> {
    let counts = state
        .get("KafkaBrokerState")?
        .get("ReplicaCountByBrokerId")?
        .as_object()?;
    candidates
        .iter()
        .filter_map(|id| Some((*id, counts.get(&id.to_string())?.as_u64()?)))
        .min_by_key(|(id, n)| (*n, std::cmp::Reverse(*id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(kind: Kind) -> Outcome {
        Outcome {
            alert: "A".into(),
            fingerprint: "f".into(),
            cluster: None,
            command: None,
            outcome: kind,
            reason: String::new(),
        }
    }

    #[test]
    fn replies_say_retry_only_when_retrying_can_help() {
        use Kind::*;
        let code =
            |kinds: &[Kind]| reply_code(&kinds.iter().map(|k| outcome(*k)).collect::<Vec<_>>());
        assert_eq!(code(&[Acted, Retry]), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code(&[Refused, Ignored]), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(code(&[Refused, Held]), StatusCode::OK);
        assert_eq!(code(&[Held]), StatusCode::OK, "no action is a decision");
        assert_eq!(code(&[Ignored]), StatusCode::OK);
        assert_eq!(code(&[]), StatusCode::OK);
    }

    #[test]
    fn the_least_loaded_removable_broker_is_picked() {
        let state = serde_json::json!({"KafkaBrokerState": {"ReplicaCountByBrokerId": {"0": 3, "1": 9, "2": 4, "3": 4, "9": 0}}});
        assert_eq!(
            pick_least_loaded(&state, &[1, 2, 3]),
            Some((3, 4)),
            "a tie goes to the newest"
        );
        assert_eq!(pick_least_loaded(&state, &[1]), Some((1, 9)));
        assert_eq!(pick_least_loaded(&state, &[5]), None);
        assert_eq!(pick_least_loaded(&serde_json::json!({}), &[1]), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cret", b"s3creT"));
        assert!(!same(b"s3cre", b"s3cret"));
    }

    #[test]
    fn the_field_manager_names_the_alert() {
        assert_eq!(
            field_manager("BrokerOverLoaded"),
            "stoker-alert-BrokerOverLoaded"
        );
        assert_eq!(field_manager("a b/c"), "stoker-alert-a-b-c");
        assert!(field_manager(&"x".repeat(300)).len() <= 128);
    }
}
