//! Shared core of gitlab-connector: domain rules, message contracts, ports and their AWS and
//! GitLab adapters, configuration, telemetry and the HTTP error mapping used by every function.
#![warn(missing_docs)]

pub mod adapters;
pub mod config;
pub mod domain;
pub mod http;
pub mod messages;
pub mod ports;
pub mod telemetry;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;
