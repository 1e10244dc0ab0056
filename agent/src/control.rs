//! The agent's side of the preStop handshake ([`stoker_proto::prestop`]): a request
//! file in the folder only the Pod's containers share runs the safety wait
//! ([`guard::prestop`]), and its outcome is written as the answer file. This is the
//! only way to ask the agent to stop from inside the Pod; nothing on the network does
//! it (the coordinator's `PrepareShutdown` is over mTLS).

use std::{path::PathBuf, sync::Arc, time::Duration};

use stoker_proto::prestop::{ANSWER_FILE, REQUEST_FILE};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{guard, state::Shared};

/// How often the folder is looked at.
const POLL: Duration = Duration::from_millis(200);

/// Answers requests in `dir` until `token` is cancelled.
pub async fn serve(dir: PathBuf, shared: Arc<Shared>, token: CancellationToken) {
    let request = dir.join(REQUEST_FILE);
    let answer = dir.join(ANSWER_FILE);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
        if !tokio::fs::try_exists(&request).await.unwrap_or(false) {
            continue;
        }
        info!(dir = %dir.display(), "preStop requested");
        if let Err(e) = tokio::fs::remove_file(&request).await {
            warn!(error = %e, "Could not remove the preStop request");
        }
        let outcome = guard::prestop(&shared).await;
        // Written whole, then renamed: the hook never reads half an answer.
        let partial = dir.join(format!(".{ANSWER_FILE}"));
        let written = match tokio::fs::write(&partial, outcome.as_bytes()).await {
            Ok(()) => tokio::fs::rename(&partial, &answer).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            // The hook then waits out its bound; the kubelet stops Kafka after it.
            warn!(error = %e, dir = %dir.display(), "Could not write the preStop answer");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_file_is_answered_and_latches_not_ready() {
        let dir = tempfile::tempdir().expect("a folder");
        let shared = Arc::new(Shared::new(Duration::from_secs(1), None));
        let token = CancellationToken::new();
        let task = tokio::spawn(serve(dir.path().to_owned(), shared.clone(), token.clone()));
        std::fs::write(dir.path().join(REQUEST_FILE), b"").expect("ask");
        let answer = dir.path().join(ANSWER_FILE);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !answer.exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no answer within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = std::fs::read_to_string(&answer).expect("the answer");
        assert!(text.contains("never started"), "{text}");
        assert!(shared.shutting_down());
        assert!(
            !dir.path().join(REQUEST_FILE).exists(),
            "the request is taken"
        );
        token.cancel();
        task.await.expect("stops");
    }
}
