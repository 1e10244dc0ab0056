//! The Kafka protocol as Stoker speaks it where librdkafka has no API: one TCP
//! connection (plain or TLS, with a client certificate when the listener asks for
//! one), one request in flight, versions chosen by the caller. Used by the agent
//! (Metadata, DescribeConfigs, IncrementalAlterConfigs, DescribeQuorum against its own
//! broker) and the coordinator (incremental topic config changes).
#![forbid(unsafe_code)]

pub mod tls;
pub mod wire;

pub use kafka_protocol;
pub use tls::{ClientIdentity, TlsClient, TlsError};
pub use wire::{Connection, WireError};
