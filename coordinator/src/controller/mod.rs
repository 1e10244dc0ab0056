//! The coordinator's controllers.

pub mod cluster_ref;
pub mod kafka_cluster;
pub mod kafka_topic;
pub mod kafka_user;
pub mod resource_status;

/// An error and its sources on one line, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}
