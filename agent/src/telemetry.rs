//! Logging: `tracing` with an `EnvFilter` from `RUST_LOG` (default `info`), plain or
//! JSON lines on stderr.

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber; call once, first thing.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // A second init (tests) is harmless; ignore it.
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
