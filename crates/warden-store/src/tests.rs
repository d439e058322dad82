//! Store behaviour that callers rely on: preconditions checked in the transaction, one event per
//! change and none for a refused one, revocation cascading, the revocation feed, and migrations.

use warden_core::{AgentId, AgentStatus, Name, Origin, Role};

use crate::{Actor, AgentFilter, NewAgent, Store, StoreError};

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("w.db")).unwrap();
    (dir, store)
}

fn new_agent(id: &AgentId, tags: &[&str]) -> NewAgent {
    NewAgent {
        id: id.clone(),
        owner: "ana@example.com".to_owned(),
        purpose: "test".to_owned(),
        tags: tags.iter().map(|t| name(t)).collect(),
        origin: Origin::Manual,
        secret_hash: Some([7; 32]),
        template: None,
    }
}

#[tokio::test]
async fn refused_changes_write_nothing() {
    let (_dir, store) = open();
    let admin = Actor::person(&name("admin"));
    store.create_team(&admin, &name("payments")).await.unwrap();
    let err = store.create_team(&admin, &name("payments")).await.unwrap_err();
    assert_eq!(err, StoreError::Conflict("team `payments` already exists".to_owned()));
    let ghost = AgentId::new("warden.local", &name("ghost"), &name("a"));
    let err = store.register_agent(&admin, new_agent(&ghost, &[])).await.unwrap_err();
    assert_eq!(err.to_string(), "team `ghost` does not exist");
    let err = store
        .create_access_token(&admin, &name("t"), Role::TeamAdmin, Some(&name("nope")), [1; 32])
        .await;
    assert!(matches!(err, Err(StoreError::NotFound { kind: "team", .. })));
    let events = store.list_events(0, 100).await.unwrap();
    assert_eq!(events.len(), 1, "only the team creation is recorded: {events:?}");
    assert_eq!(events[0].action, "team.create");
    assert_eq!(events[0].seq, 1);
}

#[tokio::test]
async fn revocation_cascades_and_is_permanent() {
    let (_dir, store) = open();
    let admin = Actor::person(&name("admin"));
    store.create_team(&admin, &name("payments")).await.unwrap();
    let orch = AgentId::new("warden.local", &name("payments"), &name("orch"));
    let other = AgentId::new("warden.local", &name("payments"), &name("orchestra"));
    store.register_agent(&admin, new_agent(&orch, &["prod"])).await.unwrap();
    store.register_agent(&admin, new_agent(&other, &[])).await.unwrap();
    let child = orch.child(&name("sub"));
    let grandchild = child.child(&name("subsub"));
    for id in [&child, &grandchild] {
        let sub = NewAgent {
            origin: Origin::Delegated,
            secret_hash: None,
            ..new_agent(id, &[])
        };
        let agent = store
            .register_subagent(&Actor::agent(&orch), sub, Vec::new())
            .await
            .unwrap();
        assert_eq!(agent.tags, vec![name("prod")], "tags are inherited");
        assert_eq!(agent.origin, Origin::Delegated);
    }
    store
        .set_agent_status(&admin, &orch, AgentStatus::Revoked)
        .await
        .unwrap();
    for id in [&orch, &child, &grandchild] {
        assert_eq!(store.get_agent(id).await.unwrap().status, AgentStatus::Revoked, "{id}");
    }
    // `orchestra` shares a prefix with `orch` but is not its descendant.
    assert_eq!(store.get_agent(&other).await.unwrap().status, AgentStatus::Active);
    let err = store
        .set_agent_status(&admin, &orch, AgentStatus::Active)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("revocation is permanent"), "{err}");
    let feed = store.list_revocations(0, 100).await.unwrap();
    let agents: Vec<&str> = feed.iter().map(|r| r.agent.as_str()).collect();
    assert_eq!(agents, [orch.as_str(), child.as_str(), grandchild.as_str()]);
    assert!(feed.iter().all(|r| r.state == "revoked"));
}

#[tokio::test]
async fn resume_keeps_refusing_tokens_from_before_the_suspension() {
    let (_dir, store) = open();
    let admin = Actor::person(&name("admin"));
    store.create_team(&admin, &name("payments")).await.unwrap();
    let id = AgentId::new("warden.local", &name("payments"), &name("a"));
    store.register_agent(&admin, new_agent(&id, &[])).await.unwrap();
    store
        .set_agent_status(&admin, &id, AgentStatus::Suspended)
        .await
        .unwrap();
    store.set_agent_status(&admin, &id, AgentStatus::Active).await.unwrap();
    // Resuming an active agent changes nothing and records nothing.
    store.set_agent_status(&admin, &id, AgentStatus::Active).await.unwrap();
    let feed = store.list_revocations(0, 100).await.unwrap();
    assert_eq!(feed.len(), 2);
    assert_eq!(feed[0].state, "suspended");
    assert_eq!(feed[1].state, "active");
    assert_eq!(
        feed[1].not_before, feed[0].not_before,
        "the cutoff stays at the suspension"
    );
    assert_eq!(store.list_revocations(1, 100).await.unwrap().len(), 1);
}

#[tokio::test]
async fn agents_filter_by_team_and_tag_and_carry_their_scopes() {
    let (_dir, store) = open();
    let admin = Actor::person(&name("admin"));
    for team in ["payments", "search"] {
        store.create_team(&admin, &name(team)).await.unwrap();
    }
    let a = AgentId::new("warden.local", &name("payments"), &name("a"));
    let b = AgentId::new("warden.local", &name("search"), &name("b"));
    store
        .register_agent(&admin, new_agent(&a, &["customer-data", "prod"]))
        .await
        .unwrap();
    store.register_agent(&admin, new_agent(&b, &["prod"])).await.unwrap();
    let scope = crate::NewScope {
        name: name("read"),
        tools: vec![warden_core::ToolPattern::parse("github/get_*").unwrap()],
        sensitive: false,
        description: String::new(),
    };
    store.define_scope(&admin, scope).await.unwrap();
    store.grant(&admin, &name("read"), &a).await.unwrap();
    let err = store.grant(&admin, &name("read"), &a).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)));
    let list = |team: Option<&str>, tag: Option<&str>| {
        let store = store.clone();
        let filter = AgentFilter {
            team: team.map(name),
            tag: tag.map(name),
        };
        async move {
            store
                .list_agents(filter)
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(None, None).await, [a.clone(), b.clone()]);
    assert_eq!(list(Some("search"), None).await, std::slice::from_ref(&b));
    assert_eq!(list(None, Some("customer-data")).await, std::slice::from_ref(&a));
    assert_eq!(list(Some("search"), Some("customer-data")).await, Vec::<AgentId>::new());
    assert_eq!(store.get_agent(&a).await.unwrap().scopes, [name("read")]);
}

#[tokio::test]
async fn reopening_keeps_data_and_newer_schemas_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    {
        let store = Store::open_sqlite(&path).unwrap();
        store.create_team(&Actor::system(), &name("payments")).await.unwrap();
    }
    let store = Store::open_sqlite(&path).unwrap();
    assert_eq!(store.list_teams().await.unwrap().len(), 1);
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Store::open_sqlite(&path).err().unwrap();
    assert!(
        err.to_string()
            .contains("schema is version 99 but this warden knows only up to 4"),
        "{err}"
    );
}

#[tokio::test]
async fn shipped_events_are_stored_once() {
    let (_dir, store) = open();
    let actor = Actor::system();
    let details = serde_json::json!({"kind": "decision"});
    assert!(
        store
            .record_event_once(&actor, "ev-1", "gateway.decision", "a", details.clone())
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_event_once(&actor, "ev-1", "gateway.decision", "a", details.clone())
            .await
            .unwrap()
    );
    assert!(
        store
            .record_event_once(&actor, "ev-2", "gateway.decision", "a", details)
            .await
            .unwrap()
    );
    assert_eq!(store.list_events(0, 100).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_events_are_all_recorded_in_order_of_commit() {
    let (_dir, store) = open();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .record_event(
                    &Actor::system(),
                    "test.event",
                    "agent",
                    &format!("a{i}"),
                    serde_json::json!({"i": i}),
                )
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let events = store.list_events(0, 1000).await.unwrap();
    assert_eq!(events.len(), 200);
    let mut seen: Vec<i64> = events.iter().map(|e| e.after["i"].as_i64().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..200).collect::<Vec<_>>(),
        "every acknowledged event is stored exactly once"
    );
    assert!(
        events.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "sequence numbers have no gaps"
    );
}

#[tokio::test]
async fn templates_are_versioned_and_agents_record_theirs() {
    let (_dir, store) = open();
    let admin = Actor::person(&name("admin"));
    let files = |text: &str| std::collections::BTreeMap::from([(".mcp.json".to_owned(), text.to_owned())]);
    let seeded = store
        .seed_template(&Actor::system(), &name("default"), files("v1"))
        .await
        .unwrap();
    assert_eq!(seeded.map(|t| t.version), Some(1));
    let again = store
        .seed_template(&Actor::system(), &name("default"), files("other"))
        .await
        .unwrap();
    assert_eq!(again, None, "seeding never replaces an existing template");
    let second = store.put_template(&admin, &name("default"), files("v2")).await.unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(
        store.template(&name("default"), None).await.unwrap().files[".mcp.json"],
        "v2"
    );
    assert_eq!(
        store.template(&name("default"), Some(1)).await.unwrap().files[".mcp.json"],
        "v1"
    );
    let err = store.template(&name("default"), Some(9)).await.unwrap_err();
    assert_eq!(err.to_string(), "template `default@9` does not exist");
    assert_eq!(store.list_templates().await.unwrap().len(), 1);

    store.create_team(&admin, &name("payments")).await.unwrap();
    let id = AgentId::new("warden.local", &name("payments"), &name("bot"));
    let template = crate::TemplateRef {
        name: name("default"),
        version: 2,
    };
    let new = NewAgent {
        origin: Origin::GoldenPath,
        template: Some(template.clone()),
        ..new_agent(&id, &[])
    };
    store.register_agent(&admin, new).await.unwrap();
    assert_eq!(store.agent_template(&id).await.unwrap(), Some(template));
    let missing = AgentId::new("warden.local", &name("payments"), &name("bot2"));
    let new = NewAgent {
        template: Some(crate::TemplateRef {
            name: name("default"),
            version: 7,
        }),
        ..new_agent(&missing, &[])
    };
    let err = store.register_agent(&admin, new).await.unwrap_err();
    assert_eq!(err.to_string(), "template `default@7` does not exist");
}

#[tokio::test]
async fn events_with_an_id_are_stored_once_even_in_one_group() {
    let (_dir, store) = open();
    let actor = Actor::system();
    let details = serde_json::json!({"k": 1});
    let (a, b) = tokio::join!(
        store.record_event_once(&actor, "e-1", "hook.stop", "x", details.clone()),
        store.record_event_once(&actor, "e-1", "hook.stop", "x", details.clone()),
    );
    assert_eq!([a.unwrap(), b.unwrap()].iter().filter(|new| **new).count(), 1);
    assert!(
        !store
            .record_event_once(&actor, "e-1", "hook.stop", "x", details)
            .await
            .unwrap()
    );
    let events = store.list_events(0, 100).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.action == "hook.stop").count(), 1);
}
