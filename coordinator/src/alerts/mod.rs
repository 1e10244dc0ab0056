//! Alert-driven scaling: Alertmanager (or Prometheus itself) posts alerts whose
//! `command` annotation asks for a broker or a disk more or less, and the receiver
//! turns each into a change of the KafkaCluster's spec that the graceful-scaling
//! machinery then carries out.
//!
//! [`payload`] reads the bodies, [`command`] what an alert asks, [`decide`] whether
//! it acts and what the spec becomes (pure), [`receiver`] the HTTP side and the I/O.

pub mod command;
pub mod decide;
pub mod payload;
pub mod receiver;
