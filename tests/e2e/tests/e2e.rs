//! End-to-end tests: HTTP requests through the local host (the same handlers the Lambdas run)
//! against the moto server and the HTTPS GitLab simulator. One binary, modules per capability.

mod support;

mod api_flows;
mod connect_bad_input;
mod connect_flows;
mod connect_network;
mod contract;
mod local_host;
mod report_flows;
mod runtime_logs;
mod scan_flows;
mod sync_flows;
mod webhook_flows;
