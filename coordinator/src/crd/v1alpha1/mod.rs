//! `kafka.stoker.io/v1alpha1`.

// The `KubeSchema` derive re-emits each struct inside a generated module, which the
// `unreachable_pub` lint misreads as a private path.
#[allow(unreachable_pub)]
pub mod kafka_cluster;
#[allow(unreachable_pub)]
pub mod kafka_rebalance;
#[allow(unreachable_pub)]
pub mod kafka_topic;
#[allow(unreachable_pub)]
pub mod kafka_user;

pub use kafka_cluster::*;
pub use kafka_rebalance::*;
pub use kafka_topic::*;
pub use kafka_user::*;
