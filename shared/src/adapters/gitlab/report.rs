//! Merge request reporting through the pinned client (doc/api/merge_requests.md, notes.md,
//! discussions.md, commits.md "Set the pipeline status of a commit"). Every answer is bounded:
//! note listings stop after a fixed number of pages, diffs after a fixed number of files.

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::GitlabClient;
use crate::domain::gitlab::GitlabError;
use crate::ports::{DiffRefs, FileDiff, LinePosition, MergeRequestGateway, MergeRequestInfo, NoteRef};

/// Notes read while looking for the summary: 20 pages of 100.
const NOTE_PAGES: u32 = 20;
/// Diff files per page.
const DIFF_PAGE: usize = 100;

#[derive(Deserialize)]
struct MrBody {
    state: String,
    #[serde(default)]
    source_branch: String,
    web_url: String,
    #[serde(default)]
    diff_refs: Option<DiffRefsBody>,
}

/// GitLab sends `null` SHAs while a new merge request's diff is being computed.
#[derive(Deserialize)]
struct DiffRefsBody {
    base_sha: Option<String>,
    start_sha: Option<String>,
    head_sha: Option<String>,
}

#[derive(Deserialize)]
struct NoteBody {
    id: u64,
    #[serde(default)]
    body: String,
    author: Author,
    #[serde(default)]
    system: bool,
}

#[derive(Deserialize)]
struct Author {
    id: u64,
}

#[derive(Deserialize)]
struct Created {
    id: serde_json::Value,
}

fn next_page(headers: &http::HeaderMap) -> Option<u32> {
    headers.get("x-next-page").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
}

fn sha_ok(s: &str) -> bool {
    crate::domain::scan::CommitSha::parse(s).is_some()
}

#[async_trait]
impl MergeRequestGateway for GitlabClient {
    fn pause(&self) -> Option<std::time::Duration> {
        GitlabClient::pause(self)
    }

    async fn merge_request(&self, project_id: u64, iid: u64) -> Result<MergeRequestInfo, GitlabError> {
        let mr: MrBody = self.get(&format!("/projects/{project_id}/merge_requests/{iid}")).await?;
        let diff_refs = mr.diff_refs.and_then(|d| match (d.base_sha, d.start_sha, d.head_sha) {
            (Some(base_sha), Some(start_sha), Some(head_sha))
                if sha_ok(&base_sha) && sha_ok(&start_sha) && sha_ok(&head_sha) =>
            {
                Some(DiffRefs { base_sha, start_sha, head_sha })
            }
            _ => None,
        });
        Ok(MergeRequestInfo { state: mr.state, source_branch: mr.source_branch, web_url: mr.web_url, diff_refs })
    }

    async fn diffs(&self, project_id: u64, iid: u64, max_files: usize) -> Result<Vec<FileDiff>, GitlabError> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let (items, headers): (Vec<FileDiff>, _) = self
                .get_with_headers(&format!(
                    "/projects/{project_id}/merge_requests/{iid}/diffs?page={page}&per_page={DIFF_PAGE}"
                ))
                .await?;
            let count = items.len();
            out.extend(items);
            match next_page(&headers) {
                Some(next) if next > page && count > 0 && out.len() < max_files => page = next,
                _ => break,
            }
        }
        out.truncate(max_files);
        Ok(out)
    }

    async fn find_note(
        &self,
        project_id: u64,
        iid: u64,
        author_id: u64,
        prefix: &str,
    ) -> Result<Option<NoteRef>, GitlabError> {
        let mut page = 1;
        while page <= NOTE_PAGES {
            let (notes, headers): (Vec<NoteBody>, _) = self
                .get_with_headers(&format!(
                    "/projects/{project_id}/merge_requests/{iid}/notes?sort=asc&order_by=created_at&page={page}&per_page=100"
                ))
                .await?;
            if let Some(found) =
                notes.iter().find(|n| !n.system && n.author.id == author_id && n.body.starts_with(prefix))
            {
                return Ok(Some(NoteRef { id: found.id, body: found.body.clone() }));
            }
            match next_page(&headers) {
                Some(next) if next > page && !notes.is_empty() => page = next,
                _ => break,
            }
        }
        Ok(None)
    }

    async fn create_note(&self, project_id: u64, iid: u64, body: &str) -> Result<u64, GitlabError> {
        let note: NoteBody = self
            .send_json(
                Method::POST,
                &format!("/projects/{project_id}/merge_requests/{iid}/notes"),
                &json!({ "body": body }),
            )
            .await?;
        Ok(note.id)
    }

    async fn update_note(&self, project_id: u64, iid: u64, note_id: u64, body: &str) -> Result<(), GitlabError> {
        let _: serde_json::Value = self
            .send_json(
                Method::PUT,
                &format!("/projects/{project_id}/merge_requests/{iid}/notes/{note_id}"),
                &json!({ "body": body }),
            )
            .await?;
        Ok(())
    }

    async fn create_thread(
        &self,
        project_id: u64,
        iid: u64,
        body: &str,
        position: &LinePosition,
    ) -> Result<String, GitlabError> {
        let created: Created = self
            .send_json(
                Method::POST,
                &format!("/projects/{project_id}/merge_requests/{iid}/discussions"),
                &json!({
                    "body": body,
                    "position": {
                        "position_type": "text",
                        "base_sha": position.refs.base_sha,
                        "start_sha": position.refs.start_sha,
                        "head_sha": position.refs.head_sha,
                        "old_path": position.old_path,
                        "new_path": position.new_path,
                        "new_line": position.new_line,
                    },
                }),
            )
            .await?;
        match created.id {
            serde_json::Value::String(id) if id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()) => Ok(id),
            _ => Err(GitlabError::NotGitlab { why: "discussion without an id" }),
        }
    }

    async fn reply_and_resolve(
        &self,
        project_id: u64,
        iid: u64,
        discussion_id: &str,
        body: &str,
    ) -> Result<(), GitlabError> {
        let base = format!("/projects/{project_id}/merge_requests/{iid}/discussions/{discussion_id}");
        let _: serde_json::Value =
            self.send_json(Method::POST, &format!("{base}/notes"), &json!({ "body": body })).await?;
        let _: serde_json::Value = self.send_json(Method::PUT, &base, &json!({ "resolved": true })).await?;
        Ok(())
    }

    async fn commit_files(
        &self,
        project_id: u64,
        branch: &str,
        start_sha: &str,
        message: &str,
        files: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), GitlabError> {
        let actions: Vec<serde_json::Value> = files
            .iter()
            .map(|(path, content)| json!({ "action": "update", "file_path": path, "content": content, "encoding": "text" }))
            .collect();
        let _: serde_json::Value = self
            .send_json(
                Method::POST,
                &format!("/projects/{project_id}/repository/commits"),
                &json!({
                    "branch": branch,
                    "start_sha": start_sha,
                    "force": true,
                    "commit_message": message,
                    "actions": actions,
                }),
            )
            .await?;
        Ok(())
    }

    async fn open_merge_request(
        &self,
        project_id: u64,
        source: &str,
        target: &str,
        title: &str,
        description: &str,
    ) -> Result<u64, GitlabError> {
        #[derive(Deserialize)]
        struct Mr {
            iid: u64,
            #[serde(default)]
            source_branch: String,
        }
        let created: Result<Mr, GitlabError> = self
            .send_json(
                Method::POST,
                &format!("/projects/{project_id}/merge_requests"),
                &json!({
                    "source_branch": source,
                    "target_branch": target,
                    "title": title,
                    "description": description,
                    "remove_source_branch": true,
                }),
            )
            .await;
        match created {
            Ok(mr) => Ok(mr.iid),
            // One is open for the branch already (gitlab-api.md 5.6): find it and update it.
            Err(GitlabError::Conflict) => {
                let encoded: String = url::form_urlencoded::byte_serialize(source.as_bytes()).collect();
                let open: Vec<Mr> = self
                    .get(&format!("/projects/{project_id}/merge_requests?state=opened&source_branch={encoded}"))
                    .await?;
                let mr = open
                    .into_iter()
                    .find(|m| m.source_branch == source)
                    .ok_or(GitlabError::NotGitlab { why: "409 without an open merge request" })?;
                let _: serde_json::Value = self
                    .send_json(
                        Method::PUT,
                        &format!("/projects/{project_id}/merge_requests/{}", mr.iid),
                        &json!({ "title": title, "description": description }),
                    )
                    .await?;
                Ok(mr.iid)
            }
            Err(e) => Err(e),
        }
    }

    async fn close_merge_request(&self, project_id: u64, iid: u64) -> Result<(), GitlabError> {
        let _: serde_json::Value = self
            .send_json(
                Method::PUT,
                &format!("/projects/{project_id}/merge_requests/{iid}"),
                &json!({ "state_event": "close" }),
            )
            .await?;
        Ok(())
    }

    async fn create_vulnerability(
        &self,
        project_id: u64,
        v: &crate::domain::report::VulnerabilityExport,
    ) -> Result<String, GitlabError> {
        const MUTATION: &str = "mutation($input: VulnerabilityCreateInput!) { vulnerabilityCreate(input: $input) { vulnerability { id } errors } }";
        let input = json!({
            "project": format!("gid://gitlab/Project/{project_id}"),
            "name": v.name,
            "description": v.description,
            "severity": v.severity,
            "state": "DETECTED",
            "scanner": { "id": v.scanner_id, "name": v.scanner_name, "vendor": { "name": "gitlab-connector" } },
            // Never empty: GitLab answered 500 to an empty list (gitlab-org/gitlab#373760).
            "identifiers": [{ "name": v.identifier, "url": v.url }],
        });
        let answer: serde_json::Value =
            self.post_root_json("/api/graphql", &json!({ "query": MUTATION, "variables": { "input": input } })).await?;
        let created = &answer["data"]["vulnerabilityCreate"];
        let errors = answer["errors"].as_array().map_or(0, Vec::len) + created["errors"].as_array().map_or(0, Vec::len);
        match created["vulnerability"]["id"].as_str() {
            Some(id) if errors == 0 && id.len() <= 100 => Ok(id.to_owned()),
            // `vulnerabilityCreate: null` with the resource error: no Ultimate, no permission.
            _ if created.is_null() => Err(GitlabError::Forbidden),
            _ => Err(GitlabError::Unprocessable),
        }
    }

    async fn set_status(
        &self,
        project_id: u64,
        sha: &str,
        state: &str,
        description: &str,
        target_url: Option<&str>,
    ) -> Result<(), GitlabError> {
        let mut body = json!({
            "state": state,
            "name": crate::domain::report::STATUS_NAME,
            "description": description,
        });
        if let Some(url) = target_url {
            body["target_url"] = json!(url);
        }
        let _: serde_json::Value =
            self.send_json(Method::POST, &format!("/projects/{project_id}/statuses/{sha}"), &body).await?;
        Ok(())
    }
}
