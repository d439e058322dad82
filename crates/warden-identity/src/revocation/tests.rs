#![allow(clippy::unwrap_used, reason = "tests")]

use super::*;

const AGENT: &str = "spiffe://warden.local/team/payments/agent/orch";

fn entry(seq: u64, state: AgentStatus, not_before: Option<i64>) -> RevocationEntry {
    RevocationEntry {
        seq,
        agent: AGENT.to_owned(),
        state,
        not_before,
        at: 1_700_000_000,
    }
}

#[test]
fn applies_in_order_and_ignores_replays() {
    let mut set = RevocationSet::default();
    assert_eq!(set.status(AGENT), AgentState::Active { not_before: None });
    assert!(set.apply(entry(1, AgentStatus::Suspended, None)));
    assert_eq!(set.status(AGENT), AgentState::Suspended);
    assert!(set.apply(entry(3, AgentStatus::Active, Some(1_700_000_100))));
    assert_eq!(
        set.status(AGENT),
        AgentState::Active {
            not_before: Some(1_700_000_100)
        }
    );
    // A replayed or older entry must not undo a newer one.
    assert!(!set.apply(entry(2, AgentStatus::Revoked, None)));
    assert!(!set.apply(entry(3, AgentStatus::Revoked, None)));
    assert_eq!(
        set.status(AGENT),
        AgentState::Active {
            not_before: Some(1_700_000_100)
        }
    );
    assert_eq!(set.seq(), 3);
    assert!(set.apply(entry(4, AgentStatus::Revoked, None)));
    assert_eq!(set.status(AGENT), AgentState::Revoked);
    assert_eq!(set.len(), 1);
}

#[test]
fn plain_active_entries_are_not_kept() {
    let mut set = RevocationSet::default();
    set.apply(entry(1, AgentStatus::Suspended, None));
    set.apply(entry(2, AgentStatus::Active, None));
    assert!(set.is_empty());
    assert_eq!(set.status(AGENT), AgentState::Active { not_before: None });
}

#[test]
fn wire_format() {
    let json =
        r#"{"seq":7,"agent":"spiffe://warden.local/team/payments/agent/orch","state":"revoked","at":1700000000}"#;
    let parsed: RevocationEntry = serde_json::from_str(json).unwrap();
    assert_eq!(parsed, entry(7, AgentStatus::Revoked, None));
    assert_eq!(serde_json::to_string(&parsed).unwrap(), json);
    let with_cutoff: RevocationEntry =
        serde_json::from_str(r#"{"seq":8,"agent":"a","state":"active","not_before":5,"at":6}"#).unwrap();
    assert_eq!(with_cutoff.not_before, Some(5));
    assert!(serde_json::from_str::<RevocationEntry>(r#"{"seq":9,"agent":"a","state":"gone","at":6}"#).is_err());
}

#[test]
fn no_revocations_refuses_nobody() {
    assert_eq!(NoRevocations.status(AGENT), AgentState::Active { not_before: None });
}
