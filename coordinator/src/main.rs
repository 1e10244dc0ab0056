//! `stoker-coordinator`: the Stoker control plane.
#![forbid(unsafe_code)]

/// mimalloc returns freed pages to the system; glibc's allocator kept the transient
/// buffers of every watch page and reconcile burst resident (RSS four times the live heap).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    stoker_coordinator::Args::parse_or_exit().run()
}
