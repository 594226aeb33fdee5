//! What GitLab and the network can do wrong: TLS, slowness, endless and huge bodies, redirects,
//! non-GitLab servers, unreachable hosts, private addresses behind DNS names, subpath installs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use gitlab_sim::{Behaviour, SimConfig};
use serde_json::json;

use crate::support::{demo, env};

#[tokio::test]
async fn hostile_or_broken_servers_are_cut_off_and_reported() {
    let env = env("hostile").var("GITLAB_HTTP_TIMEOUT_MS", "1500").start().await;
    let cases = [
        (Behaviour::SlowHeaders(std::time::Duration::from_secs(10)), 504, "instance_timeout"),
        (Behaviour::EndlessBody, 502, "not_gitlab"),
        (Behaviour::HugeBody(12 * 1024 * 1024), 502, "not_gitlab"),
        (Behaviour::Redirect("https://127.0.0.1:1/elsewhere".into()), 502, "not_gitlab"),
        (Behaviour::Html, 502, "not_gitlab"),
        (Behaviour::NotFound, 502, "not_gitlab"),
    ];
    for (behaviour, status, code) in cases {
        let name = format!("{behaviour:?}");
        env.sim.set_behaviour(behaviour);
        let started = std::time::Instant::now();
        let reply = env.post("team-a", "/integrations/gitlab", &env.connect_body(demo::API)).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{name}: {}", reply.raw);
        assert!(reply.body["error"]["hint"].as_str().is_some(), "{name}");
        // Bounded by the configured timeout, never a hang.
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{name} took {:?}", started.elapsed());
    }
    assert!(env.items().await.is_empty());
    assert!(env.secret_names().await.is_empty());
}

#[tokio::test]
async fn tls_problems_are_reported_as_tls_errors() {
    let env = env("tls").start().await;
    let other =
        gitlab_sim::start(SimConfig::default(), SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("second sim");
    // No CA supplied: the simulator's private CA is not publicly trusted.
    let no_ca = env
        .post("team-a", "/integrations/gitlab", &json!({ "instance_url": env.sim.base_url(), "token": demo::API }))
        .await;
    assert_eq!((no_ca.status, no_ca.code()), (502, "tls_error"), "{}", no_ca.raw);
    assert!(no_ca.body["error"]["hint"].as_str().expect("hint").contains("ca_certificate"));
    // Another instance's CA does not vouch for this one.
    let wrong = env
        .post(
            "team-a",
            "/integrations/gitlab",
            &json!({ "instance_url": env.sim.base_url(), "token": demo::API, "ca_certificate": other.ca_pem }),
        )
        .await;
    assert_eq!((wrong.status, wrong.code()), (502, "tls_error"), "{}", wrong.raw);
    assert!(env.items().await.is_empty());
}

#[tokio::test]
async fn an_unreachable_instance_is_reported_with_the_allowlist_hint() {
    let env = env("unreachable").start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let reply = env
        .post(
            "team-a",
            "/integrations/gitlab",
            &json!({ "instance_url": format!("https://127.0.0.1:{port}"), "token": demo::API }),
        )
        .await;
    assert_eq!((reply.status, reply.code()), (502, "instance_unreachable"), "{}", reply.raw);
    assert!(reply.body["error"]["hint"].as_str().expect("hint").contains("allowlist"));
    assert!(!reply.raw.contains("127.0.0.1"), "address echoed: {}", reply.raw);
}

#[tokio::test]
async fn loopback_needs_the_operator_allowlist() {
    let env = env("no_allowlist").var("OUTBOUND_ALLOWLIST", "").start().await;
    let reply = env.post("team-a", "/integrations/gitlab", &env.connect_body(demo::API)).await;
    assert_eq!(
        (reply.status, reply.body["error"]["details"]["reason"].as_str()),
        (400, Some("ip_literal_not_public")),
        "{}",
        reply.raw
    );
    assert!(env.sim.requests().is_empty());
}

#[tokio::test]
async fn subpath_installs_use_the_relative_root() {
    let sim = SimConfig { base_path: "/gitlab".into(), ..SimConfig::default() };
    let env = env("subpath").sim(sim).start().await;
    let base = env.sim.base_url();
    assert!(base.ends_with("/gitlab"));
    let body = env.connect("team-a", demo::API).await;
    assert_eq!(body["api_url"], format!("{base}/api/v4"));
    assert!(env.sim.requests().iter().all(|r| r.path.starts_with("/gitlab/")), "{:?}", env.sim.requests());
    // Without the relative root the server is a plain web server: not GitLab.
    let root = base.trim_end_matches("/gitlab").to_owned();
    let reply = env
        .post(
            "team-a",
            "/integrations/gitlab",
            &json!({ "instance_url": root, "token": demo::API, "ca_certificate": env.sim.ca_pem }),
        )
        .await;
    assert_eq!((reply.status, reply.code()), (502, "not_gitlab"), "{}", reply.raw);
}

#[tokio::test]
async fn host_names_are_resolved_once_and_every_answer_is_classified() {
    let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
    let records = HashMap::from([
        ("gitlab.sim.test".to_owned(), vec![loopback]),
        ("private.sim.test".to_owned(), vec!["10.1.2.3".parse().expect("ip")]),
        (
            "mixed.sim.test".to_owned(),
            vec!["93.184.216.34".parse().expect("ip"), "169.254.169.254".parse().expect("ip")],
        ),
        ("mapped.sim.test".to_owned(), vec!["::ffff:127.0.0.1".parse().expect("ip")]),
    ]);
    let dns = gitlab_sim::start_dns(records, SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("dns");
    let sim = SimConfig { cert_names: vec!["gitlab.sim.test".into()], ..SimConfig::default() };
    let env = env("dns")
        .sim(sim)
        .var("DNS_SERVER", &dns.addr.to_string())
        .var("OUTBOUND_ALLOWLIST", "gitlab.sim.test")
        .start()
        .await;
    let port = env.sim.addr.port();

    // An allowlisted name may resolve to loopback; the connection goes to the pinned address.
    let by_name = env.sim.base_url_for("gitlab.sim.test");
    let ok = env
        .post(
            "team-a",
            "/integrations/gitlab",
            &json!({ "instance_url": by_name, "token": demo::API, "ca_certificate": env.sim.ca_pem }),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.raw);

    for (host, reason) in [
        ("private.sim.test", "private_address"),
        ("mixed.sim.test", "private_address"),
        ("mapped.sim.test", "private_address"),
        ("nxdomain.sim.test", "dns_failure"),
    ] {
        let url = format!("https://{host}:{port}");
        let reply = env.post("team-a", "/integrations/gitlab/preflight", &json!({ "instance_url": url })).await;
        assert_eq!(
            (reply.status, reply.body["error"]["details"]["reason"].as_str()),
            (400, Some(reason)),
            "{host}: {}",
            reply.raw
        );
        for ip in ["10.1.2.3", "169.254.169.254", "127.0.0.1"] {
            assert!(!reply.raw.contains(ip), "resolved address echoed: {}", reply.raw);
        }
    }
    assert_eq!(env.items().await.len(), 1);
}
