//! Free ports and loopback addresses for test components.
//!
//! Linux routes all of 127.0.0.0/8 to `lo`, so every Kafka node gets its own
//! address and keeps Kafka's usual ports, as brokers in separate Pods would.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::Error;

/// A free TCP port on 127.0.0.1 for a server a test starts.
///
/// Chosen below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), so no
/// outgoing connection of any process can take it between this check and the server's
/// own bind, and never handed out twice in one process (two servers of one control
/// plane once got the same port). Spread by process id, checked by binding.
pub fn free_port() -> Result<u16, Error> {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    const LOW: u32 = 10_000;
    let span = ephemeral_start.saturating_sub(LOW);
    let mut given = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    if span >= 1_000 {
        let start = std::process::id().wrapping_mul(7_919) % span;
        for i in 0..span {
            let port = u16::try_from(LOW + (start + i) % span).expect("below the ephemeral range");
            if !given.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                given.insert(port);
                return Ok(port);
            }
        }
    }
    // No room below the ephemeral range: let the kernel choose, still never twice.
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| Error::Io {
            what: "bind an ephemeral port on 127.0.0.1".into(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .map_err(|source| Error::Io {
                what: "read an ephemeral port".into(),
                source,
            })?;
        if given.insert(port) {
            return Ok(port);
        }
    }
    Err(Error::Other("no free port on 127.0.0.1".into()))
}

/// Every port [`free_port`] has handed out in this process.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

static NEXT_HOST: AtomicU32 = AtomicU32::new(0);

/// A loopback address other than 127.0.0.1 on which every port in `ports` is free.
/// Addresses are spread by process id so concurrently running test binaries do not
/// collide, and checked by binding.
pub fn free_loopback_addr(ports: &[u16]) -> Result<Ipv4Addr, Error> {
    let pid = std::process::id();
    for _ in 0..2000 {
        let n = NEXT_HOST.fetch_add(1, Ordering::Relaxed);
        let second = u8::try_from(20 + pid % 200).expect("20 + x % 200 fits in u8");
        let third = u8::try_from((n / 250) % 250).expect("x % 250 fits in u8");
        let fourth = u8::try_from(2 + n % 250).expect("2 + x % 250 fits in u8");
        let ip = Ipv4Addr::new(127, second, third, fourth);
        let all_free = ports
            .iter()
            .all(|&port| TcpListener::bind(SocketAddr::from((ip, port))).is_ok());
        if all_free {
            return Ok(ip);
        }
    }
    Err(Error::Other(format!(
        "no loopback address in 127.0.0.0/8 has ports {ports:?} free"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().expect("a port")).collect();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(
            distinct.len(),
            ports.len(),
            "a port handed out twice: {ports:?}"
        );
        let ephemeral_start: u16 =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
                .expect("the ephemeral range")
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .expect("a port number");
        for p in &ports {
            TcpListener::bind((Ipv4Addr::LOCALHOST, *p)).expect("still free");
            assert!(
                (10_000..ephemeral_start).contains(p),
                "{p} is not below the ephemeral range starting at {ephemeral_start}"
            );
        }
    }
}
