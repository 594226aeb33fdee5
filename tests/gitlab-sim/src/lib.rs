//! A GitLab simulator over HTTPS for the connector's end-to-end tests and the local stack:
//! the connect-step endpoints with GitLab's token rules, misbehaviour modes and a stub DNS server.

mod api;
mod config;
mod dns;
mod server;
mod tls;

pub use config::{Behaviour, SimConfig, SimProject, SimToken, SimUser, TokenKind, demo};
pub use dns::{RunningDns, start_dns};
pub use server::{AuthSeen, RecordedRequest, RunningSim, start};
