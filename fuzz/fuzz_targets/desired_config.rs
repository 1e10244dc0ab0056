//! The agent's desired-config document (the ConfigMap a user can edit) through
//! validation and rendering. Oracle: whatever passes validation renders a
//! server.properties that Java's `Properties.load` reads back as exactly the
//! effective properties — no line or key injected, no value changed.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use stoker_agent::{
    config::ValidatedConfig,
    render::{PodFacts, SecretValues, effective_properties, render},
};
use stoker_proto::agent::v1::DesiredConfig;

/// Java's `Properties.load` for one logical line's value (no continuation lines: a
/// rendered value never ends in an odd backslash).
fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    let mut units = Vec::new();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.extend(char::decode_utf16(units.drain(..)).map(|r| r.unwrap_or('\u{fffd}')));
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                units.push(u16::from_str_radix(&hex, 16).expect("four hex digits after \\u"));
            }
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some(other) => {
                out.extend(char::decode_utf16(units.drain(..)).map(|r| r.unwrap_or('\u{fffd}')));
                out.push(other);
            }
            None => panic!("a value ends in a lone backslash: {v:?}"),
        }
    }
    out.extend(char::decode_utf16(units.drain(..)).map(|r| r.unwrap_or('\u{fffd}')));
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<DesiredConfig>(data) else {
        return;
    };
    let Ok(config) = ValidatedConfig::validate(doc) else {
        return;
    };
    let facts = PodFacts {
        pod_name: "kafka-1".into(),
        namespace: "default".into(),
        pod_ip: "10.0.0.1".into(),
        node_name: "node".into(),
        host_ip: Some("10.0.0.100".into()),
        rack: None,
        config_dir: "/etc/kafka".into(),
    };
    let secrets = SecretValues::default();
    let want = effective_properties(&config, &facts, &secrets);
    let rendered = render(&config, &facts, &secrets, "hash");
    let mut got = BTreeMap::new();
    for line in rendered.server_properties.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("a rendered line without '=': {line:?}"));
        assert!(
            got.insert(k.to_owned(), unescape(v)).is_none(),
            "key {k:?} rendered twice"
        );
    }
    assert_eq!(
        got, want,
        "server.properties does not read back as rendered"
    );
});
