//! The agent's side of its own Kafka process: the wire connection, the admin calls
//! it makes, and what the process left on disk (the clean-shutdown marker).

pub mod kafka;

/// The Kafka protocol connection (shared with the coordinator).
pub use stoker_kafka::wire;

use std::path::Path;

/// The file Kafka's LogManager writes into every log dir on a clean shutdown.
pub const CLEAN_SHUTDOWN_MARKER: &str = ".kafka_cleanshutdown";

/// True when every log dir holds Kafka's clean-shutdown marker.
pub fn clean_shutdown_marked(log_dirs: &[impl AsRef<Path>]) -> bool {
    !log_dirs.is_empty()
        && log_dirs
            .iter()
            .all(|d| d.as_ref().join(CLEAN_SHUTDOWN_MARKER).exists())
}
