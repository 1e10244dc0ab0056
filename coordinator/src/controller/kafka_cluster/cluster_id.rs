//! The KRaft cluster id of a new cluster: a random v4 UUID in the form Kafka itself
//! generates (`kafka-storage.sh random-uuid`). It is drawn from `/dev/urandom`, once per
//! cluster; the plan records it in status before any object carries it.

/// A new KRaft cluster id: a random v4 UUID in Kafka's base64url form (22
/// characters, never starting with '-').
pub fn new_cluster_id() -> String {
    use std::io::Read;
    loop {
        let mut b = [0u8; 16];
        if std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .is_err()
        {
            // Fall back on the clock and pid; uniqueness per cluster is all that matters.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            b = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
        }
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let id = base64url(&b);
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_kafka_shaped() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(!id.starts_with('-'));
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
