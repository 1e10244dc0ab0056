//! The coordinator's controllers.

pub mod kafka_cluster;
