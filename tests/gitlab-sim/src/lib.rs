//! A GitLab simulator over HTTPS for the connector's end-to-end tests and the local stack:
//! the connect-step endpoints with GitLab's token rules, the projects API at any scale with
//! GitLab's pagination and rate limits, misbehaviour modes, fault injection and a stub DNS server;
//! Git smart HTTP (read only) for projects with a repository, and repositories built for tests.

mod api;
mod config;
mod dns;
mod faults;
mod generate;
mod git;
mod hooks;
mod planted;
mod projects;
mod repos;
mod server;
mod tls;

pub use config::{
    Behaviour, FOREIGN_ORIGIN, ListingMode, RateLimit, RateLimitStyle, SimConfig, SimProject, SimToken, SimUser,
    TokenKind, demo,
};
pub use dns::{RunningDns, start_dns};
pub use generate::generate_projects;
pub use hooks::{Delivered, SimEvent, SimHook};
pub use planted::{PLANTED_SECRETS, PlantedSecret, attach_demo_repositories, planted_secrets};
pub use repos::{History, HistorySpec, TestRepo, Tree};
pub use server::{AuthSeen, RecordedRequest, RunningSim, start};
