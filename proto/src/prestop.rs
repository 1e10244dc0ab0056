//! The preStop handshake between the Kafka container and its agent, over a folder only
//! the Pod's own containers mount (an `emptyDir`): nothing outside the Pod can ask a
//! broker to stop. The hook removes an old answer, leaves a request file, and waits
//! for the agent's answer file; the agent turns not-ready, waits until stopping is
//! safe, and writes the answer. The kubelet's grace period bounds the whole wait.

/// The file the hook creates to ask.
pub const REQUEST_FILE: &str = "prestop.request";
/// The file the agent writes when stopping may go ahead (its text says why).
pub const ANSWER_FILE: &str = "prestop.answer";

/// The hook's command: POSIX `sh` only (any Kafka image has it), waiting at most
/// `max_seconds` for the answer.
pub fn hook_command(dir: &str, max_seconds: u32) -> Vec<String> {
    let script = format!(
        "rm -f {dir}/{ANSWER_FILE}; : > {dir}/{REQUEST_FILE}; i=0; \
         while [ ! -e {dir}/{ANSWER_FILE} ] && [ $i -lt {ticks} ]; do \
         sleep 0.2 2>/dev/null || sleep 1; i=$((i+1)); done; \
         cat {dir}/{ANSWER_FILE} 2>/dev/null; exit 0",
        ticks = max_seconds.saturating_mul(5)
    );
    vec!["sh".into(), "-c".into(), script]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_asks_then_waits_bounded_for_the_answer() {
        let cmd = hook_command("/var/run/stoker", 60);
        assert_eq!(&cmd[..2], ["sh", "-c"]);
        let script = &cmd[2];
        let rm = script
            .find("rm -f /var/run/stoker/prestop.answer")
            .expect("removes");
        let ask = script
            .find(": > /var/run/stoker/prestop.request")
            .expect("asks");
        assert!(rm < ask, "an old answer never ends a new wait: {script}");
        assert!(script.contains("-lt 300 ]"), "{script}");
    }
}
