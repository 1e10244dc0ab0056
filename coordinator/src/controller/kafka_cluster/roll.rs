//! The rolling-restart planner: which broker to restart next, or what to wait for.
//! Pure: [`step`] takes the brokers as the pass observed them, the roll's progress as
//! status recorded it and the `SafeToStop` verdicts asked so far, and returns the
//! roll's new progress, the Pods to delete and the Events to publish — or the one
//! question to ask an agent before it can decide. The reconcile asks, and calls it
//! again with the answer.
//!
//! The rules, safe by construction:
//! - one broker at a time; the one in progress must be back, ready and caught up
//!   (every replica it hosts in its partition's ISR) before the next is touched;
//! - with `concurrentBrokerRestartCountPerRack` above 1, up to that many brokers of one
//!   rack restart together: only broker-only nodes with a known rack, only brokers of
//!   the rack already restarting, and only while every other broker is healthy (the
//!   agent then answers SafeToStop for them all stopped together, so brokers that share
//!   a partition never stop at once however the replicas are placed);
//! - a roll waits while `failureThreshold` or more brokers are failing (Pod missing or
//!   not running, agent not ready, or replicas out of sync), so a crash mid-roll stops
//!   it;
//! - brokers first (by id), then combined nodes, then controllers, the active
//!   controller last;
//! - the broker chosen is restarted only when its agent says stopping it now keeps
//!   every partition at or above min ISR (the reconcile asks; the agent's preStop hook
//!   asks again before Kafka gets SIGTERM).

use std::collections::BTreeMap;

use crate::{
    controller::resource_status::Note,
    crd::v1alpha1::{BrokerRestart, RollingUpgradeStatus},
};

/// The Pod of a broker, as the roll sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// No Pod.
    Missing,
    /// Deleted, still stopping.
    Terminating,
    /// Running (phase Running).
    Running,
    /// Created, not running yet.
    Pending,
}

/// One broker, as the roll sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerView {
    /// Node id.
    pub id: i32,
    /// Has the broker role.
    pub broker: bool,
    /// Has the controller role.
    pub controller: bool,
    /// Its Pod.
    pub pod: PodState,
    /// Its agent says it is ready.
    pub ready: bool,
    /// Why not, when not.
    pub not_ready_reason: String,
    /// A change waits for its restart.
    pub restart_needed: bool,
    /// Replicas it hosts that are not in their partition's ISR.
    pub out_of_sync: u32,
    /// Its broker.rack, when it has one.
    pub rack: Option<String>,
    /// Its Pod has an address (its agent can be asked).
    pub addressable: bool,
    /// Why it needs a restart, in words (for the Events).
    pub restart_reason: String,
}

impl BrokerView {
    /// Down, not ready, or not caught up.
    pub fn failing(&self) -> Option<String> {
        match self.pod {
            PodState::Missing => Some(format!("broker {} has no Pod", self.id)),
            PodState::Terminating => Some(format!("broker {} is stopping", self.id)),
            PodState::Pending => Some(format!("broker {} is starting", self.id)),
            PodState::Running if !self.ready => Some(format!(
                "broker {} is not ready ({})",
                self.id,
                if self.not_ready_reason.is_empty() {
                    "its agent does not answer"
                } else {
                    &self.not_ready_reason
                }
            )),
            PodState::Running if self.out_of_sync > 0 => Some(format!(
                "broker {} has {} replica(s) out of sync",
                self.id, self.out_of_sync
            )),
            PodState::Running => None,
        }
    }

    /// Back with the change in force: its restart is done.
    fn restarted(&self) -> bool {
        self.failing().is_none() && self.pod == PodState::Running && !self.restart_needed
    }

    /// A broker-only node: the only kind restarted several at a time.
    fn broker_only(&self) -> bool {
        self.broker && !self.controller
    }
}

/// How a roll may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `rollingUpgradeConfig.failureThreshold`: failing brokers that block a roll.
    pub failure_threshold: i32,
    /// `rollingUpgradeConfig.concurrentBrokerRestartCountPerRack`.
    pub per_rack: i32,
}

/// What the roll does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing needs a restart and nothing is in progress.
    Idle,
    /// This broker in progress is back, ready and caught up.
    Finished(i32),
    /// Wait; `blocked` when the cluster's health holds the roll (not its own progress).
    Wait {
        /// What the roll waits for, in words.
        reason: String,
        /// True when the wait is a blocked roll rather than a restart in progress.
        blocked: bool,
    },
    /// Restart `broker` if its agent says it is safe to stop together with `with` (the
    /// brokers of its rack already restarting; empty for a restart on its own).
    Restart {
        /// The broker to restart.
        broker: i32,
        /// Brokers still restarting alongside.
        with: Vec<i32>,
    },
}

/// The order brokers are rolled in: brokers, combined nodes, controllers, the active
/// controller last; by id within each.
fn order_key(v: &BrokerView, active_controller: Option<i32>) -> (u8, i32) {
    let rank = match (v.broker, v.controller) {
        (true, false) => 0,
        (true, true) if Some(v.id) != active_controller => 1,
        (false, true) if Some(v.id) != active_controller => 2,
        _ => 3,
    };
    (rank, v.id)
}

/// The next step of the roll, given the brokers restarting now (`in_progress`).
pub fn plan(
    views: &[BrokerView],
    in_progress: &[i32],
    limits: Limits,
    active_controller: Option<i32>,
) -> Plan {
    let view = |id: i32| views.iter().find(|v| v.id == id);
    // Removed from the spec meanwhile, or back with the change: done.
    if let Some(&id) = in_progress
        .iter()
        .find(|&&id| view(id).is_none_or(BrokerView::restarted))
    {
        return Plan::Finished(id);
    }
    if !in_progress.is_empty() {
        if let Some(next) = same_rack_candidate(views, in_progress, limits.per_rack) {
            return Plan::Restart {
                broker: next,
                with: in_progress.to_vec(),
            };
        }
        let reasons: Vec<String> = in_progress
            .iter()
            .filter_map(|&id| view(id))
            .map(|v| {
                let why = v
                    .failing()
                    .unwrap_or_else(|| "its new Pod is not in place yet".into());
                format!("restarting broker {}: {why}", v.id)
            })
            .collect();
        return Plan::Wait {
            reason: reasons.join("; "),
            blocked: false,
        };
    }
    let mut candidates: Vec<&BrokerView> = views.iter().filter(|v| v.restart_needed).collect();
    if candidates.is_empty() {
        return Plan::Idle;
    }
    let failing: Vec<String> = views.iter().filter_map(BrokerView::failing).collect();
    let threshold = limits.failure_threshold.max(1);
    if i32::try_from(failing.len()).unwrap_or(i32::MAX) >= threshold {
        return Plan::Wait {
            reason: format!(
                "{} failing broker(s), and rollingUpgradeConfig.failureThreshold is {threshold}: {}",
                failing.len(),
                failing.join("; ")
            ),
            blocked: true,
        };
    }
    candidates.sort_by_key(|v| order_key(v, active_controller));
    Plan::Restart {
        broker: candidates[0].id,
        with: Vec::new(),
    }
}

/// Another broker to restart alongside those in progress: fewer than `per_rack` are
/// restarting, all of them broker-only nodes of one known rack, every other broker is
/// healthy, and a broker-only node of that rack still needs its restart.
fn same_rack_candidate(views: &[BrokerView], in_progress: &[i32], per_rack: i32) -> Option<i32> {
    if i32::try_from(in_progress.len()).unwrap_or(i32::MAX) >= per_rack {
        return None;
    }
    let restarting: Vec<&BrokerView> = views
        .iter()
        .filter(|v| in_progress.contains(&v.id))
        .collect();
    let rack = restarting.first()?.rack.as_deref()?;
    if restarting.len() != in_progress.len()
        || !restarting
            .iter()
            .all(|v| v.broker_only() && v.rack.as_deref() == Some(rack))
    {
        return None;
    }
    let others_healthy = views
        .iter()
        .filter(|v| !in_progress.contains(&v.id))
        .all(|v| v.failing().is_none());
    if !others_healthy {
        return None;
    }
    views
        .iter()
        .filter(|v| !in_progress.contains(&v.id))
        .filter(|v| v.restart_needed && v.broker_only() && v.rack.as_deref() == Some(rack))
        .map(|v| v.id)
        .min()
}

/// A `SafeToStop` question: may `broker` stop now, together with `with` (the brokers
/// of its rack already restarting)?
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StopQuestion {
    /// The broker asked about.
    pub broker: i32,
    /// Brokers stopping together with it.
    pub with: Vec<i32>,
}

/// An agent's answer to a [`StopQuestion`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stopping keeps every partition at or above min ISR (and a controller majority).
    Safe,
    /// Not safe, and why (also when the agent could not be asked, or could not see a
    /// fact the rule needs).
    Unsafe(String),
}

/// What a roll step decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The roll's progress to record (None: no roll).
    pub progress: Option<RollingUpgradeStatus>,
    /// Brokers whose Pods are deleted now, in order.
    pub restarts: Vec<i32>,
    /// Events, each about a broker (Some) or the cluster (None).
    pub notes: Vec<(Option<i32>, Note)>,
    /// A question to ask before the step can decide; nothing else of the outcome may be
    /// acted on until it is answered.
    pub question: Option<StopQuestion>,
    /// True while a roll is under way.
    pub rolling: bool,
}

/// One step of the roll: finishes the brokers that are back, then restarts the next
/// one(s) when their agents said stopping is safe, or records what it waits for.
/// `recorded` is the progress status holds, so a restarted coordinator resumes.
pub fn step(
    views: &[BrokerView],
    recorded: Option<&RollingUpgradeStatus>,
    limits: Limits,
    active_controller: Option<i32>,
    verdicts: &BTreeMap<StopQuestion, Verdict>,
    now: &str,
) -> Outcome {
    let mut out = Outcome {
        progress: recorded.cloned(),
        ..Outcome::default()
    };
    // Nothing recorded, nothing to restart, nothing down: no roll.
    if recorded.is_none()
        && views
            .iter()
            .all(|v| !v.restart_needed && v.failing().is_none())
    {
        return out;
    }
    let mut views = views.to_vec();
    // Finishing or starting each broker is one turn: bounded by the brokers there are.
    for _ in 0..=views.len() {
        let in_progress: Vec<i32> = out
            .progress
            .as_ref()
            .map(|r| r.in_progress.iter().map(|b| b.broker).collect())
            .unwrap_or_default();
        match plan(&views, &in_progress, limits, active_controller) {
            Plan::Idle => {
                if let Some(done) = out.progress.take() {
                    out.notes.push((None, Note::normal("RollCompleted", "Rolling", format!(
                        "rolling restart complete: broker(s) {:?} restarted, in that order (started {})",
                        done.restarted, done.started_at
                    ))));
                }
                out.rolling = false;
                return out;
            }
            Plan::Finished(id) => {
                let ru = out.progress.get_or_insert_with(Default::default);
                let since = ru
                    .in_progress
                    .iter()
                    .find(|b| b.broker == id)
                    .map(|b| b.started_at.clone())
                    .unwrap_or_default();
                ru.in_progress.retain(|b| b.broker != id);
                ru.restarted.push(id);
                ru.waiting_for = None;
                out.notes.push((
                    Some(id),
                    Note::normal(
                        "BrokerRestarted",
                        "Rolling",
                        format!("broker {id} is back, ready and caught up (restart began {since})"),
                    ),
                ));
            }
            Plan::Wait { reason, blocked } => {
                waits(&mut out, now, reason, blocked);
                return out;
            }
            Plan::Restart { broker: id, with } => {
                let view = views
                    .iter()
                    .find(|v| v.id == id)
                    .cloned()
                    .expect("the planner restarts only brokers it was shown");
                if !view.addressable {
                    waits(
                        &mut out,
                        now,
                        format!("broker {id}: its Pod has no address yet"),
                        false,
                    );
                    return out;
                }
                let question = StopQuestion {
                    broker: id,
                    with: with.clone(),
                };
                let Some(verdict) = verdicts.get(&question) else {
                    progress(&mut out, now);
                    out.rolling = true;
                    out.question = Some(question);
                    return out;
                };
                if let Verdict::Unsafe(why) = verdict {
                    if with.is_empty() {
                        waits(
                            &mut out,
                            now,
                            format!("broker {id} is next, but stopping it now is not safe: {why}"),
                            true,
                        );
                    } else {
                        // Not with the others: it waits its turn instead (not blocked,
                        // only less concurrent).
                        waits(
                            &mut out,
                            now,
                            format!(
                                "restarting broker(s) {with:?}; broker {id} of the same rack may not stop with them: {why}"
                            ),
                            false,
                        );
                    }
                    return out;
                }
                let note = if with.is_empty() {
                    format!(
                        "restarting broker {id} ({}); its agent said stopping it is safe",
                        view.restart_reason
                    )
                } else {
                    format!(
                        "restarting broker {id} ({}) together with broker(s) {with:?} of its rack; its agent said stopping them together is safe",
                        view.restart_reason
                    )
                };
                out.notes
                    .push((Some(id), Note::normal("RestartingBroker", "Rolling", note)));
                out.restarts.push(id);
                let ru = progress(&mut out, now);
                ru.in_progress.push(BrokerRestart {
                    broker: id,
                    started_at: now.to_owned(),
                });
                ru.waiting_for = Some(format!("restarting broker {id}: its Pod is stopping"));
                out.rolling = true;
                if with.is_empty() {
                    return out;
                }
                // Its Pod is being deleted: the next turn sees it stopping.
                if let Some(v) = views.iter_mut().find(|v| v.id == id) {
                    v.pod = PodState::Terminating;
                }
            }
        }
    }
    out
}

/// The roll's progress, started now if it was not under way.
fn progress<'a>(out: &'a mut Outcome, now: &str) -> &'a mut RollingUpgradeStatus {
    out.progress.get_or_insert_with(|| RollingUpgradeStatus {
        started_at: now.to_owned(),
        ..RollingUpgradeStatus::default()
    })
}

/// Records what the roll waits for; a blocked roll (the cluster's health holds it, not
/// its own progress) gets a Warning Event once per reason.
fn waits(out: &mut Outcome, now: &str, reason: String, blocked: bool) {
    out.rolling = true;
    let ru = progress(out, now);
    let new = ru.waiting_for.as_deref() != Some(reason.as_str());
    ru.waiting_for = Some(reason.clone());
    if blocked && new {
        out.notes.push((
            None,
            Note::warning(
                "RollBlocked",
                "Rolling",
                format!("rolling restart waits: {reason}"),
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: i32, broker: bool, controller: bool, restart: bool) -> BrokerView {
        BrokerView {
            id,
            broker,
            controller,
            pod: PodState::Running,
            ready: true,
            not_ready_reason: String::new(),
            restart_needed: restart,
            out_of_sync: 0,
            rack: None,
            addressable: true,
            restart_reason: "static config changed: num.io.threads".into(),
        }
    }

    fn lim(failure_threshold: i32) -> Limits {
        Limits {
            failure_threshold,
            per_rack: 1,
        }
    }

    fn alone(broker: i32) -> Plan {
        Plan::Restart {
            broker,
            with: Vec::new(),
        }
    }

    #[test]
    fn brokers_go_first_then_controllers_and_the_active_controller_last() {
        let views = [
            v(100, false, true, true),
            v(101, false, true, true),
            v(2, true, false, true),
            v(1, true, false, true),
            v(5, true, true, true),
        ];
        assert_eq!(plan(&views, &[], lim(1), Some(100)), alone(1));
        let rest: Vec<BrokerView> = views
            .iter()
            .filter(|x| x.id != 1 && x.id != 2)
            .cloned()
            .collect();
        assert_eq!(plan(&rest, &[], lim(1), Some(100)), alone(5));
        let controllers: Vec<BrokerView> = rest.iter().filter(|x| x.id != 5).cloned().collect();
        assert_eq!(plan(&controllers, &[], lim(1), Some(100)), alone(101));
        assert_eq!(plan(&controllers[..1], &[], lim(1), Some(100)), alone(100));
    }

    #[test]
    fn the_broker_in_progress_must_be_back_ready_and_caught_up() {
        let mut views = vec![v(1, true, false, false), v(2, true, false, true)];
        views[0].pod = PodState::Terminating;
        assert!(matches!(
            plan(&views, &[1], lim(1), None),
            Plan::Wait { blocked: false, .. }
        ));
        views[0].pod = PodState::Running;
        views[0].ready = false;
        views[0].not_ready_reason = "the broker is recovering its logs (12 left)".into();
        let Plan::Wait { reason, .. } = plan(&views, &[1], lim(1), None) else {
            panic!("waits")
        };
        assert!(reason.contains("recovering its logs"), "{reason}");
        views[0].ready = true;
        views[0].out_of_sync = 3;
        let Plan::Wait { reason, .. } = plan(&views, &[1], lim(1), None) else {
            panic!("waits")
        };
        assert!(reason.contains("3 replica(s) out of sync"), "{reason}");
        views[0].out_of_sync = 0;
        assert_eq!(plan(&views, &[1], lim(1), None), Plan::Finished(1));
        // A Pod still from before the change is not the new one.
        views[0].restart_needed = true;
        assert!(matches!(
            plan(&views, &[1], lim(1), None),
            Plan::Wait { .. }
        ));
    }

    #[test]
    fn failing_brokers_at_the_threshold_block_the_roll_and_say_which() {
        let mut views = vec![
            v(1, true, false, true),
            v(2, true, false, true),
            v(3, true, false, false),
        ];
        views[2].ready = false;
        let Plan::Wait { reason, blocked } = plan(&views, &[], lim(1), None) else {
            panic!("blocked")
        };
        assert!(blocked);
        assert!(
            reason.contains("failureThreshold is 1: broker 3 is not ready"),
            "{reason}"
        );
        assert_eq!(plan(&views, &[], lim(2), None), alone(1));
    }

    #[test]
    fn brokers_of_one_rack_restart_together_up_to_the_limit() {
        let racked = |id, rack: &str| BrokerView {
            rack: Some(rack.into()),
            ..v(id, true, false, true)
        };
        let mut views = vec![
            racked(0, "a"),
            racked(1, "b"),
            racked(2, "a"),
            racked(3, "b"),
            racked(4, "a"),
            v(100, false, true, true),
        ];
        let two = Limits {
            failure_threshold: 1,
            per_rack: 2,
        };
        assert_eq!(plan(&views, &[], two, Some(100)), alone(0));
        views[0].pod = PodState::Terminating;
        // Broker 0 of rack a is stopping: broker 2, also of rack a, may join it.
        assert_eq!(
            plan(&views, &[0], two, Some(100)),
            Plan::Restart {
                broker: 2,
                with: vec![0]
            }
        );
        // Two of rack a restart: the limit is reached, broker 4 waits its turn.
        views[2].pod = PodState::Terminating;
        let Plan::Wait { reason, blocked } = plan(&views, &[0, 2], two, Some(100)) else {
            panic!("at the limit")
        };
        assert!(!blocked);
        assert!(
            reason.contains("broker 0 is stopping") && reason.contains("broker 2 is stopping"),
            "{reason}"
        );
        // With a limit of 1, or a broker of another rack failing, none joins.
        assert!(matches!(
            plan(&views[..2], &[0], lim(1), None),
            Plan::Wait { .. }
        ));
        views[2].pod = PodState::Running;
        views[3].ready = false;
        assert!(matches!(
            plan(&views, &[0], two, Some(100)),
            Plan::Wait { .. }
        ));
        views[3].ready = true;
        // Brokers without a rack never restart together.
        views[0].rack = None;
        assert!(matches!(
            plan(&views, &[0], two, Some(100)),
            Plan::Wait { .. }
        ));
        // Controllers restart alone, whatever the limit.
        let controllers = [
            BrokerView {
                pod: PodState::Terminating,
                rack: Some("a".into()),
                ..v(100, false, true, true)
            },
            BrokerView {
                rack: Some("a".into()),
                ..v(101, false, true, true)
            },
        ];
        assert!(matches!(
            plan(&controllers, &[100], two, None),
            Plan::Wait { .. }
        ));
    }

    #[test]
    fn the_first_broker_back_finishes_first() {
        let views = [v(0, true, false, false), {
            let mut b = v(2, true, false, true);
            b.pod = PodState::Pending;
            b
        }];
        assert_eq!(plan(&views, &[2, 0], lim(1), None), Plan::Finished(0));
        assert_eq!(plan(&views, &[7], lim(1), None), Plan::Finished(7));
    }

    #[test]
    fn nothing_to_restart_is_idle() {
        assert_eq!(
            plan(&[v(1, true, false, false)], &[], lim(1), None),
            Plan::Idle
        );
    }

    #[test]
    fn a_rack_peer_that_may_not_stop_with_the_others_waits_its_turn_unblocked() {
        let racked = |id, rack: &str| BrokerView {
            rack: Some(rack.into()),
            ..v(id, true, false, true)
        };
        let mut views = vec![racked(0, "a"), racked(2, "a"), racked(1, "b")];
        views[0].pod = PodState::Terminating;
        let limits = Limits {
            failure_threshold: 1,
            per_rack: 2,
        };
        let recorded = RollingUpgradeStatus {
            started_at: "t0".into(),
            in_progress: vec![BrokerRestart {
                broker: 0,
                started_at: "t0".into(),
            }],
            ..RollingUpgradeStatus::default()
        };
        let q = StopQuestion {
            broker: 2,
            with: vec![0],
        };
        let out = step(
            &views,
            Some(&recorded),
            limits,
            None,
            &BTreeMap::new(),
            "t1",
        );
        assert_eq!(
            out.question,
            Some(q.clone()),
            "it asks before it restarts two at once"
        );
        let verdicts = BTreeMap::from([(q, Verdict::Unsafe("they share t-0".into()))]);
        let out = step(&views, Some(&recorded), limits, None, &verdicts, "t1");
        assert!(out.restarts.is_empty());
        assert!(out.notes.is_empty(), "no RollBlocked: only less concurrent");
        let waiting = out.progress.and_then(|p| p.waiting_for).expect("says why");
        assert!(
            waiting.contains("may not stop with them: they share t-0"),
            "{waiting}"
        );
    }

    #[test]
    fn a_broker_without_an_address_is_never_asked_or_restarted() {
        let mut views = vec![v(1, true, false, true)];
        views[0].addressable = false;
        let out = step(&views, None, lim(1), None, &BTreeMap::new(), "t");
        assert_eq!(out.question, None);
        assert!(out.restarts.is_empty());
        assert!(out.rolling);
    }
}
