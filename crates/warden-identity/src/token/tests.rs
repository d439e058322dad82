#![allow(clippy::unwrap_used, reason = "tests")]

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use warden_core::{AgentStatus, Name};

use super::*;
use crate::revocation::{NoRevocations, RevocationEntry, RevocationSet};

const NOW: i64 = 1_780_000_000;
const TTL: i64 = 900;
const ISS: &str = "https://warden.test";
const AUD: &str = "warden";
const ROOT: &str = "spiffe://warden.local/team/payments/agent/orch";

fn key_ring() -> (TempDir, KeyRing) {
    let tmp = tempfile::tempdir().unwrap();
    let ring = KeyRing::open_or_create(tmp.path(), NOW - 100).unwrap();
    (tmp, ring)
}

fn verifier(ring: &KeyRing) -> Verifier {
    Verifier::from_key_ring(ring, NOW, TTL, VerifierConfig::new(ISS, AUD))
}

fn root_claims() -> Claims {
    Claims {
        iss: ISS.to_owned(),
        sub: ROOT.to_owned(),
        aud: AUD.to_owned(),
        exp: NOW + 600,
        iat: NOW,
        nbf: NOW,
        jti: "jti-root".to_owned(),
        team: "payments".to_owned(),
        scope: "github-read ledger-read".to_owned(),
        act: None,
        dlg_depth: 0,
    }
}

/// A token delegated `depth` times from the root: `orch/sub1/sub2/...`.
fn delegated_claims(depth: usize) -> Claims {
    let mut claims = root_claims();
    let mut id = AgentId::parse(ROOT).unwrap();
    for hop in 1..=depth {
        id = id.child(&Name::parse(&format!("sub{hop}")).unwrap());
        claims = claims.delegated(&id, "ledger-read".to_owned(), format!("jti-{hop}"), NOW, 300);
    }
    claims
}

fn revoked(entries: &[(&str, AgentStatus, Option<i64>)]) -> RevocationSet {
    let mut set = RevocationSet::default();
    for (seq, (agent, state, not_before)) in (1..).zip(entries) {
        set.apply(RevocationEntry {
            seq,
            agent: (*agent).to_owned(),
            state: *state,
            not_before: *not_before,
            at: NOW - 1,
        });
    }
    set
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with any header and payload, correctly signed by `key`.
fn sign_raw(key: &SigningKey, header: &Value, payload: &Value) -> String {
    let signing_input = format!("{}.{}", b64(header.to_string()), b64(payload.to_string()));
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(signature.to_bytes()))
}

fn header(key: &SigningKey) -> Value {
    json!({ "alg": "EdDSA", "typ": "JWT", "kid": key.kid().as_str() })
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let inner = Sha256::new()
        .chain_update(block.map(|b| b ^ 0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(block.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[track_caller]
fn refused(verifier: &Verifier, token: &str, revocation: &dyn RevocationCheck) -> VerifyError {
    verifier.verify(token, NOW, revocation).unwrap_err()
}

#[test]
fn root_token_round_trip() {
    let (_tmp, ring) = key_ring();
    let claims = root_claims();
    let token = mint(ring.active(), &claims).unwrap();
    let verified = verifier(&ring).verify(&token, NOW, &NoRevocations).unwrap();
    assert_eq!(verified.claims(), &claims);
    assert_eq!(verified.claims().acting_agent(), ROOT);
    assert_eq!(verified.claims().chain(), [ROOT]);
    assert_eq!(
        verified.claims().scopes().collect::<Vec<_>>(),
        ["github-read", "ledger-read"]
    );
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(
        header,
        json!({ "alg": "EdDSA", "typ": "JWT", "kid": ring.active().kid().as_str() })
    );
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(payload["dlg_depth"], 0, "dlg_depth is always serialised");
    assert!(payload.get("act").is_none());
}

#[test]
fn delegated_token_round_trip() {
    let (_tmp, ring) = key_ring();
    let claims = delegated_claims(3);
    let sub1 = format!("{ROOT}/sub1");
    let sub2 = format!("{ROOT}/sub1/sub2");
    let sub3 = format!("{ROOT}/sub1/sub2/sub3");
    assert_eq!(claims.sub, ROOT);
    assert_eq!(claims.dlg_depth, 3);
    assert_eq!(claims.exp, NOW + 300, "a subagent's token never outlives its parent's");
    // RFC 8693 §4.1: the current actor outermost, earlier actors nested inside.
    let act = claims.act.as_ref().unwrap();
    assert_eq!(act.sub, sub3);
    assert_eq!(act.act.as_ref().unwrap().sub, sub2);
    assert_eq!(act.act.as_ref().unwrap().act.as_ref().unwrap().sub, sub1);
    assert!(act.act.as_ref().unwrap().act.as_ref().unwrap().act.is_none());

    let token = mint(ring.active(), &claims).unwrap();
    let verified = verifier(&ring)
        .verify(&token, NOW, &NoRevocations)
        .unwrap()
        .into_claims();
    assert_eq!(verified, claims);
    assert_eq!(verified.acting_agent(), sub3);
    assert_eq!(verified.chain(), [ROOT, &sub1, &sub2, &sub3]);
}

#[test]
fn a_delegated_token_never_outlives_its_parent() {
    let parent = root_claims();
    let child = parent.delegated(
        &AgentId::parse(&format!("{ROOT}/a")).unwrap(),
        String::new(),
        "j".into(),
        NOW,
        60,
    );
    assert_eq!(child.exp, NOW + 60);
    let child = parent.delegated(
        &AgentId::parse(&format!("{ROOT}/a")).unwrap(),
        String::new(),
        "j".into(),
        NOW,
        6000,
    );
    assert_eq!(child.exp, parent.exp);
}

#[test]
fn alg_none_is_refused() {
    let (_tmp, ring) = key_ring();
    let payload = b64(serde_json::to_vec(&root_claims()).unwrap());
    for alg in ["none", "None", "NONE"] {
        for header in [
            json!({ "alg": alg, "typ": "JWT" }),
            json!({ "alg": alg, "kid": ring.active().kid().as_str() }),
        ] {
            let token = format!("{}.{payload}.", b64(header.to_string()));
            let err = refused(&verifier(&ring), &token, &NoRevocations);
            assert_eq!(err, VerifyError::AlgorithmNotAllowed { alg: alg.to_owned() });
        }
    }
}

#[test]
fn hmac_is_correct() {
    // RFC 4231, test case 2.
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    let (_tmp, ring) = key_ring();
    let key = ring.active();
    let header = json!({ "alg": "HS256", "typ": "JWT", "kid": key.kid().as_str() });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string()),
        b64(serde_json::to_vec(&root_claims()).unwrap())
    );
    let mac = hmac_sha256(key.verifying_key().as_bytes(), signing_input.as_bytes());
    let token = format!("{signing_input}.{}", b64(mac));
    let err = refused(&verifier(&ring), &token, &NoRevocations);
    assert_eq!(err.to_string(), "token algorithm `HS256` is not allowed; only EdDSA");
}

#[test]
fn a_changed_payload_byte_is_refused() {
    let (_tmp, ring) = key_ring();
    let token = mint(ring.active(), &root_claims()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let tampered = payload.replace("\"team\":\"payments\"", "\"team\":\"paymentz\"");
    assert_ne!(tampered, payload);
    let token = format!("{}.{}.{}", parts[0], b64(tampered), parts[2]);
    let err = refused(&verifier(&ring), &token, &NoRevocations);
    assert_eq!(err, VerifyError::BadSignature);
    assert_eq!(err.to_string(), "token signature is invalid");
}

#[test]
fn wrong_audience_and_issuer_are_refused() {
    let (_tmp, ring) = key_ring();
    let claims = Claims {
        aud: "other-gateway".to_owned(),
        ..root_claims()
    };
    let err = refused(&verifier(&ring), &mint(ring.active(), &claims).unwrap(), &NoRevocations);
    assert_eq!(err.to_string(), "token audience `other-gateway` is not `warden`");

    let claims = Claims {
        iss: "https://evil.test".to_owned(),
        ..root_claims()
    };
    let err = refused(&verifier(&ring), &mint(ring.active(), &claims).unwrap(), &NoRevocations);
    assert_eq!(
        err.to_string(),
        "token issuer `https://evil.test` is not `https://warden.test`"
    );
}

#[test]
fn audience_may_be_an_array() {
    let (_tmp, ring) = key_ring();
    let key = ring.active();
    let mut payload = serde_json::to_value(root_claims()).unwrap();
    payload["aud"] = json!(["ledger", AUD]);
    let verified = verifier(&ring)
        .verify(&sign_raw(key, &header(key), &payload), NOW, &NoRevocations)
        .unwrap();
    assert_eq!(verified.claims().aud, AUD);

    payload["aud"] = json!(["ledger", "search"]);
    let err = refused(&verifier(&ring), &sign_raw(key, &header(key), &payload), &NoRevocations);
    assert_eq!(err.to_string(), "token audience `ledger, search` is not `warden`");
}

#[test]
fn expired_tokens_are_refused_after_the_leeway() {
    let (_tmp, ring) = key_ring();
    let claims = Claims {
        exp: NOW - 3,
        ..root_claims()
    };
    verifier(&ring)
        .verify(&mint(ring.active(), &claims).unwrap(), NOW, &NoRevocations)
        .unwrap();
    let claims = Claims {
        exp: NOW - 10,
        ..root_claims()
    };
    let err = refused(&verifier(&ring), &mint(ring.active(), &claims).unwrap(), &NoRevocations);
    assert_eq!(
        err.to_string(),
        "token expired at 2026-05-28T20:26:30Z (unix 1779999990)"
    );
}

#[test]
fn tokens_not_yet_valid_are_refused() {
    let (_tmp, ring) = key_ring();
    let claims = Claims {
        nbf: NOW + 60,
        ..root_claims()
    };
    let err = refused(&verifier(&ring), &mint(ring.active(), &claims).unwrap(), &NoRevocations);
    assert_eq!(err, VerifyError::NotYetValid { nbf: NOW + 60 });
    let claims = Claims {
        iat: NOW + 60,
        ..root_claims()
    };
    let err = refused(&verifier(&ring), &mint(ring.active(), &claims).unwrap(), &NoRevocations);
    assert_eq!(err, VerifyError::IssuedInFuture { iat: NOW + 60 });
    let claims = Claims {
        iat: NOW + 5,
        nbf: NOW + 5,
        ..root_claims()
    };
    verifier(&ring)
        .verify(&mint(ring.active(), &claims).unwrap(), NOW, &NoRevocations)
        .unwrap();
}

#[test]
fn a_token_signed_by_an_unknown_key_is_refused() {
    let (_tmp, ring) = key_ring();
    let (_other_tmp, other) = key_ring();
    let token = mint(other.active(), &root_claims()).unwrap();
    let err = refused(&verifier(&ring), &token, &NoRevocations);
    assert_eq!(
        err.to_string(),
        format!(
            "token signing key `{}` is not published by this Warden",
            other.active().kid()
        )
    );
}

#[test]
fn a_known_kid_with_a_different_key_is_refused() {
    let (_tmp, ring) = key_ring();
    let (_other_tmp, other) = key_ring();
    let token = mint(ring.active(), &root_claims()).unwrap();
    let confused = Verifier::new(
        [(ring.active().kid().to_string(), other.active().verifying_key())],
        VerifierConfig::new(ISS, AUD),
    );
    assert_eq!(refused(&confused, &token, &NoRevocations), VerifyError::BadSignature);
}

#[test]
fn a_token_without_kid_is_refused() {
    let (_tmp, ring) = key_ring();
    let key = ring.active();
    let token = sign_raw(
        key,
        &json!({ "alg": "EdDSA" }),
        &serde_json::to_value(root_claims()).unwrap(),
    );
    assert_eq!(
        refused(&verifier(&ring), &token, &NoRevocations),
        VerifyError::MissingKeyId
    );
}

#[test]
fn an_ancestor_derived_from_the_id_is_checked() {
    let (_tmp, ring) = key_ring();
    // The chain names only the root and the acting agent; `orch/a` is found from the acting agent's id.
    let claims = Claims {
        act: Some(Actor {
            sub: format!("{ROOT}/a/b"),
            act: None,
        }),
        dlg_depth: 1,
        ..root_claims()
    };
    let token = mint(ring.active(), &claims).unwrap();
    verifier(&ring).verify(&token, NOW, &NoRevocations).unwrap();
    let revocations = revoked(&[(&format!("{ROOT}/a"), AgentStatus::Revoked, None)]);
    let err = refused(&verifier(&ring), &token, &revocations);
    assert_eq!(
        err.to_string(),
        format!("agent `{ROOT}/a` (an ancestor of `{ROOT}/a/b`) is revoked")
    );
}

#[test]
fn a_revoked_middle_actor_stops_its_descendants() {
    let (_tmp, ring) = key_ring();
    let token = mint(ring.active(), &delegated_claims(3)).unwrap();
    let revocations = revoked(&[(&format!("{ROOT}/sub1"), AgentStatus::Revoked, None)]);
    let err = refused(&verifier(&ring), &token, &revocations);
    assert_eq!(
        err,
        VerifyError::AgentRefused(AgentRefusal {
            agent: format!("{ROOT}/sub1"),
            relation: Relation::AncestorOf(format!("{ROOT}/sub1/sub2/sub3")),
            refusal: Refusal::Revoked,
        })
    );
    // A sibling's revocation stops nobody else.
    let revocations = revoked(&[(&format!("{ROOT}/sub1/other"), AgentStatus::Revoked, None)]);
    verifier(&ring).verify(&token, NOW, &revocations).unwrap();
}

#[test]
fn a_delegator_that_is_not_an_ancestor_is_checked() {
    let (_tmp, ring) = key_ring();
    let stranger = "spiffe://warden.local/team/payments/agent/stranger";
    let claims = Claims {
        act: Some(Actor {
            sub: format!("{ROOT}/a"),
            act: Some(Box::new(Actor {
                sub: stranger.to_owned(),
                act: None,
            })),
        }),
        dlg_depth: 2,
        ..root_claims()
    };
    let token = mint(ring.active(), &claims).unwrap();
    let err = refused(
        &verifier(&ring),
        &token,
        &revoked(&[(stranger, AgentStatus::Suspended, None)]),
    );
    assert_eq!(
        err.to_string(),
        format!("agent `{stranger}` (in the delegation chain of `{ROOT}/a`) is suspended")
    );
}

#[test]
fn a_suspended_root_stops_its_own_and_delegated_tokens() {
    let (_tmp, ring) = key_ring();
    let revocations = revoked(&[(ROOT, AgentStatus::Suspended, None)]);
    let root_token = mint(ring.active(), &root_claims()).unwrap();
    let err = refused(&verifier(&ring), &root_token, &revocations);
    assert_eq!(err.to_string(), format!("agent `{ROOT}` is suspended"));
    let delegated_token = mint(ring.active(), &delegated_claims(1)).unwrap();
    let err = refused(&verifier(&ring), &delegated_token, &revocations);
    assert_eq!(
        err.to_string(),
        format!("agent `{ROOT}` (an ancestor of `{ROOT}/sub1`) is suspended")
    );
}

#[test]
fn tokens_issued_before_a_cutoff_are_refused() {
    let (_tmp, ring) = key_ring();
    let token = mint(ring.active(), &delegated_claims(1)).unwrap();
    let before = revoked(&[(ROOT, AgentStatus::Active, Some(NOW - 1))]);
    verifier(&ring).verify(&token, NOW, &before).unwrap();
    let at = revoked(&[(ROOT, AgentStatus::Active, Some(NOW))]);
    let err = refused(&verifier(&ring), &token, &at);
    assert_eq!(
        err.to_string(),
        format!(
            "tokens of agent `{ROOT}` (an ancestor of `{ROOT}/sub1`) issued at or before \
             2026-05-28T20:26:40Z (unix 1780000000) are no longer accepted; this one was issued at \
             2026-05-28T20:26:40Z (unix 1780000000)"
        )
    );
}

#[test]
fn delegation_depth_must_count_the_actors() {
    let (_tmp, ring) = key_ring();
    let claims = Claims {
        dlg_depth: 2,
        ..delegated_claims(1)
    };
    assert!(matches!(
        mint(ring.active(), &claims),
        Err(TokenError::DelegationDepth {
            dlg_depth: 2,
            actors: 1
        })
    ));
    let key = ring.active();
    let token = sign_raw(key, &header(key), &serde_json::to_value(&claims).unwrap());
    assert_eq!(
        refused(&verifier(&ring), &token, &NoRevocations),
        VerifyError::DelegationDepth {
            dlg_depth: 2,
            actors: 1
        }
    );
}

#[test]
fn a_subject_that_is_not_an_agent_id_is_refused() {
    let (_tmp, ring) = key_ring();
    let claims = Claims {
        sub: "alice".to_owned(),
        ..root_claims()
    };
    let err = refused(&verifier(&ring), &mint(ring.active(), &claims).unwrap(), &NoRevocations);
    assert!(matches!(err, VerifyError::InvalidClaims { .. }), "{err:?}");
}

#[test]
fn jwks_round_trip() {
    let (_tmp, ring) = key_ring();
    let token = mint(ring.active(), &delegated_claims(2)).unwrap();
    // As a standalone gateway sees it: text fetched from `/.well-known/jwks.json`.
    let text = ring.jwks(NOW, TTL).to_string();
    let jwks: Value = serde_json::from_str(&text).unwrap();
    let verifier = Verifier::from_jwks(&jwks, VerifierConfig::new(ISS, AUD)).unwrap();
    assert_eq!(
        verifier.verify(&token, NOW, &NoRevocations).unwrap().claims(),
        &delegated_claims(2)
    );
}

#[test]
fn jwks_skips_foreign_keys_and_refuses_bad_ones() {
    let (_tmp, ring) = key_ring();
    let config = VerifierConfig::new(ISS, AUD);
    let mut jwks = ring.jwks(NOW, TTL);
    let keys = jwks["keys"].as_array_mut().unwrap();
    keys.push(json!({ "kty": "RSA", "kid": "rsa-1", "n": "AQAB", "e": "AQAB" }));
    keys.push(json!({ "kty": "OKP", "crv": "X25519", "kid": "x-1", "x": "AAAA" }));
    Verifier::from_jwks(&jwks, config.clone()).unwrap();

    let bad = json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "kid": "k", "x": "AAAA" }] });
    let err = Verifier::from_jwks(&bad, config.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "key `k` of the key set is not a usable Ed25519 public key: `x` is not 32 base64url bytes"
    );
    // The identity point is a weak key: every signature would verify under some message.
    let weak = json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "kid": "w", "x": b64([1u8].iter().chain([0u8; 31].iter()).copied().collect::<Vec<u8>>()) }] });
    assert!(matches!(
        Verifier::from_jwks(&weak, config.clone()),
        Err(JwksError::BadKey {
            reason: "it is a weak key",
            ..
        })
    ));
    assert_eq!(
        Verifier::from_jwks(&json!({ "keys": [] }), config.clone()).unwrap_err(),
        JwksError::NoKeys
    );
    assert!(matches!(
        Verifier::from_jwks(&json!({ "nope": 1 }), config),
        Err(JwksError::Invalid { .. })
    ));
}

#[test]
fn tokens_of_the_previous_key_verify_until_it_is_unpublished() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ring = KeyRing::open_or_create(tmp.path(), NOW - 100).unwrap();
    let old_kid = ring.active().kid().clone();
    let old_token = mint(ring.active(), &root_claims()).unwrap();
    let new_kid = ring.rotate(NOW).unwrap();
    assert_ne!(new_kid, old_kid);
    assert_eq!(ring.active().kid(), &new_kid);
    let new_token = mint(ring.active(), &root_claims()).unwrap();

    let verifier = Verifier::from_key_ring(&ring, NOW + 100, TTL, VerifierConfig::new(ISS, AUD));
    verifier.verify(&old_token, NOW + 100, &NoRevocations).unwrap();
    verifier.verify(&new_token, NOW + 100, &NoRevocations).unwrap();

    let later = NOW + TTL + 60;
    let verifier = Verifier::from_key_ring(&ring, later, TTL, VerifierConfig::new(ISS, AUD));
    let err = verifier.verify(&old_token, later, &NoRevocations).unwrap_err();
    assert_eq!(
        err,
        VerifyError::UnknownKey {
            kid: old_kid.to_string()
        }
    );
}

#[test]
fn malformed_tokens_are_refused_without_panicking() {
    let (_tmp, ring) = key_ring();
    let verifier = verifier(&ring);
    let token = mint(ring.active(), &delegated_claims(3)).unwrap();
    let check = |input: &str| {
        assert!(
            verifier.verify(input, NOW, &NoRevocations).is_err(),
            "accepted {input:?}"
        );
    };
    for input in ["", ".", "..", "...", "a.b.c", "a.b.c.d", "é.é.é", "\0.\0.\0", "=.=.="] {
        check(input);
    }
    // Every truncation and every single-character change of a valid token.
    for (i, _) in token.char_indices() {
        check(&token[..i]);
        for replacement in ['A', '_', '.', '=', '+', 'é'] {
            let mut changed = token.clone();
            changed.replace_range(i..=i, &replacement.to_string());
            if changed != token {
                check(&changed);
            }
        }
    }
    check(&format!("{token}."));
    check(&format!("{token}A"));
    check(&format!("{token}{token}"));
    // Huge inputs.
    check(&"a".repeat(10 << 20));
    check(&format!("{token}{}", "A".repeat(1 << 20)));
    check(&".".repeat(100_000));
    // Pseudo-random garbage, with and without a valid header.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet: Vec<char> = "AZaz09-_.=+/é\u{0} {}\"".chars().collect();
    let prefix = token.split('.').next().unwrap().to_owned();
    for round in 0..2_000 {
        let len = (next() % 300) as usize;
        let garbage: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        check(&garbage);
        if round % 2 == 0 {
            check(&format!("{prefix}.{garbage}"));
        }
    }
}

#[test]
fn signed_but_hostile_payloads_are_refused() {
    let (_tmp, ring) = key_ring();
    let key = ring.active();
    let verifier = verifier(&ring);
    // Deeply nested actors hit the JSON parser's recursion limit, not the stack.
    let mut act = json!({ "sub": "a" });
    for _ in 0..200 {
        act = json!({ "sub": "a", "act": act });
    }
    let mut payload = serde_json::to_value(root_claims()).unwrap();
    payload["act"] = act;
    let err = verifier
        .verify(&sign_raw(key, &header(key), &payload), NOW, &NoRevocations)
        .unwrap_err();
    assert!(matches!(err, VerifyError::InvalidClaims { .. }), "{err:?}");
    // Wrong types, missing claims, non-JSON payloads and a header with `crit`.
    for payload in [json!({}), json!([]), json!("x"), json!({ "exp": "soon" })] {
        let err = verifier
            .verify(&sign_raw(key, &header(key), &payload), NOW, &NoRevocations)
            .unwrap_err();
        assert!(matches!(err, VerifyError::InvalidClaims { .. }), "{err:?}");
    }
    let claims = serde_json::to_value(root_claims()).unwrap();
    let mut crit = header(key);
    crit["crit"] = json!(["exp"]);
    assert!(matches!(
        verifier.verify(&sign_raw(key, &crit, &claims), NOW, &NoRevocations),
        Err(VerifyError::Malformed { .. })
    ));
    let mut typ = header(key);
    typ["typ"] = json!("secevent+jwt");
    assert!(matches!(
        verifier.verify(&sign_raw(key, &typ, &claims), NOW, &NoRevocations),
        Err(VerifyError::Malformed { .. })
    ));
    // Exposes `exp: i64::MAX` and `iat: i64::MIN` to the arithmetic.
    let mut extreme = claims.clone();
    extreme["exp"] = json!(i64::MAX);
    extreme["iat"] = json!(i64::MIN);
    extreme["nbf"] = json!(i64::MIN);
    verifier
        .verify(&sign_raw(key, &header(key), &extreme), NOW, &NoRevocations)
        .unwrap();
    verifier
        .verify(&sign_raw(key, &header(key), &extreme), i64::MAX, &NoRevocations)
        .unwrap();
    let mut extreme = claims;
    extreme["exp"] = json!(i64::MIN);
    let err = verifier
        .verify(&sign_raw(key, &header(key), &extreme), NOW, &NoRevocations)
        .unwrap_err();
    assert_eq!(err.to_string(), format!("token expired at unix {}", i64::MIN));
}

#[test]
fn unix_times_are_shown_as_dates() {
    assert_eq!(UnixTime(0).to_string(), "1970-01-01T00:00:00Z (unix 0)");
    assert_eq!(
        UnixTime(951_782_400).to_string(),
        "2000-02-29T00:00:00Z (unix 951782400)"
    );
    assert_eq!(
        UnixTime(1_700_000_000).to_string(),
        "2023-11-14T22:13:20Z (unix 1700000000)"
    );
    assert_eq!(
        UnixTime(253_402_300_799).to_string(),
        "9999-12-31T23:59:59Z (unix 253402300799)"
    );
    assert_eq!(UnixTime(-1).to_string(), "unix -1");
    assert_eq!(UnixTime(i64::MAX).to_string(), format!("unix {}", i64::MAX));
}

#[test]
fn signatures_are_checked_strictly() {
    // With the identity point as public key, R = identity and S = 0 satisfy the plain Ed25519
    // equation for every message; only strict verification refuses them.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = VerifyingKey::from_bytes(&identity).unwrap();
    let verifier = Verifier::new([("weak".to_owned(), weak)], VerifierConfig::new(ISS, AUD));
    let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": "weak" });
    let mut signature = [0u8; 64];
    signature[0] = 1;
    let token = format!(
        "{}.{}.{}",
        b64(header.to_string()),
        b64(serde_json::to_vec(&root_claims()).unwrap()),
        b64(signature)
    );
    assert_eq!(refused(&verifier, &token, &NoRevocations), VerifyError::BadSignature);
}

#[test]
fn a_remembered_token_is_still_checked_for_time_and_revocation() {
    let (_tmp, ring) = key_ring();
    let verifier = verifier(&ring);
    let token = mint(ring.active(), &root_claims()).unwrap();
    verifier.verify(&token, NOW, &NoRevocations).unwrap();
    // Its signature is remembered now; everything else is checked again on each use.
    verifier.verify(&token, NOW + 1, &NoRevocations).unwrap();
    let err = refused(&verifier, &token, &revoked(&[(ROOT, AgentStatus::Suspended, None)]));
    assert_eq!(err.to_string(), format!("agent `{ROOT}` is suspended"));
    let late = verifier.verify(&token, NOW + 600 + 3_600, &NoRevocations).unwrap_err();
    assert!(matches!(late, VerifyError::Expired { .. }), "{late:?}");
}

#[test]
fn a_tampered_copy_of_a_remembered_token_is_refused() {
    let (_tmp, ring) = key_ring();
    let verifier = verifier(&ring);
    let token = mint(ring.active(), &root_claims()).unwrap();
    verifier.verify(&token, NOW, &NoRevocations).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(payload.replace("payments", "paymentz")),
        parts[2]
    );
    assert_eq!(refused(&verifier, &tampered, &NoRevocations), VerifyError::BadSignature);
}

#[test]
fn a_verifier_for_other_keys_remembers_nothing() {
    let (_tmp, ring) = key_ring();
    let token = mint(ring.active(), &root_claims()).unwrap();
    verifier(&ring).verify(&token, NOW, &NoRevocations).unwrap();
    let (_other_tmp, other) = key_ring();
    let err = refused(&verifier(&other), &token, &NoRevocations);
    assert!(matches!(err, VerifyError::UnknownKey { .. }), "{err:?}");
}
