//! Kubernetes quantities of bytes (`10Gi`, `500M`, `1e9`), read into numbers so that
//! sizes can be compared and converted.

/// The bytes in `quantity`; None when it is not a quantity of bytes Kubernetes writes
/// (a number with an optional decimal or binary suffix, or an exponent).
pub fn bytes(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let n: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * factor)
}

/// `bytes` written back as a quantity: in the largest binary unit that divides it
/// (`2Gi`, `1536Mi`), else as whole bytes (rounded up, so a size never shrinks).
pub fn format(bytes: f64) -> String {
    let n = bytes.ceil().max(0.0) as u64;
    for (unit, factor) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if n >= factor && n.is_multiple_of(factor) {
            return format!("{}{unit}", n / factor);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_written_in_the_largest_unit_that_divides_them() {
        assert_eq!(format(2.0 * 1024.0 * 1024.0 * 1024.0), "2Gi");
        assert_eq!(format(1536.0 * 1024.0 * 1024.0), "1536Mi");
        assert_eq!(format(1e9), "1000000000");
        assert_eq!(bytes(&format(11e9)), Some(11e9));
    }

    #[test]
    fn decimal_binary_and_exponent_forms_are_read() {
        assert_eq!(bytes("10Gi"), Some(10.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(bytes("500M"), Some(5e8));
        assert_eq!(bytes("1e9"), Some(1e9));
        assert_eq!(bytes("1.5G"), Some(1.5e9));
        assert_eq!(bytes("42"), Some(42.0));
        assert!(bytes("20Gi") > bytes("20G"), "binary units are larger");
        assert_eq!(bytes("ten gigs"), None);
        assert_eq!(bytes("10GB"), None);
    }
}
