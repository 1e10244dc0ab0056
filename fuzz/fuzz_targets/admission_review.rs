//! AdmissionReviews the API server sends the injection webhook. Oracle: every body
//! gets a response (that serialises) or a refusal, never a panic.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use stoker_coordinator::webhook::review::{Policy, review};

fuzz_target!(|data: &[u8]| {
    let policy = Policy {
        agent_image: "stoker-agent:fuzz".into(),
        forbidden_namespaces: BTreeSet::from(["kube-system".to_owned()]),
    };
    if let Ok((response, _)) = review(data, &policy) {
        serde_json::to_vec(&response).expect("a response serialises");
    }
});
