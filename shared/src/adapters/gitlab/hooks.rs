//! Project hooks through the pinned client: create, read, update, delete and test
//! (doc/api/project_webhooks.md). Hook bodies carry the secret token: never logged.

use async_trait::async_trait;
use reqwest::Method;
use secrecy::SecretString;

use super::ReqwestGitlab;
use crate::domain::gitlab::GitlabError;
use crate::domain::hooks::{GitlabHook, HookSpec};
use crate::ports::{GitlabHooks, ResolvedInstance};

fn checked(hook: GitlabHook, project_id: u64, expected_id: Option<u64>) -> Result<GitlabHook, GitlabError> {
    // The answer comes from the instance: it must describe the hook asked about.
    let project_ok = hook.flags.get("project_id").and_then(serde_json::Value::as_u64).is_none_or(|p| p == project_id);
    if !project_ok || expected_id.is_some_and(|id| id != hook.id) || hook.url.len() > 2048 {
        return Err(GitlabError::NotGitlab { why: "another hook than the one asked for" });
    }
    Ok(hook)
}

#[async_trait]
impl GitlabHooks for ReqwestGitlab {
    #[tracing::instrument(skip_all, fields(project_id))]
    async fn create_hook(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        project_id: u64,
        spec: &HookSpec,
    ) -> Result<GitlabHook, GitlabError> {
        let client = self.client(instance, ca_certificate, token.clone())?;
        let hook: GitlabHook =
            client.send_json(Method::POST, &format!("/projects/{project_id}/hooks"), &spec.attributes()).await?;
        checked(hook, project_id, None)
    }

    #[tracing::instrument(skip_all, fields(project_id, hook_id))]
    async fn get_hook(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        project_id: u64,
        hook_id: u64,
    ) -> Result<GitlabHook, GitlabError> {
        let client = self.client(instance, ca_certificate, token.clone())?;
        let hook: GitlabHook = client.get(&format!("/projects/{project_id}/hooks/{hook_id}")).await?;
        checked(hook, project_id, Some(hook_id))
    }

    #[tracing::instrument(skip_all, fields(project_id, hook_id))]
    async fn update_hook(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        project_id: u64,
        hook_id: u64,
        spec: &HookSpec,
    ) -> Result<GitlabHook, GitlabError> {
        let client = self.client(instance, ca_certificate, token.clone())?;
        let path = format!("/projects/{project_id}/hooks/{hook_id}");
        let hook: GitlabHook = client.send_json(Method::PUT, &path, &spec.attributes()).await?;
        checked(hook, project_id, Some(hook_id))
    }

    #[tracing::instrument(skip_all, fields(project_id, hook_id))]
    async fn delete_hook(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        project_id: u64,
        hook_id: u64,
    ) -> Result<(), GitlabError> {
        let client = self.client(instance, ca_certificate, token.clone())?;
        match client.delete(&format!("/projects/{project_id}/hooks/{hook_id}")).await {
            // Already gone is what was wanted.
            Ok(()) | Err(GitlabError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    #[tracing::instrument(skip_all, fields(project_id, hook_id))]
    async fn test_hook(
        &self,
        instance: &ResolvedInstance,
        ca_certificate: Option<&str>,
        token: &SecretString,
        project_id: u64,
        hook_id: u64,
    ) -> Result<bool, GitlabError> {
        let client = self.client(instance, ca_certificate, token.clone())?;
        let path = format!("/projects/{project_id}/hooks/{hook_id}/test/push_events");
        // 201 when the test delivery got a 2xx (GitLab then enables the hook again), 422 when not.
        match client.send_json::<serde_json::Value>(Method::POST, &path, &serde_json::json!({})).await {
            Ok(_) => Ok(true),
            Err(GitlabError::Unprocessable) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
