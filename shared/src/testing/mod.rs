//! In-memory fakes of every port, for handler tests (feature `test-util`).

mod fakes;

pub use fakes::{
    FakeGitlab, FakeProject, InMemoryIntegrationStore, InMemoryProjectStore, InMemorySigningKeys, InMemoryVault,
    InMemoryWebhookStore, RecordingJobQueue,
};
