//! The two bodies alerts arrive in: Alertmanager's webhook (payload version 4) and
//! Prometheus's own push to an Alertmanager (`POST /api/v2/alerts`, a JSON array of
//! alerts, the format Koperator's receiver reads). Pure: bytes in, alerts out.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

/// The largest body the receiver reads; Alertmanager's `max_alerts` keeps real ones
/// far below it.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// One alert, whichever body it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// `labels.alertname` (empty when it has none).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its annotations (where the command and its arguments are).
    pub annotations: BTreeMap<String, String>,
    /// When it started firing, as sent (RFC 3339); with the fingerprint, its identity.
    pub starts_at: String,
    /// Firing (true) or resolved.
    pub firing: bool,
    /// Alertmanager's fingerprint, or the same kind of hash of the labels when the
    /// sender gives none.
    pub fingerprint: String,
}

/// A parsed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Which body it was.
    pub format: Format,
    /// Its alerts.
    pub alerts: Vec<Alert>,
    /// Alerts Alertmanager left out (`truncatedAlerts`, from `max_alerts`).
    pub truncated: u64,
    /// Why Alertmanager sent it (`notification_reason`, Alertmanager 0.32 and later).
    pub reason: Option<String>,
}

/// Which body an alert came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Alertmanager's webhook.
    Webhook,
    /// Prometheus's push.
    Push,
}

/// Why a body can never be read (the sender should not retry it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// Not JSON, or not either shape.
    #[error("the body is not an Alertmanager webhook (version 4) or a Prometheus alert list: {0}")]
    Malformed(String),
    /// A webhook of another version.
    #[error("webhook payload version {0:?} is not supported; Alertmanager sends version \"4\"")]
    Version(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    version: String,
    #[serde(default)]
    alerts: Vec<WireAlert>,
    #[serde(default)]
    truncated_alerts: u64,
    #[serde(default, rename = "notification_reason")]
    notification_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAlert {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// Reads `body`, judging a pushed alert resolved when its `endsAt` is not after `now`.
pub fn parse(body: &[u8], now: Timestamp) -> Result<Notification, PayloadError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::Malformed(e.to_string()))?;
    match value {
        serde_json::Value::Array(_) => {
            let alerts: Vec<WireAlert> = serde_json::from_value(value)
                .map_err(|e| PayloadError::Malformed(e.to_string()))?;
            Ok(Notification {
                format: Format::Push,
                alerts: alerts
                    .into_iter()
                    .map(|a| {
                        let firing = a.ends_at.as_deref().is_none_or(|e| still_open(e, now));
                        alert(a, firing)
                    })
                    .collect(),
                truncated: 0,
                reason: None,
            })
        }
        serde_json::Value::Object(_) => {
            let hook: Webhook = serde_json::from_value(value)
                .map_err(|e| PayloadError::Malformed(e.to_string()))?;
            if hook.version != "4" {
                return Err(PayloadError::Version(hook.version));
            }
            let mut alerts = Vec::with_capacity(hook.alerts.len());
            for a in hook.alerts {
                let firing = match a.status.as_deref() {
                    Some("firing") => true,
                    Some("resolved") => false,
                    other => {
                        return Err(PayloadError::Malformed(format!(
                            "an alert has status {other:?}; Alertmanager sends \"firing\" or \"resolved\""
                        )));
                    }
                };
                alerts.push(alert(a, firing));
            }
            Ok(Notification {
                format: Format::Webhook,
                alerts,
                truncated: hook.truncated_alerts,
                reason: hook.notification_reason,
            })
        }
        _ => Err(PayloadError::Malformed(
            "expected a JSON object or array".into(),
        )),
    }
}

/// An `endsAt` still ahead of `now`; Go's zero time and unreadable times count as open
/// (a firing alert), so a sender's odd clock never reads as "resolved".
fn still_open(ends_at: &str, now: Timestamp) -> bool {
    match ends_at.parse::<Timestamp>() {
        Ok(t) => t > now || t.as_second() < 0,
        Err(_) => true,
    }
}

fn alert(a: WireAlert, firing: bool) -> Alert {
    let fingerprint = a
        .fingerprint
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| fingerprint(&a.labels));
    Alert {
        name: a.labels.get("alertname").cloned().unwrap_or_default(),
        labels: a.labels,
        annotations: a.annotations,
        starts_at: a.starts_at.unwrap_or_default(),
        firing,
        fingerprint,
    }
}

/// A label set's fingerprint as Prometheus computes one: FNV-1a (64 bit) over the
/// sorted names and values, each followed by the byte 0xff; 16 hex digits.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[0xff]);
        add(value.as_bytes());
        add(&[0xff]);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-03T12:00:00Z".parse().expect("a time")
    }

    #[test]
    fn a_current_webhook_with_reason_and_truncation_is_read() {
        let body = br#"{"version":"4","groupKey":"{}:{}","truncatedAlerts":2,"notification_reason":"first notification","status":"firing","receiver":"stoker",
          "alerts":[{"status":"firing","labels":{"alertname":"BrokerOverLoaded","kafka_cr":"kafka","namespace":"prod"},
                     "annotations":{"command":"upScale"},"startsAt":"2026-12-03T11:50:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"abc123"}]}"#;
        let n = parse(body, now()).expect("read");
        assert_eq!(n.format, Format::Webhook);
        assert_eq!(n.truncated, 2);
        assert_eq!(n.reason.as_deref(), Some("first notification"));
        let a = &n.alerts[0];
        assert_eq!(a.name, "BrokerOverLoaded");
        assert!(a.firing);
        assert_eq!(a.fingerprint, "abc123");
        assert_eq!(a.annotations["command"], "upScale");
    }

    #[test]
    fn an_old_webhook_without_the_new_fields_is_read() {
        let body = br#"{"version":"4","status":"resolved","alerts":[{"status":"resolved","labels":{"alertname":"A"},"startsAt":"2026-12-03T11:00:00Z","endsAt":"2026-12-03T11:30:00Z"}]}"#;
        let n = parse(body, now()).expect("read");
        assert!(!n.alerts[0].firing);
        assert_eq!(n.reason, None);
        assert_eq!(n.alerts[0].fingerprint.len(), 16, "computed when absent");
    }

    #[test]
    fn a_pushed_alert_is_firing_until_its_end_passes() {
        let body = br#"[{"labels":{"alertname":"A","x":"1"},"annotations":{"command":"downScale"},"startsAt":"2026-12-03T11:00:00Z","endsAt":"2026-12-03T12:04:00Z"},
                       {"labels":{"alertname":"B"},"startsAt":"2026-12-03T11:00:00Z","endsAt":"2026-12-03T11:59:00Z"},
                       {"labels":{"alertname":"C"}}]"#;
        let n = parse(body, now()).expect("read");
        assert_eq!(n.format, Format::Push);
        let firing: Vec<bool> = n.alerts.iter().map(|a| a.firing).collect();
        assert_eq!(firing, [true, false, true]);
    }

    #[test]
    fn bodies_that_can_never_work_are_told_apart() {
        assert!(matches!(
            parse(b"{not json", now()),
            Err(PayloadError::Malformed(_))
        ));
        assert_eq!(
            parse(br#"{"version":"3","alerts":[]}"#, now()),
            Err(PayloadError::Version("3".into()))
        );
        assert!(matches!(
            parse(b"42", now()),
            Err(PayloadError::Malformed(_))
        ));
        let bad_status = br#"{"version":"4","alerts":[{"status":"maybe","labels":{}}]}"#;
        let err = parse(bad_status, now()).expect_err("refused");
        assert!(err.to_string().contains("\"maybe\""), "{err}");
    }

    #[test]
    fn the_fingerprint_depends_on_every_label_and_nothing_else() {
        let a = BTreeMap::from([("alertname".to_owned(), "A".to_owned())]);
        let mut b = a.clone();
        b.insert("brokerId".into(), "1".into());
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        // The separator keeps `ab=c` and `a=bc` apart.
        let x = BTreeMap::from([("ab".to_owned(), "c".to_owned())]);
        let y = BTreeMap::from([("a".to_owned(), "bc".to_owned())]);
        assert_ne!(fingerprint(&x), fingerprint(&y));
    }
}
