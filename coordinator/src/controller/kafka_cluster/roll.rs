//! The rolling-restart planner: which broker to restart next, or what to wait for.
//! Pure: the reconcile gathers the views (Pods, agents' reports) and acts on the plan
//! (asks the agent SafeToStop, deletes the Pod, records progress in status).
//!
//! The rules, safe by construction:
//! - one broker at a time; the one in progress must be back, ready and caught up
//!   (every replica it hosts in its partition's ISR) before the next is touched;
//! - a roll waits while `failureThreshold` or more brokers are failing (Pod missing or
//!   not running, agent not ready, or replicas out of sync), so a crash mid-roll stops
//!   it;
//! - brokers first (by id), then combined nodes, then controllers, the active
//!   controller last;
//! - the broker chosen is restarted only when its agent says stopping it now keeps
//!   every partition at or above min ISR (the reconcile asks; the agent's preStop hook
//!   asks again before Kafka gets SIGTERM).

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
}

/// What the roll does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing needs a restart and nothing is in progress.
    Idle,
    /// The broker in progress is back, ready and caught up.
    Finished(i32),
    /// Wait; `blocked` when the cluster's health holds the roll (not its own progress).
    Wait {
        /// What the roll waits for, in words.
        reason: String,
        /// True when the wait is a blocked roll rather than a restart in progress.
        blocked: bool,
    },
    /// Restart this broker if its agent says it is safe to stop.
    Restart(i32),
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

/// The next step of the roll.
pub fn plan(
    views: &[BrokerView],
    in_progress: Option<i32>,
    failure_threshold: i32,
    active_controller: Option<i32>,
) -> Plan {
    if let Some(id) = in_progress {
        return match views.iter().find(|v| v.id == id) {
            // Removed from the spec meanwhile: nothing to wait for.
            None => Plan::Finished(id),
            Some(v) => match v.failing() {
                Some(why) => Plan::Wait {
                    reason: format!("restarting broker {id}: {why}"),
                    blocked: false,
                },
                None if v.pod == PodState::Running && !v.restart_needed => Plan::Finished(id),
                None => Plan::Wait {
                    reason: format!("restarting broker {id}: its new Pod is not in place yet"),
                    blocked: false,
                },
            },
        };
    }
    let mut candidates: Vec<&BrokerView> = views.iter().filter(|v| v.restart_needed).collect();
    if candidates.is_empty() {
        return Plan::Idle;
    }
    let failing: Vec<String> = views.iter().filter_map(BrokerView::failing).collect();
    if i32::try_from(failing.len()).unwrap_or(i32::MAX) >= failure_threshold.max(1) {
        return Plan::Wait {
            reason: format!(
                "{} failing broker(s), and rollingUpgradeConfig.failureThreshold is {}: {}",
                failing.len(),
                failure_threshold.max(1),
                failing.join("; ")
            ),
            blocked: true,
        };
    }
    candidates.sort_by_key(|v| order_key(v, active_controller));
    Plan::Restart(candidates[0].id)
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
        assert_eq!(plan(&views, None, 1, Some(100)), Plan::Restart(1));
        let rest: Vec<BrokerView> = views
            .iter()
            .filter(|x| x.id != 1 && x.id != 2)
            .cloned()
            .collect();
        assert_eq!(plan(&rest, None, 1, Some(100)), Plan::Restart(5));
        let controllers: Vec<BrokerView> = rest.iter().filter(|x| x.id != 5).cloned().collect();
        assert_eq!(plan(&controllers, None, 1, Some(100)), Plan::Restart(101));
        assert_eq!(
            plan(&controllers[..1], None, 1, Some(100)),
            Plan::Restart(100)
        );
    }

    #[test]
    fn the_broker_in_progress_must_be_back_ready_and_caught_up() {
        let mut views = vec![v(1, true, false, false), v(2, true, false, true)];
        views[0].pod = PodState::Terminating;
        assert!(matches!(
            plan(&views, Some(1), 1, None),
            Plan::Wait { blocked: false, .. }
        ));
        views[0].pod = PodState::Running;
        views[0].ready = false;
        views[0].not_ready_reason = "the broker is recovering its logs (12 left)".into();
        let Plan::Wait { reason, .. } = plan(&views, Some(1), 1, None) else {
            panic!("waits")
        };
        assert!(reason.contains("recovering its logs"), "{reason}");
        views[0].ready = true;
        views[0].out_of_sync = 3;
        let Plan::Wait { reason, .. } = plan(&views, Some(1), 1, None) else {
            panic!("waits")
        };
        assert!(reason.contains("3 replica(s) out of sync"), "{reason}");
        views[0].out_of_sync = 0;
        assert_eq!(plan(&views, Some(1), 1, None), Plan::Finished(1));
        // A Pod still from before the change is not the new one.
        views[0].restart_needed = true;
        assert!(matches!(plan(&views, Some(1), 1, None), Plan::Wait { .. }));
    }

    #[test]
    fn failing_brokers_at_the_threshold_block_the_roll_and_say_which() {
        let mut views = vec![
            v(1, true, false, true),
            v(2, true, false, true),
            v(3, true, false, false),
        ];
        views[2].ready = false;
        let Plan::Wait { reason, blocked } = plan(&views, None, 1, None) else {
            panic!("blocked")
        };
        assert!(blocked);
        assert!(
            reason.contains("failureThreshold is 1: broker 3 is not ready"),
            "{reason}"
        );
        assert_eq!(plan(&views, None, 2, None), Plan::Restart(1));
    }

    #[test]
    fn nothing_to_restart_is_idle() {
        assert_eq!(plan(&[v(1, true, false, false)], None, 1, None), Plan::Idle);
    }
}
