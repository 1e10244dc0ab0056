//! The gRPC contract between the Stoker coordinator and the agent beside every broker.
//!
//! The `.proto` files under `proto/` are the source of truth. The Rust code in
//! `src/gen/` is generated from them and checked in, so building needs no `protoc`;
//! `tests/bootstrap.rs` regenerates it and fails when the two drift.
#![forbid(unsafe_code)]

/// Version 1 of the agent's service and of the per-broker desired-config document.
pub mod agent {
    /// `stoker.agent.v1`.
    #[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    pub mod v1 {
        include!("gen/stoker.agent.v1.rs");
    }
}
