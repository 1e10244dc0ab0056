//! Fixtures: the example manifest from `deploy/examples/` parsed into a spec.

use crate::crd::v1alpha1::{KafkaCluster, KafkaClusterSpec};

/// The example cluster (`deploy/examples/kafkacluster.yaml`).
pub(crate) fn example() -> KafkaCluster {
    serde_yaml::from_str(include_str!(
        "../../../../deploy/examples/kafkacluster.yaml"
    ))
    .expect("the example parses")
}

/// Its spec.
pub(crate) fn example_spec() -> KafkaClusterSpec {
    example().spec
}
