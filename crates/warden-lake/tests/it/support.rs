//! Shared helpers for the lake's integration tests.

use std::time::Duration;

use warden_lake::{AuditEvent, Decision, LakeConfig, ModelUsage, Subject, ToolCall};

pub(crate) fn config() -> LakeConfig {
    LakeConfig {
        origin: "test.example/audit".to_owned(),
        wal_segment_bytes: 1 << 20,
        seal_max_events: 1_000_000,
        max_unsealed_events: 2_000_000,
        seal_max_age: Duration::from_secs(3600),
        checkpoint_interval: Duration::from_millis(50),
        ..LakeConfig::default()
    }
}

/// A varied event: tool decisions (some denied), tool outcomes and model usage, across teams, agents
/// and two days.
pub(crate) fn event(i: u64) -> AuditEvent {
    let team = format!("team-{}", i % 3);
    let subject = Subject {
        agent_id: format!("spiffe://acme/agent/a{}", i % 7),
        team: Some(team),
        session_id: Some(format!("s{}", i / 10)),
        ..Subject::default()
    };
    let time = 1_764_000_000_000 + (i as i64) * 3_600_000 / 4;
    let id = format!("ev-{i}");
    match i % 4 {
        0 | 1 => {
            let call = ToolCall {
                server: "github".to_owned(),
                tool: format!("tool{}", i % 5),
                decision: if i % 8 == 1 { Decision::Deny } else { Decision::Allow },
                policy_ids: vec![format!("grant/{}", i % 5)],
                reason: None,
            };
            AuditEvent::tool_decision(id, time, &subject, &call)
        }
        2 => {
            let call = ToolCall {
                server: "jira".to_owned(),
                tool: "search".to_owned(),
                decision: Decision::Allow,
                policy_ids: vec![],
                reason: None,
            };
            AuditEvent::tool_outcome(id, time, &subject, &call, !i.is_multiple_of(3), None)
        }
        _ => AuditEvent::model_usage(
            id,
            time,
            &subject,
            &ModelUsage {
                provider: "anthropic".to_owned(),
                model: "claude".to_owned(),
                input_tokens: Some(100 + i as i64),
                output_tokens: Some(10),
                cost_micro_usd: Some(42),
                ..ModelUsage::default()
            },
        ),
    }
}

pub(crate) fn events(range: std::ops::Range<u64>) -> Vec<AuditEvent> {
    range.map(event).collect()
}
