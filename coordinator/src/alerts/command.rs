//! What an alert asks for: the `command` annotation (as in the seed and Koperator) and
//! the labels and annotations it needs. Pure.

use super::payload::Alert;

/// The cluster an alert names (`kafka_cr` and `namespace` labels).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClusterName {
    /// The KafkaCluster's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// Which broker a disk command is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskTarget {
    /// The `brokerId` label, with the mount path from the `mountPath` annotation (for
    /// `resizePvc`; `addPvc` makes a new one).
    Broker {
        /// The broker.
        id: i32,
        /// The disk's mount path, when the command needs an existing one.
        mount_path: Option<String>,
    },
    /// The `persistentvolumeclaim` label (as kubelet's volume metrics carry it): the
    /// claim's labels and annotations say the broker and the mount path.
    Claim(String),
}

/// A command an alert carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A new broker in `brokerConfigGroup`, with the next free id.
    UpScale {
        /// The `brokerConfigGroup` annotation.
        group: String,
    },
    /// Remove a broker: the `brokerId` label's, or the one with the fewest replicas.
    DownScale {
        /// The `brokerId` label.
        broker: Option<i32>,
    },
    /// A new disk on a broker.
    AddPvc {
        /// Which broker.
        target: DiskTarget,
        /// The `mountPath` annotation (`-2`, `-3`, … is appended when it is taken).
        mount_path: String,
        /// The `diskSize` annotation (a quantity).
        size: String,
        /// The `storageClass` annotation; unset: the class of the broker's first claim.
        storage_class: Option<String>,
    },
    /// Grow one disk by `incrementBy`.
    ResizePvc {
        /// Which broker and disk.
        target: DiskTarget,
        /// The `incrementBy` annotation (a quantity).
        increment_by: String,
    },
}

impl Command {
    /// Its name as written in the `command` annotation (and the metric's label).
    pub fn name(&self) -> &'static str {
        match self {
            Self::UpScale { .. } => "upScale",
            Self::DownScale { .. } => "downScale",
            Self::AddPvc { .. } => "addPvc",
            Self::ResizePvc { .. } => "resizePvc",
        }
    }
}

/// What an alert asks of which cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The cluster.
    pub cluster: ClusterName,
    /// The command.
    pub command: Command,
}

/// Why an alert's command can never be carried out as written.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct CommandError(pub String);

/// The command `alert` carries: None when it has no `command` annotation (an alert
/// routed here for another reason; nothing to do).
pub fn read(alert: &Alert) -> Result<Option<Request>, CommandError> {
    let Some(command) = alert.annotations.get("command").map(|c| c.trim()) else {
        return Ok(None);
    };
    let label = |k: &str| {
        alert
            .labels
            .get(k)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let annotation = |k: &str| {
        alert
            .annotations
            .get(k)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let (Some(name), Some(namespace)) = (label("kafka_cr"), label("namespace")) else {
        return Err(CommandError(format!(
            "alert {} carries command {command:?} but not the labels kafka_cr and namespace that name its KafkaCluster; keep them in the rule's `by (...)`",
            alert.name
        )));
    };
    let broker = || -> Result<Option<i32>, CommandError> {
        label("brokerId")
            .map(|b| {
                b.parse::<i32>()
                    .ok()
                    .filter(|b| *b >= 0)
                    .ok_or_else(|| CommandError(format!("label brokerId {b:?} is not a broker id")))
            })
            .transpose()
    };
    let disk_target = |needs_mount: bool| -> Result<DiskTarget, CommandError> {
        if let Some(claim) = label("persistentvolumeclaim") {
            return Ok(DiskTarget::Claim(claim.to_owned()));
        }
        let Some(id) = broker()? else {
            return Err(CommandError(format!(
                "{command} needs the label persistentvolumeclaim (as kubelet's volume metrics carry it) or brokerId"
            )));
        };
        let mount_path = annotation("mountPath").map(str::to_owned);
        if needs_mount && mount_path.is_none() {
            return Err(CommandError(format!(
                "{command} for broker {id} needs the annotation mountPath naming the disk to grow (or the label persistentvolumeclaim)"
            )));
        }
        Ok(DiskTarget::Broker { id, mount_path })
    };
    let quantity = |key: &str| -> Result<String, CommandError> {
        let Some(q) = annotation(key) else {
            return Err(CommandError(format!(
                "{command} needs the annotation {key} (a size such as 10Gi)"
            )));
        };
        if crate::quantity::bytes(q).is_none_or(|b| b <= 0.0) {
            return Err(CommandError(format!(
                "annotation {key} {q:?} is not a size; write a quantity such as 10Gi"
            )));
        }
        Ok(q.to_owned())
    };
    let command = match command {
        "upScale" => Command::UpScale {
            group: annotation("brokerConfigGroup")
                .ok_or_else(|| {
                    CommandError(
                        "upScale needs the annotation brokerConfigGroup naming the group of spec.brokerConfigGroups the new broker joins".into(),
                    )
                })?
                .to_owned(),
        },
        "downScale" => Command::DownScale { broker: broker()? },
        "addPvc" => {
            let mount_path = annotation("mountPath")
                .or_else(|| annotation("mountPathPrefix"))
                .ok_or_else(|| {
                    CommandError("addPvc needs the annotation mountPath (e.g. /kafka-logs-extra)".into())
                })?;
            if !mount_path.starts_with('/') || mount_path.contains(',') {
                return Err(CommandError(format!(
                    "annotation mountPath {mount_path:?} must be an absolute path without commas"
                )));
            }
            Command::AddPvc {
                target: disk_target(false)?,
                mount_path: mount_path.trim_end_matches('/').to_owned(),
                size: quantity("diskSize")?,
                storage_class: annotation("storageClass").map(str::to_owned),
            }
        }
        "resizePvc" => Command::ResizePvc {
            target: disk_target(true)?,
            increment_by: quantity("incrementBy")?,
        },
        other => {
            return Err(CommandError(format!(
                "alert {} carries unknown command {other:?}; use upScale, downScale, addPvc or resizePvc",
                alert.name
            )));
        }
    };
    Ok(Some(Request {
        cluster: ClusterName {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        },
        command,
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn alert(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Alert {
        let map = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        Alert {
            name: "A".into(),
            labels: map(labels),
            annotations: map(annotations),
            starts_at: String::new(),
            firing: true,
            fingerprint: "f".into(),
        }
    }

    const CLUSTER: [(&str, &str); 2] = [("kafka_cr", "kafka"), ("namespace", "prod")];

    #[test]
    fn the_seeds_upscale_names_its_cluster_and_group() {
        let r = read(&alert(
            &CLUSTER,
            &[
                ("command", "upScale"),
                ("brokerConfigGroup", "default_group"),
            ],
        ))
        .expect("read")
        .expect("a command");
        assert_eq!(r.cluster.name, "kafka");
        assert_eq!(r.cluster.namespace, "prod");
        assert_eq!(
            r.command,
            Command::UpScale {
                group: "default_group".into()
            }
        );
    }

    #[test]
    fn an_alert_without_a_command_asks_nothing() {
        assert_eq!(read(&alert(&CLUSTER, &[("summary", "x")])), Ok(None));
    }

    #[test]
    fn downscale_takes_the_broker_label_when_there_is_one() {
        let mut labels = CLUSTER.to_vec();
        labels.push(("brokerId", "4"));
        let r = read(&alert(&labels, &[("command", "downScale")])).expect("read");
        assert_eq!(
            r.expect("cmd").command,
            Command::DownScale { broker: Some(4) }
        );
        let r = read(&alert(&CLUSTER, &[("command", "downScale")])).expect("read");
        assert_eq!(r.expect("cmd").command, Command::DownScale { broker: None });
    }

    #[test]
    fn disks_are_found_by_claim_or_by_broker_and_mount_path() {
        let mut labels = CLUSTER.to_vec();
        labels.push(("persistentvolumeclaim", "kafka-1-storage-kafka-logs"));
        let r = read(&alert(
            &labels,
            &[("command", "resizePvc"), ("incrementBy", "10Gi")],
        ))
        .expect("read")
        .expect("cmd");
        assert_eq!(
            r.command,
            Command::ResizePvc {
                target: DiskTarget::Claim("kafka-1-storage-kafka-logs".into()),
                increment_by: "10Gi".into()
            }
        );
        let mut labels = CLUSTER.to_vec();
        labels.push(("brokerId", "1"));
        let r = read(&alert(
            &labels,
            &[
                ("command", "addPvc"),
                ("mountPath", "/extra/"),
                ("diskSize", "5Gi"),
            ],
        ))
        .expect("read")
        .expect("cmd");
        assert_eq!(
            r.command,
            Command::AddPvc {
                target: DiskTarget::Broker {
                    id: 1,
                    mount_path: Some("/extra/".into())
                },
                mount_path: "/extra".into(),
                size: "5Gi".into(),
                storage_class: None
            }
        );
    }

    #[test]
    fn what_is_missing_or_wrong_is_named() {
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Pairs<'_>, Pairs<'_>, &str); 7] = [
            (&[], &[("command", "upScale")], "kafka_cr and namespace"),
            (
                &CLUSTER,
                &[("command", "scaleSideways")],
                "unknown command \"scaleSideways\"",
            ),
            (&CLUSTER, &[("command", "upScale")], "brokerConfigGroup"),
            (
                &CLUSTER,
                &[
                    ("command", "addPvc"),
                    ("mountPath", "/x"),
                    ("diskSize", "1Gi"),
                ],
                "persistentvolumeclaim",
            ),
            (
                &[("kafka_cr", "k"), ("namespace", "n"), ("brokerId", "one")],
                &[("command", "downScale")],
                "brokerId \"one\"",
            ),
            (
                &[("kafka_cr", "k"), ("namespace", "n"), ("brokerId", "1")],
                &[("command", "resizePvc"), ("incrementBy", "10 gigs")],
                "annotation mountPath",
            ),
            (
                &[("kafka_cr", "k"), ("namespace", "n"), ("brokerId", "1")],
                &[
                    ("command", "resizePvc"),
                    ("mountPath", "/d"),
                    ("incrementBy", "10 gigs"),
                ],
                "\"10 gigs\" is not a size",
            ),
        ];
        for (labels, annotations, expected) in cases {
            let err = read(&alert(labels, annotations)).expect_err("refused");
            assert!(err.0.contains(expected), "{err} should mention {expected}");
        }
    }
}
