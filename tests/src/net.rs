//! Free ports and loopback addresses for test components.
//!
//! Linux routes all of 127.0.0.0/8 to `lo`, so every Kafka node gets its own
//! address and keeps Kafka's usual ports, as brokers in separate Pods would.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::Error;

/// A free TCP port on 127.0.0.1, chosen by the kernel.
pub fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| Error::Io {
        what: "bind an ephemeral port on 127.0.0.1".into(),
        source,
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| Error::Io {
            what: "read an ephemeral port".into(),
            source,
        })
}

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
