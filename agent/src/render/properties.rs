//! Java `.properties` value escaping. Kafka reads server.properties with
//! `Properties.load(InputStream)`, which decodes ISO-8859-1 and treats `\` as an
//! escape, so backslashes are doubled, non-ASCII characters become `\uXXXX`, and a
//! leading space is escaped so it survives.

/// Escapes `value` for the right-hand side of a `key=value` line.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            ' ' if i == 0 => out.push_str("\\ "),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_properties_load_would_misread() {
        assert_eq!(escape_value("plain-value_1.0"), "plain-value_1.0");
        assert_eq!(escape_value(r"C:\data"), r"C:\\data");
        assert_eq!(escape_value(" lead"), r"\ lead");
        assert_eq!(escape_value("zoné"), r"zon\u00e9");
        assert_eq!(escape_value("🦀"), r"\ud83e\udd80");
        assert_eq!(escape_value("a=b:c"), "a=b:c");
    }
}
