//! Repository sync through the local host: connect queues a sync, the sync function lists the
//! simulator's projects and reconciles them into DynamoDB.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::support::{Env, demo, env};

/// The finished run recorded for an integration, once there is one.
pub(crate) async fn wait_for_run(env: &Env, team: &str, id: &str, previous: Option<&str>) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = env
            .dynamo()
            .get_item()
            .table_name(env.table())
            .key("pk", AttributeValue::S(format!("TEAM#{team}#INTEGRATION#{id}")))
            .key("sk", AttributeValue::S("SYNC".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get sync item");
        if let Some(run) = out.item.as_ref().and_then(|i| i.get("last_run")).and_then(|v| v.as_s().ok()) {
            let run: Value = serde_json::from_str(run).expect("run json");
            if previous.is_none_or(|p| run["sync_id"] != p) {
                return run;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no finished sync run for {id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Project items of an integration, by project id.
pub(crate) async fn project_items(
    env: &Env,
    team: &str,
    id: &str,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    env.items()
        .await
        .into_iter()
        .filter(|i| {
            i.get("pk").and_then(|v| v.as_s().ok()).is_some_and(|pk| pk == &format!("TEAM#{team}#INTEGRATION#{id}"))
                && i.get("sk").and_then(|v| v.as_s().ok()).is_some_and(|sk| sk.starts_with("PROJECT#"))
        })
        .collect()
}

#[tokio::test]
async fn connecting_syncs_the_projects_and_a_second_sync_writes_nothing() {
    let env = env("sync_basic").with_workers().start().await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let run = wait_for_run(&env, "team-a", &id, None).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let expected = gitlab_sim::SimConfig::default().projects.len() as u64;
    assert_eq!(run["seen"], expected);
    assert_eq!(run["added"], expected);
    let items = project_items(&env, "team-a", &id).await;
    assert_eq!(items.len() as u64, expected);
    for item in &items {
        let path = item["path_with_namespace"].as_s().expect("path");
        assert_eq!(item["web_url"].as_s().expect("url"), &format!("{}/{path}", env.sim.base_url()));
        assert_eq!(item["tracked"], AttributeValue::Bool(false));
    }
    assert_eq!(env.get("team-a", &format!("/integrations/gitlab/{id}")).await.body["status"], "active");
}
