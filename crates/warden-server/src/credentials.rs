//! The server's credential state: the key ring, the verifier built from it, the revocation set fed from
//! the store, and the notification that wakes revocation-feed long-polls.
//!
//! The revocation set is the same structure a standalone gateway builds from the feed, so the
//! control plane and every gateway decide on identical state.

use std::sync::{Arc, RwLock};

use warden_identity::keys::KeyRing;
use warden_identity::revocation::{RevocationEntry, RevocationSet};
use warden_identity::token::{VerifiedToken, Verifier, VerifierConfig, VerifyError};
use warden_store::{RevocationRecord, Store, StoreError};

/// Limits on the tokens this server issues.
#[derive(Debug, Clone, Copy)]
pub struct TokenPolicy {
    /// The longest lifetime of any token, in seconds (at most 900).
    pub max_ttl_secs: i64,
    /// The deepest delegation allowed (a root agent is depth 0).
    pub max_depth: u32,
}

/// Credential state shared by every request.
pub struct Credentials {
    /// The signing keys.
    pub keys: RwLock<KeyRing>,
    verifier: RwLock<Arc<Verifier>>,
    revocations: RwLock<RevocationSet>,
    feed: tokio::sync::watch::Sender<u64>,
    /// `iss` of every token.
    pub issuer: String,
    /// `aud` of every token: the Warden gateway resource.
    pub audience: String,
    /// Lifetime and depth limits.
    pub policy: TokenPolicy,
}

/// Now, in unix seconds.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn entry(record: RevocationRecord) -> Option<RevocationEntry> {
    Some(RevocationEntry {
        seq: u64::try_from(record.seq).ok()?,
        agent: record.agent,
        state: warden_core::AgentStatus::parse(&record.state)?,
        not_before: record.not_before,
        at: record.at,
    })
}

impl Credentials {
    /// Builds the state from the key ring and replays the whole revocation feed.
    pub async fn load(
        keys: KeyRing,
        trust_domain: &str,
        policy: TokenPolicy,
        store: &Store,
    ) -> Result<Credentials, StoreError> {
        let issuer = format!("spiffe://{trust_domain}");
        let audience = format!("spiffe://{trust_domain}/warden/gateway");
        let verifier = Verifier::from_key_ring(
            &keys,
            now_unix(),
            policy.max_ttl_secs,
            VerifierConfig::new(issuer.clone(), audience.clone()),
        );
        let (feed, _) = tokio::sync::watch::channel(0);
        let credentials = Credentials {
            keys: RwLock::new(keys),
            verifier: RwLock::new(Arc::new(verifier)),
            revocations: RwLock::new(RevocationSet::default()),
            feed,
            issuer,
            audience,
            policy,
        };
        credentials.catch_up(store).await?;
        Ok(credentials)
    }

    /// Applies every feed entry the store has beyond what was applied, and wakes long-polls.
    pub async fn catch_up(&self, store: &Store) -> Result<(), StoreError> {
        loop {
            let since = self.revocation_seq();
            let records = store
                .list_revocations(i64::try_from(since).unwrap_or(i64::MAX), 10_000)
                .await?;
            if records.is_empty() {
                return Ok(());
            }
            let mut set = self.revocations.write().map_err(|_| poisoned())?;
            for record in records {
                if let Some(entry) = entry(record) {
                    set.apply(entry);
                }
            }
            self.feed.send_replace(set.seq());
        }
    }

    /// The position of the last applied feed entry.
    pub fn revocation_seq(&self) -> u64 {
        self.revocations.read().map_or(0, |set| set.seq())
    }

    /// A receiver that changes whenever new feed entries are applied.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.feed.subscribe()
    }

    /// Verifies an agent token: signature, claims, and the revocation state of every agent it
    /// depends on. Fails closed when internal state is unusable.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let verifier = self
            .verifier
            .read()
            .map(|v| Arc::clone(&v))
            .map_err(|_| VerifyError::Malformed {
                reason: "the server's verification state is unavailable",
            })?;
        let set = self.revocations.read().map_err(|_| VerifyError::Malformed {
            reason: "the server's revocation state is unavailable",
        })?;
        verifier.verify(token, now_unix(), &*set)
    }

    /// Rebuilds the verifier from the key ring's published keys (after a rotation).
    pub fn refresh_verifier(&self) {
        let Ok(keys) = self.keys.read() else { return };
        let verifier = Verifier::from_key_ring(
            &keys,
            now_unix(),
            self.policy.max_ttl_secs,
            VerifierConfig::new(self.issuer.clone(), self.audience.clone()),
        );
        if let Ok(mut slot) = self.verifier.write() {
            *slot = Arc::new(verifier);
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Internal("revocation state lock poisoned".to_owned())
}
