//! A `KafkaCluster` spec as the API server would hand it over (any JSON the CRD
//! schema might let through), through the coordinator's validation. Oracle: it
//! answers — a validated cluster or a refusal — and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stoker_coordinator::{
    controller::kafka_cluster::validate::validate, crd::v1alpha1::KafkaClusterSpec,
};

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<KafkaClusterSpec>(data) else {
        return;
    };
    let _ = validate(&spec);
});
