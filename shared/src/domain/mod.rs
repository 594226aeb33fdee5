//! Pure types and rules: no AWS, HTTP or Lambda crates may be imported below this module.

pub mod address;
pub mod checkout;
pub mod findings;
pub mod fixes;
pub mod gitlab;
pub mod hooks;
pub mod ids;
pub mod integration;
pub mod listing;
pub mod project;
pub mod report;
pub mod sarif;
pub mod scan;
pub mod secrets;
pub mod sync;
pub mod text;
pub mod token;
pub mod url_policy;
pub mod webhook;
