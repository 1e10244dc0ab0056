//! `stoker-agent`: the sidecar beside every Kafka broker.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    stoker_agent::Args::parse_or_exit().run()
}
