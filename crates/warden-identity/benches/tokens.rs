//! Token throughput on one thread: minting, and verifying including the revocation check against a
//! revocation set of 10,000 entries, for a root token and a depth-3 delegated token. Verification is
//! measured twice: a token's first use (every iteration a different token, so the signature is
//! checked) and a token used again (the verifier remembers tokens whose signature passed and checks
//! only claims, times and revocation).
//!
//! Run with `cargo bench -p warden-identity --bench tokens`. Targets: verify ≥ 10,000/s, mint ≥ 5,000/s.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use warden_core::{AgentId, AgentStatus, Name};
use warden_identity::keys::KeyRing;
use warden_identity::revocation::{RevocationEntry, RevocationSet};
use warden_identity::token::{Claims, Verifier, VerifierConfig, mint};

const ITERATIONS: usize = 20_000;
const WARMUP: usize = 1_000;
const REVOCATIONS: u64 = 10_000;
const NOW: i64 = 1_780_000_000;
const ISS: &str = "https://warden.bench";
const AUD: &str = "warden";
const ROOT: &str = "spiffe://warden.local/team/payments/agent/orchestrator";

struct Stats {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let ring = KeyRing::open_or_create(dir.path(), NOW)?;
    let verifier = Verifier::from_key_ring(&ring, NOW, 900, VerifierConfig::new(ISS, AUD));
    let revocations = revocation_set()?;
    let root = root_claims();
    let depth3 = delegate(&root, 3)?;
    let root_token = mint(ring.active(), &root)?;
    let depth3_token = mint(ring.active(), &depth3)?;
    let distinct = |claims: &Claims| -> Result<Vec<String>, Box<dyn Error>> {
        (0..WARMUP + ITERATIONS)
            .map(|i| {
                let mut claims = claims.clone();
                claims.jti = format!("{}-{i}", claims.jti);
                Ok(mint(ring.active(), &claims)?)
            })
            .collect()
    };
    let (fresh_root, fresh_depth3) = (distinct(&root)?, distinct(&depth3)?);
    let next = |tokens: &[String], i: &mut usize| -> String {
        *i += 1;
        tokens[*i - 1].clone()
    };
    let (mut i, mut j) = (0, 0);

    let rows = [
        (
            "mint, root",
            root_token.len(),
            measure(|| ok(mint(ring.active(), black_box(&root))))?,
        ),
        (
            "mint, depth 3",
            depth3_token.len(),
            measure(|| ok(mint(ring.active(), black_box(&depth3))))?,
        ),
        (
            "verify, root",
            root_token.len(),
            measure(|| {
                let token = next(&fresh_root, &mut i);
                ok(verifier.verify(black_box(&token), NOW, &revocations))
            })?,
        ),
        (
            "verify, depth 3",
            depth3_token.len(),
            measure(|| {
                let token = next(&fresh_depth3, &mut j);
                ok(verifier.verify(black_box(&token), NOW, &revocations))
            })?,
        ),
        (
            "again, root",
            root_token.len(),
            measure(|| ok(verifier.verify(black_box(&root_token), NOW, &revocations)))?,
        ),
        (
            "again, depth 3",
            depth3_token.len(),
            measure(|| ok(verifier.verify(black_box(&depth3_token), NOW, &revocations)))?,
        ),
    ];

    println!(
        "{ITERATIONS} iterations per row after {WARMUP} warm-up, one thread; verify checks a revocation set of {} entries",
        revocations.len()
    );
    println!(
        "{:<16} {:>8} {:>12} {:>9} {:>9}",
        "operation", "bytes", "tokens/s", "p50 µs", "p99 µs"
    );
    for (name, bytes, stats) in rows {
        println!(
            "{name:<16} {bytes:>8} {:>12.0} {:>9.1} {:>9.1}",
            stats.per_sec,
            micros(stats.p50),
            micros(stats.p99)
        );
    }
    Ok(())
}

/// Runs `op` [`WARMUP`] + [`ITERATIONS`] times, timing each run; stops at the first failure.
fn measure(mut op: impl FnMut() -> Result<(), String>) -> Result<Stats, String> {
    for _ in 0..WARMUP {
        op()?;
    }
    let mut times = Vec::with_capacity(ITERATIONS);
    let started = Instant::now();
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        op()?;
        times.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    times.sort_unstable();
    let percentile = |p: usize| times.get(ITERATIONS * p / 100).copied().unwrap_or_default();
    Ok(Stats {
        per_sec: ITERATIONS as f64 / elapsed.as_secs_f64(),
        p50: percentile(50),
        p99: percentile(99),
    })
}

fn ok<T, E: Error>(result: Result<T, E>) -> Result<(), String> {
    black_box(result).map(|_| ()).map_err(|e| e.to_string())
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn root_claims() -> Claims {
    Claims {
        iss: ISS.to_owned(),
        sub: ROOT.to_owned(),
        aud: AUD.to_owned(),
        exp: NOW + 900,
        iat: NOW,
        nbf: NOW,
        jti: "0f8e2a9c4b7d1e3f5a6b7c8d9e0f1a2b".to_owned(),
        team: "payments".to_owned(),
        scope: "github-read ledger-read ledger-write".to_owned(),
        act: None,
        dlg_depth: 0,
    }
}

fn delegate(root: &Claims, depth: usize) -> Result<Claims, Box<dyn Error>> {
    let mut claims = root.clone();
    let mut id = AgentId::parse(ROOT)?;
    for hop in 1..=depth {
        id = id.child(&Name::parse(&format!("researcher-{hop}"))?);
        claims = claims.delegated(&id, "ledger-read".to_owned(), format!("jti-{hop}"), NOW, 300);
    }
    Ok(claims)
}

/// 10,000 entries: other agents revoked, suspended or cut off, and cutoffs in the past for the
/// agents of the benchmarked tokens, so their lookups hit the set.
fn revocation_set() -> Result<RevocationSet, Box<dyn Error>> {
    let mut set = RevocationSet::default();
    let mut ours = vec![AgentId::parse(ROOT)?];
    for hop in 1..=3 {
        let parent = ours.last().cloned().ok_or("no parent")?;
        ours.push(parent.child(&Name::parse(&format!("researcher-{hop}"))?));
    }
    let others = REVOCATIONS - ours.len() as u64;
    for seq in 1..=others {
        let (state, not_before) = match seq % 3 {
            0 => (AgentStatus::Revoked, None),
            1 => (AgentStatus::Suspended, None),
            _ => (AgentStatus::Active, Some(NOW - 60)),
        };
        let agent = format!("spiffe://warden.local/team/team-{}/agent/agent-{seq}", seq % 50);
        set.apply(RevocationEntry {
            seq,
            agent,
            state,
            not_before,
            at: NOW - 60,
        });
    }
    for (seq, id) in (others + 1..).zip(ours) {
        let entry = RevocationEntry {
            seq,
            agent: id.to_string(),
            state: AgentStatus::Active,
            not_before: Some(NOW - 3600),
            at: NOW - 3600,
        };
        set.apply(entry);
    }
    Ok(set)
}
