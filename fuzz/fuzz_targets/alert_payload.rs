//! Bodies posted to the coordinator's alert receiver (Alertmanager's webhook format,
//! or a bare array of alerts). Oracle: parsed or refused, never a panic.
#![no_main]

use k8s_openapi::jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use stoker_coordinator::alerts::payload::parse;

fuzz_target!(|data: &[u8]| {
    let now = Timestamp::from_second(1_800_000_000).expect("a time");
    let _ = parse(data, now);
});
