//! The coordinator's controllers.

pub mod kafka_cluster;
pub mod kafka_topic;
