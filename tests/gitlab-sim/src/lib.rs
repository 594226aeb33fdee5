//! A GitLab simulator over HTTPS for the connector's end-to-end tests and the local stack:
//! the connect-step endpoints with GitLab's token rules, the projects API at any scale with
//! GitLab's pagination and rate limits, misbehaviour modes, fault injection and a stub DNS server;
//! Git smart HTTP (read only) for projects with a repository, and repositories built for tests;
//! merge requests with diffs, notes, threads on diff lines and commit statuses read from and
//! written to those repositories, fix merge requests (commits of several file actions), and the
//! GraphQL `vulnerabilityCreate` mutation.

mod api;
mod commits;
mod config;
mod dns;
mod faults;
mod generate;
mod git;
mod graphql;
mod hooks;
mod merge_requests;
mod params;
mod planted;
mod projects;
mod repo_ops;
mod repos;
mod server;
mod statuses;
mod tls;

pub use config::{
    Behaviour, FOREIGN_ORIGIN, ListingMode, RateLimit, RateLimitStyle, SimConfig, SimProject, SimToken, SimUser,
    TokenKind, demo,
};
pub use dns::{RunningDns, start_dns};
pub use generate::generate_projects;
pub use graphql::SimVulnerability;
pub use hooks::{Delivered, SimEvent, SimHook};
pub use merge_requests::{SimDiscussion, SimMergeRequest, SimNote};
pub use planted::{PLANTED_SECRETS, PlantedSecret, attach_demo_repositories, planted_secrets};
pub use repos::{History, HistorySpec, TestRepo, Tree};
pub use server::{AuthSeen, RecordedRequest, RunningSim, start};
pub use statuses::SimStatus;
