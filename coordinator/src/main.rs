//! `stoker-coordinator`: the Stoker control plane.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    stoker_coordinator::Args::parse_or_exit().run()
}
