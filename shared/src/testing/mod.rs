//! In-memory fakes of every port, for handler tests (feature `test-util`).

mod fakes;

pub use fakes::{FakeGitlab, InMemoryIntegrationStore, InMemoryVault, RecordingJobQueue};
