//! The api function's routes through the local host: repositories, tracking, sync trigger and
//! status, bad parameters and tenant isolation.

use serde_json::json;

use crate::support::{demo, env};
use crate::sync_flows::wait_for_run;

#[tokio::test]
async fn repositories_page_filter_search_and_track() {
    let env = env("api_repos").with_workers().start().await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    wait_for_run(&env, "team-a", &id, None).await;
    let base = format!("/integrations/gitlab/{id}/repositories");

    let all = env.get("team-a", &base).await;
    assert_eq!(all.status, 200, "{}", all.raw);
    let items = all.body["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), gitlab_sim::SimConfig::default().projects.len());
    assert_eq!(all.body["next_cursor"], serde_json::Value::Null);
    let first = &items[0];
    for field in [
        "project_id",
        "path_with_namespace",
        "web_url",
        "default_branch",
        "visibility",
        "archived",
        "empty_repo",
        "last_activity_at",
        "languages",
        "tracked",
    ] {
        assert!(first.get(field).is_some(), "missing {field}: {first}");
    }
    let ids: Vec<u64> = items.iter().map(|i| i["project_id"].as_u64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered by id: {ids:?}");

    // Cursor pagination.
    let page1 = env.get("team-a", &format!("{base}?limit=2")).await;
    assert_eq!(page1.body["items"].as_array().expect("items").len(), 2);
    let cursor = page1.body["next_cursor"].as_str().expect("cursor").to_owned();
    let page2 = env.get("team-a", &format!("{base}?limit=2&cursor={cursor}")).await;
    let rest: Vec<u64> =
        page2.body["items"].as_array().expect("items").iter().map(|i| i["project_id"].as_u64().expect("id")).collect();
    assert_eq!(rest, ids[2..].to_vec());

    // Search by path, case-insensitively.
    let path = first["path_with_namespace"].as_str().expect("path").to_owned();
    let needle = path.rsplit('/').next().expect("name").to_uppercase();
    let found = env.get("team-a", &format!("{base}?search={needle}")).await;
    assert!(
        found.body["items"].as_array().expect("items").iter().any(|i| i["path_with_namespace"] == path.as_str()),
        "{}",
        found.raw
    );

    // Track one, filter by tracked, untrack it again.
    let tracked = env
        .request(
            "PATCH",
            Some("team-a"),
            &base,
            Some(("application/json", json!({ "track": [ids[0]] }).to_string().into_bytes())),
        )
        .await;
    assert_eq!(
        (tracked.status, tracked.body.clone()),
        (200, json!({ "tracked": 1, "untracked": 0 })),
        "{}",
        tracked.raw
    );
    let only = env.get("team-a", &format!("{base}?tracked=true")).await;
    let only_ids: Vec<u64> =
        only.body["items"].as_array().expect("items").iter().map(|i| i["project_id"].as_u64().expect("id")).collect();
    assert_eq!(only_ids, vec![ids[0]]);
    assert_eq!(
        env.get("team-a", &format!("{base}?tracked=false")).await.body["items"].as_array().expect("items").len(),
        ids.len() - 1
    );

    // Unknown ids change nothing.
    let bad = env
        .request(
            "PATCH",
            Some("team-a"),
            &base,
            Some(("application/json", json!({ "untrack": [ids[0]], "track": [999_999_999] }).to_string().into_bytes())),
        )
        .await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_request"), "{}", bad.raw);
    assert_eq!(bad.body["error"]["details"]["unknown_project_ids"], json!([999_999_999]));
    assert_eq!(
        env.get("team-a", &format!("{base}?tracked=true")).await.body["items"].as_array().expect("items").len(),
        1
    );
    let both = env
        .request(
            "PATCH",
            Some("team-a"),
            &base,
            Some(("application/json", json!({ "track": [ids[1]], "untrack": [ids[1]] }).to_string().into_bytes())),
        )
        .await;
    assert_eq!(both.status, 400);

    for (query, field) in
        [("limit=0", "limit"), ("limit=101", "limit"), ("cursor=abc", "cursor"), ("tracked=maybe", "tracked")]
    {
        let reply = env.get("team-a", &format!("{base}?{query}")).await;
        assert_eq!((reply.status, reply.body["error"]["details"]["field"].as_str()), (400, Some(field)), "{query}");
    }
}

#[tokio::test]
async fn a_triggered_sync_reports_its_status() {
    let env = env("api_sync").with_workers().start().await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let first = wait_for_run(&env, "team-a", &id, None).await;
    let path = format!("/integrations/gitlab/{id}/sync");
    let accepted = env.request("POST", Some("team-a"), &path, None).await;
    assert_eq!(accepted.status, 202, "{}", accepted.raw);
    let sync_id = accepted.body["sync_id"].as_str().expect("sync id").to_owned();
    let run = wait_for_run(&env, "team-a", &id, first["sync_id"].as_str()).await;
    assert_eq!(run["sync_id"], sync_id.as_str());
    let status = env.get("team-a", &path).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.body["last"]["sync_id"], sync_id.as_str());
    assert_eq!(status.body["last"]["state"], "succeeded");
    let expected = gitlab_sim::SimConfig::default().projects.len() as u64;
    assert_eq!(status.body["last"]["projects"]["seen"], expected);
    assert_eq!(status.body["last"]["projects"]["unchanged"], expected, "second sync of an unchanged instance");
    assert_eq!(status.body["current"], serde_json::Value::Null);
}

#[tokio::test]
async fn every_api_route_hides_other_teams_integrations() {
    let env = env("api_tenancy").with_workers().start().await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    wait_for_run(&env, "team-a", &id, None).await;
    let missing = "0".repeat(32);
    for target in [id.as_str(), missing.as_str(), "not-an-id"] {
        let repos = format!("/integrations/gitlab/{target}/repositories");
        let sync = format!("/integrations/gitlab/{target}/sync");
        let body = Some(("application/json", json!({ "track": [1] }).to_string().into_bytes()));
        for (method, path, body) in
            [("GET", &repos, None), ("PATCH", &repos, body), ("POST", &sync, None), ("GET", &sync, None)]
        {
            let reply = env.request(method, Some("team-b"), path, body).await;
            assert_eq!((reply.status, reply.code()), (404, "not_found"), "{method} {path}: {}", reply.raw);
        }
    }
    let no_team = env.request("GET", None, &format!("/integrations/gitlab/{id}/repositories"), None).await;
    assert_eq!(no_team.status, 401);
    // Team A's data is untouched.
    let own = env.get("team-a", &format!("/integrations/gitlab/{id}/repositories")).await;
    assert!(own.body["items"].as_array().expect("items").iter().all(|i| i["tracked"] == false));
}

#[tokio::test]
async fn an_integration_tracks_at_most_the_configured_number_of_projects() {
    let env = env("api_track_quota")
        .var("MAX_TRACKED_PROJECTS", "2")
        .sim(gitlab_sim::SimConfig::with_generated_projects(5))
        .with_workers()
        .start()
        .await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    wait_for_run(&env, "team-a", &id, None).await;
    let base = format!("/integrations/gitlab/{id}/repositories");
    let ids: Vec<u64> = env.get("team-a", &base).await.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["project_id"].as_u64().expect("id"))
        .collect();
    let patch = |body: serde_json::Value| {
        let env = &env;
        let base = base.clone();
        async move {
            env.request("PATCH", Some("team-a"), &base, Some(("application/json", body.to_string().into_bytes()))).await
        }
    };
    let over = patch(json!({ "track": [ids[0], ids[1], ids[2]] })).await;
    assert_eq!((over.status, over.code()), (409, "quota_exceeded"), "{}", over.raw);
    assert_eq!(
        over.body["error"]["details"],
        json!({ "limit": "tracked_projects_per_integration", "max": 2, "would_track": 3 })
    );
    assert_eq!(env.get("team-a", &format!("{base}?tracked=true")).await.body["items"], json!([]), "nothing changed");
    assert_eq!(patch(json!({ "track": [ids[0], ids[1]] })).await.status, 200);
    // Tracking one already tracked is no change; a third is refused; a swap fits.
    assert_eq!(patch(json!({ "track": [ids[1]] })).await.status, 200);
    assert_eq!(patch(json!({ "track": [ids[2]] })).await.status, 409);
    let swap = patch(json!({ "track": [ids[2]], "untrack": [ids[0]] })).await;
    assert_eq!(swap.status, 200, "{}", swap.raw);
    let tracked: Vec<u64> = env.get("team-a", &format!("{base}?tracked=true")).await.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["project_id"].as_u64().expect("id"))
        .collect();
    assert_eq!(tracked, vec![ids[1], ids[2]]);
}
