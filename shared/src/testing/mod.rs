//! In-memory fakes of every port, for handler tests (feature `test-util`).

mod fakes;
mod sample;

pub use fakes::{
    FakeGitlab, FakeHooks, FakeProject, InMemoryHookSecrets, InMemoryIntegrationStore, InMemoryProjectStore,
    InMemorySigningKeys, InMemoryVault, InMemoryWebhookStore, RecordingJobQueue,
};
pub use sample::sample_integration;
