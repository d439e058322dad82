//! Agent access tokens: compact EdDSA JWTs, minted with Warden's active signing key and checked by every
//! enforcement point through one function, [`Verifier::verify`].
//!
//! A token's claims follow RFC 8693 §4.1: `sub` is the root agent on whose behalf the work is done,
//! `act.sub` the current actor (the subagent itself), nested `act`s the earlier actors, nearest first,
//! and `dlg_depth` counts the hops. Decisions are made as the acting party; nested actors serve
//! attribution and revocation only.
//!
//! Verification never lets the token choose how it is checked: the algorithm is pinned to EdDSA, the
//! key comes from the verifier's own set by `kid`, and the signature is checked strictly (no weak keys,
//! no malleable encodings) before any claim is read. It never panics, whatever the input.
//!
//! A token presented again (an agent's every call carries the same bearer) skips the signature: the
//! verifier remembers the decoded claims of tokens whose signature passed, by the SHA-256 of the whole
//! token text, and checks their claims, times and revocation afresh on every use.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use warden_core::AgentId;

use crate::keys::{KeyRing, SigningKey};
use crate::revocation::{AgentState, RevocationCheck};

#[cfg(test)]
mod tests;

/// How far, by default, a verifier's clock may disagree with the issuer's (seconds).
pub const DEFAULT_LEEWAY_SECS: u32 = 5;

/// The longest token accepted, in bytes; a depth-3 delegated token is well under 1 KiB.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// How much of a value taken from a token an error message repeats.
const EXCERPT_CHARS: usize = 80;

/// One actor of a delegated token (RFC 8693 §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The actor's agent id.
    pub sub: String,
    /// The actor before this one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

/// The claims of an agent access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// The issuing Warden.
    pub iss: String,
    /// The root agent on whose behalf the token acts.
    pub sub: String,
    /// The audience. In verified claims, the one the verifier expects (a token may name several).
    pub aud: String,
    /// Expiry (unix seconds).
    pub exp: i64,
    /// Issue time (unix seconds).
    pub iat: i64,
    /// Not valid before (unix seconds).
    pub nbf: i64,
    /// The token's unique id.
    pub jti: String,
    /// The acting agent's team.
    pub team: String,
    /// Granted scope names, space separated.
    pub scope: String,
    /// For a subagent's token: the current actor, with the earlier ones nested inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// Delegation hops from the root agent: 0 for a root agent's token.
    pub dlg_depth: u32,
}

impl Claims {
    /// The agent that is acting: `act.sub`, else `sub`. Decide and record as this agent.
    pub fn acting_agent(&self) -> &str {
        self.act.as_ref().map_or(&self.sub, |actor| &actor.sub)
    }

    /// The delegation chain: the root agent first, the acting agent last.
    pub fn chain(&self) -> Vec<&str> {
        let mut chain: Vec<&str> = self.actors().collect();
        chain.push(&self.sub);
        chain.reverse();
        chain
    }

    /// The granted scope names.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }

    /// Claims for `actor`, a subagent delegated from this token's acting agent (RFC 8693 §4.1).
    ///
    /// `iss`, `sub`, `aud` and `team` stay; `actor` becomes the current actor and this token's actors
    /// move down the nested chain; `dlg_depth` grows by one; the token lives `ttl_secs` from
    /// `now_unix` but never longer than this one. The caller chooses `scope` (a subset of this token's
    /// scopes) and a fresh `jti`.
    pub fn delegated(&self, actor: &AgentId, scope: String, jti: String, now_unix: i64, ttl_secs: i64) -> Claims {
        Claims {
            iss: self.iss.clone(),
            sub: self.sub.clone(),
            aud: self.aud.clone(),
            exp: self.exp.min(now_unix.saturating_add(ttl_secs)),
            iat: now_unix,
            nbf: now_unix,
            jti,
            team: self.team.clone(),
            scope,
            act: Some(Actor {
                sub: actor.to_string(),
                act: self.act.clone().map(Box::new),
            }),
            dlg_depth: self.dlg_depth.saturating_add(1),
        }
    }

    /// The actors' ids, current actor first.
    fn actors(&self) -> impl Iterator<Item = &str> {
        std::iter::successors(self.act.as_ref(), |actor| actor.act.as_deref()).map(|actor| actor.sub.as_str())
    }

    /// Checks that `dlg_depth` counts the actors.
    fn check_depth(&self) -> Result<(), (u32, usize)> {
        let actors = self.actors().count();
        if usize::try_from(self.dlg_depth).ok() == Some(actors) {
            return Ok(());
        }
        Err((self.dlg_depth, actors))
    }
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The claims' `dlg_depth` does not count the actors of their `act` chain.
    #[error("claim `dlg_depth` is {dlg_depth} but the `act` chain names {actors} actors")]
    DelegationDepth {
        /// The claimed depth.
        dlg_depth: u32,
        /// The actors in the chain.
        actors: usize,
    },
    /// The claims could not be serialised.
    #[error("cannot encode token claims")]
    Encode(#[source] serde_json::Error),
}

/// Signs `claims` with `key` into a compact JWS (`header.payload.signature`).
pub fn mint(key: &SigningKey, claims: &Claims) -> Result<String, TokenError> {
    claims
        .check_depth()
        .map_err(|(dlg_depth, actors)| TokenError::DelegationDepth { dlg_depth, actors })?;
    let payload = serde_json::to_vec(claims).map_err(TokenError::Encode)?;
    let mut token = String::with_capacity(key.header_b64().len() + payload.len() * 4 / 3 + 92);
    token.push_str(key.header_b64());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
    Ok(token)
}

/// What a verifier expects of every token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// The expected `iss`.
    pub issuer: String,
    /// The expected `aud`.
    pub audience: String,
    /// How far clocks may disagree (seconds), applied to `exp`, `nbf` and `iat`.
    pub leeway_secs: u32,
}

impl VerifierConfig {
    /// Expects `issuer` and `audience`, with [`DEFAULT_LEEWAY_SECS`] of leeway.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> VerifierConfig {
        VerifierConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }
}

/// Claims that passed every check of [`Verifier::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    claims: Claims,
}

impl VerifiedToken {
    /// The verified claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The verified claims, by value.
    pub fn into_claims(self) -> Claims {
        self.claims
    }
}

/// How many tokens a [`Verifier`] remembers as signed before it starts over.
const SIGNED_CACHE_CAPACITY: usize = 16_384;

/// Checks agent access tokens against a fixed set of public keys.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// Decompressed keys by `kid`, so no token pays for point decompression.
    keys: HashMap<String, VerifyingKey>,
    config: VerifierConfig,
    /// Claims of tokens whose signature passed, by SHA-256 of the token text. Belongs to this key
    /// set: a verifier built for other keys starts empty.
    signed: Arc<Mutex<HashMap<[u8; 32], WireClaims>>>,
}

impl Verifier {
    /// A verifier trusting `keys`, given as `(kid, key)`.
    pub fn new(keys: impl IntoIterator<Item = (String, VerifyingKey)>, config: VerifierConfig) -> Verifier {
        Verifier {
            keys: keys.into_iter().collect(),
            config,
            signed: Arc::default(),
        }
    }

    /// A verifier trusting the keys `ring` publishes at `now_unix` (see [`KeyRing::published`]).
    pub fn from_key_ring(ring: &KeyRing, now_unix: i64, max_token_ttl_secs: i64, config: VerifierConfig) -> Verifier {
        let keys = ring.published(now_unix, max_token_ttl_secs).into_iter();
        Verifier::new(keys.map(|key| (key.kid().to_string(), key.verifying_key())), config)
    }

    /// A verifier trusting the Ed25519 keys of a JWKS document such as `/.well-known/jwks.json`.
    ///
    /// Keys of other types or uses are skipped; a malformed Ed25519 key is an error.
    pub fn from_jwks(jwks: &serde_json::Value, config: VerifierConfig) -> Result<Verifier, JwksError> {
        let set = JwkSet::deserialize(jwks).map_err(|e| JwksError::Invalid { reason: e.to_string() })?;
        let mut keys = HashMap::new();
        for jwk in set.keys {
            let Some((kid, key)) = ed25519_jwk(jwk)? else {
                continue;
            };
            if keys.get(&kid).is_some_and(|known| *known != key) {
                return Err(JwksError::BadKey {
                    kid,
                    reason: "another key has the same `kid`",
                });
            }
            keys.insert(kid, key);
        }
        if keys.is_empty() {
            return Err(JwksError::NoKeys);
        }
        Ok(Verifier {
            keys,
            config,
            signed: Arc::default(),
        })
    }

    /// Checks `token` at `now_unix`: its signature, its claims, and that no agent in its delegation
    /// chain, and no ancestor of its acting agent, is refused by `revocation`.
    pub fn verify(
        &self,
        token: &str,
        now_unix: i64,
        revocation: &dyn RevocationCheck,
    ) -> Result<VerifiedToken, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::TooLong {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let remembered = self.signed.lock().ok().and_then(|signed| signed.get(&digest).cloned());
        if let Some(wire) = remembered {
            let claims = self.check_claims(wire, now_unix)?;
            check_revocation(&claims, revocation)?;
            return Ok(VerifiedToken { claims });
        }
        let parts = split_token(token).ok_or(VerifyError::Malformed {
            reason: "it must be three base64url parts joined by `.`",
        })?;
        let JwsParts {
            signing_input,
            header,
            payload,
            signature,
        } = parts;
        let key = self.key_for(header)?;
        let signature = decode_signature(signature)?;
        key.verify_strict(signing_input.as_bytes(), &signature)
            .map_err(|_| VerifyError::BadSignature)?;
        let wire = decode_claims(payload)?;
        self.remember(digest, &wire);
        let claims = self.check_claims(wire, now_unix)?;
        check_revocation(&claims, revocation)?;
        Ok(VerifiedToken { claims })
    }

    /// Remembers that the token hashing to `digest` is signed by one of this verifier's keys.
    fn remember(&self, digest: [u8; 32], wire: &WireClaims) {
        if let Ok(mut signed) = self.signed.lock() {
            if signed.len() >= SIGNED_CACHE_CAPACITY {
                signed.clear();
            }
            signed.insert(digest, wire.clone());
        }
    }

    /// The key the token's header names, once the header passes.
    fn key_for(&self, header_b64: &str) -> Result<&VerifyingKey, VerifyError> {
        let malformed = |reason| VerifyError::Malformed { reason };
        let bytes = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| malformed("the header is not base64url"))?;
        let header: Header =
            serde_json::from_slice(&bytes).map_err(|_| malformed("the header is not a JSON object with `alg`"))?;
        if header.alg != "EdDSA" {
            return Err(VerifyError::AlgorithmNotAllowed {
                alg: excerpt(&header.alg),
            });
        }
        if header
            .typ
            .as_deref()
            .is_some_and(|typ| !typ.eq_ignore_ascii_case("JWT"))
        {
            return Err(malformed("the header's `typ` is not `JWT`"));
        }
        if header.crit.is_some() {
            return Err(malformed("the header has critical extensions (`crit`)"));
        }
        let kid = header.kid.ok_or(VerifyError::MissingKeyId)?;
        self.keys
            .get(&kid)
            .ok_or_else(|| VerifyError::UnknownKey { kid: excerpt(&kid) })
    }

    fn check_claims(&self, wire: WireClaims, now_unix: i64) -> Result<Claims, VerifyError> {
        let config = &self.config;
        let leeway = i64::from(config.leeway_secs);
        if wire.iss != config.issuer {
            return Err(VerifyError::WrongIssuer {
                found: excerpt(&wire.iss),
                expected: config.issuer.clone(),
            });
        }
        if !wire.aud.contains(&config.audience) {
            return Err(VerifyError::WrongAudience {
                found: wire.aud.excerpt(),
                expected: config.audience.clone(),
            });
        }
        if now_unix > wire.exp.saturating_add(leeway) {
            return Err(VerifyError::Expired { exp: wire.exp });
        }
        let nbf = wire.nbf.unwrap_or(wire.iat);
        if nbf > now_unix.saturating_add(leeway) {
            return Err(VerifyError::NotYetValid { nbf });
        }
        if wire.iat > now_unix.saturating_add(leeway) {
            return Err(VerifyError::IssuedInFuture { iat: wire.iat });
        }
        let claims = wire.into_claims(config.audience.clone(), nbf);
        claims
            .check_depth()
            .map_err(|(dlg_depth, actors)| VerifyError::DelegationDepth { dlg_depth, actors })?;
        Ok(claims)
    }
}

/// Refuses the token if its acting agent, an ancestor of it, or any agent in its chain may not act.
fn check_revocation(claims: &Claims, revocation: &dyn RevocationCheck) -> Result<(), VerifyError> {
    let acting = claims.acting_agent();
    let acting_id = parse_agent(acting)?;
    let refuse = |agent: &str, relation: Relation, refusal: Refusal| {
        VerifyError::AgentRefused(AgentRefusal {
            agent: agent.to_owned(),
            relation,
            refusal,
        })
    };
    if let Some(refusal) = refusal(revocation, acting, claims.iat) {
        return Err(refuse(acting, Relation::Itself, refusal));
    }
    let mut ancestor = acting_id.parent();
    while let Some(id) = ancestor {
        if let Some(refusal) = refusal(revocation, id.as_str(), claims.iat) {
            return Err(refuse(id.as_str(), Relation::AncestorOf(acting.to_owned()), refusal));
        }
        ancestor = id.parent();
    }
    // Chain members are normally the ancestors just checked; anyone else in the chain is checked too.
    for agent in claims.chain() {
        parse_agent(agent)?;
        if agent == acting || is_ancestor(agent, acting) {
            continue;
        }
        if let Some(refusal) = refusal(revocation, agent, claims.iat) {
            return Err(refuse(agent, Relation::DelegatorOf(acting.to_owned()), refusal));
        }
    }
    Ok(())
}

/// Why `agent` refuses a token issued at `iat`, if it does.
fn refusal(revocation: &dyn RevocationCheck, agent: &str, iat: i64) -> Option<Refusal> {
    match revocation.status(agent) {
        AgentState::Revoked => Some(Refusal::Revoked),
        AgentState::Suspended => Some(Refusal::Suspended),
        AgentState::Active {
            not_before: Some(not_before),
        } if iat <= not_before => Some(Refusal::IssuedBefore { not_before, iat }),
        AgentState::Active { .. } => None,
    }
}

fn parse_agent(agent: &str) -> Result<AgentId, VerifyError> {
    AgentId::parse(agent).map_err(|e| VerifyError::InvalidClaims { reason: e.to_string() })
}

/// Whether `agent` is an ancestor of `descendant` by id: a subagent's id extends its parent's.
fn is_ancestor(agent: &str, descendant: &str) -> bool {
    descendant.strip_prefix(agent).is_some_and(|rest| rest.starts_with('/'))
}

/// The parts of a compact JWS; `signing_input` is `header.payload`.
struct JwsParts<'a> {
    signing_input: &'a str,
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

fn split_token(token: &str) -> Option<JwsParts<'_>> {
    let (signing_input, signature) = token.rsplit_once('.')?;
    let (header, payload) = signing_input.split_once('.')?;
    if payload.contains('.') {
        return None;
    }
    Some(JwsParts {
        signing_input,
        header,
        payload,
        signature,
    })
}

fn decode_signature(signature_b64: &str) -> Result<Signature, VerifyError> {
    let bytes = URL_SAFE_NO_PAD.decode(signature_b64).ok();
    let bytes: [u8; 64] = bytes
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(VerifyError::Malformed {
            reason: "the signature is not 64 base64url bytes",
        })?;
    Ok(Signature::from_bytes(&bytes))
}

fn decode_claims(payload_b64: &str) -> Result<WireClaims, VerifyError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| VerifyError::Malformed {
            reason: "the payload is not base64url",
        })?;
    serde_json::from_slice(&bytes).map_err(|e| VerifyError::InvalidClaims { reason: e.to_string() })
}

/// The JOSE header, as far as it matters here; other parameters (`jku`, `jwk`, …) are ignored.
#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

/// The claims as a token may carry them: `aud` a string or an array, `nbf` optional.
#[derive(Debug, Clone, Deserialize)]
struct WireClaims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    iat: i64,
    nbf: Option<i64>,
    jti: String,
    team: String,
    scope: String,
    act: Option<Actor>,
    #[serde(default)]
    dlg_depth: u32,
}

impl WireClaims {
    fn into_claims(self, aud: String, nbf: i64) -> Claims {
        Claims {
            iss: self.iss,
            sub: self.sub,
            aud,
            exp: self.exp,
            iat: self.iat,
            nbf,
            jti: self.jti,
            team: self.team,
            scope: self.scope,
            act: self.act,
            dlg_depth: self.dlg_depth,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, expected: &str) -> bool {
        match self {
            Audience::One(aud) => aud == expected,
            Audience::Many(auds) => auds.iter().any(|aud| aud == expected),
        }
    }

    fn excerpt(&self) -> String {
        match self {
            Audience::One(aud) => excerpt(aud),
            Audience::Many(auds) => excerpt(&auds.join(", ")),
        }
    }
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
}

/// `(kid, key)` of an Ed25519 signature key; `None` for keys of other types or uses.
fn ed25519_jwk(jwk: Jwk) -> Result<Option<(String, VerifyingKey)>, JwksError> {
    let ed25519 = jwk.kty == "OKP" && jwk.crv.as_deref() == Some("Ed25519");
    let for_eddsa = jwk.alg.as_deref().is_none_or(|alg| alg == "EdDSA");
    let for_signatures = jwk.usage.as_deref().is_none_or(|usage| usage == "sig");
    if !(ed25519 && for_eddsa && for_signatures) {
        return Ok(None);
    }
    let kid = jwk.kid.ok_or(JwksError::Invalid {
        reason: "an Ed25519 key has no `kid`".to_owned(),
    })?;
    let x = jwk.x.as_deref().and_then(|x| URL_SAFE_NO_PAD.decode(x).ok());
    let Some(bytes) = x.and_then(|x| <[u8; 32]>::try_from(x).ok()) else {
        return Err(JwksError::BadKey {
            kid,
            reason: "`x` is not 32 base64url bytes",
        });
    };
    let Ok(key) = VerifyingKey::from_bytes(&bytes) else {
        return Err(JwksError::BadKey {
            kid,
            reason: "`x` is not a point of the curve",
        });
    };
    if key.is_weak() {
        return Err(JwksError::BadKey {
            kid,
            reason: "it is a weak key",
        });
    }
    Ok(Some((kid, key)))
}

/// Why a JWKS document cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The document is not a JWKS.
    #[error("the key set is not a valid JWKS: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// One Ed25519 key is unusable.
    #[error("key `{kid}` of the key set is not a usable Ed25519 public key: {reason}")]
    BadKey {
        /// The key's id.
        kid: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The document holds no Ed25519 signature key.
    #[error("the key set holds no Ed25519 signature key")]
    NoKeys,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The token is implausibly long.
    #[error("token is {len} bytes long; at most {max} are accepted")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token is not a well-formed compact JWS.
    #[error("token is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The header names an algorithm other than EdDSA.
    #[error("token algorithm `{alg}` is not allowed; only EdDSA")]
    AlgorithmNotAllowed {
        /// The algorithm named.
        alg: String,
    },
    /// The header names no signing key.
    #[error("token header has no key id (`kid`)")]
    MissingKeyId,
    /// The header names a key this verifier does not trust.
    #[error("token signing key `{kid}` is not published by this Warden")]
    UnknownKey {
        /// The key id named.
        kid: String,
    },
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// The signed claims lack a required claim, have a wrong type, or name something that is not an
    /// agent id.
    #[error("token claims are invalid: {reason}")]
    InvalidClaims {
        /// What is wrong.
        reason: String,
    },
    /// The token was issued by someone else.
    #[error("token issuer `{found}` is not `{expected}`")]
    WrongIssuer {
        /// The token's `iss`.
        found: String,
        /// The expected issuer.
        expected: String,
    },
    /// The token is meant for someone else.
    #[error("token audience `{found}` is not `{expected}`")]
    WrongAudience {
        /// The token's `aud` (several joined by `, `).
        found: String,
        /// The expected audience.
        expected: String,
    },
    /// The token has expired.
    #[error("token expired at {}", UnixTime(*exp))]
    Expired {
        /// Its `exp`.
        exp: i64,
    },
    /// The token is not valid yet.
    #[error("token is not valid before {}", UnixTime(*nbf))]
    NotYetValid {
        /// Its `nbf`.
        nbf: i64,
    },
    /// The token claims to be issued in the future.
    #[error("token was issued in the future, at {}", UnixTime(*iat))]
    IssuedInFuture {
        /// Its `iat`.
        iat: i64,
    },
    /// `dlg_depth` does not count the actors of the `act` chain.
    #[error("token claim `dlg_depth` is {dlg_depth} but its `act` chain names {actors} actors")]
    DelegationDepth {
        /// The claimed depth.
        dlg_depth: u32,
        /// The actors in the chain.
        actors: usize,
    },
    /// An agent the token depends on may not act.
    #[error("{0}")]
    AgentRefused(AgentRefusal),
}

/// An agent whose state refuses a token: the acting agent, one of its ancestors, or a delegator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRefusal {
    /// The refused agent's id.
    pub agent: String,
    /// How it relates to the token's acting agent.
    pub relation: Relation,
    /// Why it is refused.
    pub refusal: Refusal,
}

/// How a refused agent relates to the token's acting agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// It is the acting agent.
    Itself,
    /// It is an ancestor (by id) of the acting agent, whose id is given.
    AncestorOf(String),
    /// It is in the delegation chain of the acting agent, whose id is given, but not an ancestor by id.
    DelegatorOf(String),
}

/// Why an agent refuses a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The agent is revoked.
    Revoked,
    /// The agent is suspended.
    Suspended,
    /// The token was issued at or before the agent's cutoff.
    IssuedBefore {
        /// The cutoff (unix seconds).
        not_before: i64,
        /// The token's `iat`.
        iat: i64,
    },
}

impl fmt::Display for AgentRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let agent = &self.agent;
        let relation = match &self.relation {
            Relation::Itself => String::new(),
            Relation::AncestorOf(acting) => format!(" (an ancestor of `{acting}`)"),
            Relation::DelegatorOf(acting) => format!(" (in the delegation chain of `{acting}`)"),
        };
        match self.refusal {
            Refusal::Revoked => write!(f, "agent `{agent}`{relation} is revoked"),
            Refusal::Suspended => write!(f, "agent `{agent}`{relation} is suspended"),
            Refusal::IssuedBefore { not_before, iat } => write!(
                f,
                "tokens of agent `{agent}`{relation} issued at or before {} are no longer accepted; \
                 this one was issued at {}",
                UnixTime(not_before),
                UnixTime(iat)
            ),
        }
    }
}

/// At most [`EXCERPT_CHARS`] characters of `value`, for an error message.
fn excerpt(value: &str) -> String {
    let mut excerpt: String = value.chars().take(EXCERPT_CHARS).collect();
    if excerpt.len() < value.len() {
        excerpt.push('…');
    }
    excerpt
}

/// A unix time shown as `2026-08-21T10:00:00Z (unix 1787306400)`.
struct UnixTime(i64);

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        // Years 1970 to 9999 only; anything else is shown as the bare number.
        if !(0..=253_402_300_799).contains(&t) {
            return write!(f, "unix {t}");
        }
        let (year, month, day) = civil_from_days(t / 86_400);
        let secs = t % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z (unix {t})",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01, for counts from 0 (Howard
/// Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
