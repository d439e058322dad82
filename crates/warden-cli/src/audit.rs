//! `warden audit verify`, `warden audit export` and `warden audit verify-pack`: the audit lake's
//! integrity, checked through the server or offline, and evidence packs written and checked.
//!
//! Offline verification (`verify --lake DIR`) refuses a lake that a running `warden serve` has open:
//! it takes the lake's own lock (the `LOCK` file the server holds) for the length of the check, so
//! nothing changes under it and no server opens the lake meanwhile. Against a running server, use the
//! server form, which checks the open lake consistently.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cli::{AuditExportArgs, AuditVerifyArgs, AuditVerifyPackArgs};
use crate::client::Client;
use crate::output;

/// `warden audit verify`: through the server, or offline with `--lake`.
pub(crate) fn verify(client: &Client, json: bool, args: &AuditVerifyArgs) -> anyhow::Result<()> {
    let (ok, problems, first) = match &args.lake {
        Some(dir) => {
            let report = verify_offline(dir, args.key.as_deref())?;
            if json {
                output::json(&report_json(&report));
            } else {
                print!("{report}");
            }
            (
                report.is_ok(),
                report.problems.len(),
                report.problems.first().map(ToString::to_string),
            )
        }
        None => {
            // A whole-lake check can take a while on a big lake.
            let res = client.post("/v1/audit/verify", &json!({}))?;
            if json {
                output::json(&res);
            } else {
                print!("{}", res["text"].as_str().unwrap_or_default());
            }
            let problems = res["problems"].as_array().map_or(0, Vec::len);
            let first = res["problems"][0]["text"].as_str().map(str::to_owned);
            (res["ok"].as_bool() == Some(true), problems, first)
        }
    };
    if ok {
        return Ok(());
    }
    bail!(
        "the audit lake failed verification: {problems} problem{} (first: {})",
        if problems == 1 { "" } else { "s" },
        first.unwrap_or_default()
    )
}

/// Verifies a lake directory no server has open, holding its lock meanwhile.
fn verify_offline(dir: &Path, key: Option<&str>) -> anyhow::Result<warden_lake::Report> {
    if !dir.join("lake.json").is_file() {
        bail!(
            "`{}` is not an audit lake (it has no lake.json); `warden serve` keeps it at DATA/lake",
            dir.display()
        );
    }
    let lock_path = dir.join("LOCK");
    let lock = OpenOptions::new()
        .read(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open `{}`", lock_path.display()))?;
    match lock.try_lock_shared() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "the audit lake `{}` is open in a running `warden serve`; verify it through the server \
             (`warden audit verify` without --lake) or stop the server first",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            bail!("cannot lock `{}`: {e}", lock_path.display())
        }
    }
    let report = match key {
        Some(key) => warden_lake::verify_with_key(dir, key),
        None => warden_lake::verify(dir),
    }
    .with_context(|| format!("cannot verify the audit lake `{}`", dir.display()))?;
    drop(lock);
    Ok(report)
}

fn report_json(report: &warden_lake::Report) -> Value {
    json!({
        "ok": report.is_ok(),
        "events": report.events,
        "sealed_files": report.sealed_files,
        "wal_events": report.wal_events,
        "checkpoints": report.checkpoints,
        "tree_size": report.tree_size,
        "root": warden_lake::merkle::to_hex(&report.root),
        "problems": report.problems.iter().map(|p| json!({
            "kind": p.kind.to_string(),
            "file": p.file,
            "seq": p.seq,
            "column": p.column,
            "detail": p.detail,
            "text": p.to_string(),
        })).collect::<Vec<_>>(),
        "notes": report.notes,
        "text": report.to_string(),
    })
}

/// A time on the command line: RFC 3339, or a UTC date (`end` = the end of that day).
pub(crate) fn parse_time(text: &str, end: bool) -> anyhow::Result<i64> {
    let ms = |t: OffsetDateTime| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(ms(t));
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = time::Date::parse(text, &format) {
        let day = if end { date.next_day().unwrap_or(date) } else { date };
        return Ok(ms(day.midnight().assume_utc()));
    }
    bail!("`{text}` is not a time: use RFC 3339 (2026-11-25T10:00:00Z) or a date (2026-11-25)")
}

/// `warden audit export`: the server builds the pack; it is written to `--out` atomically, 0600.
pub(crate) fn export(server: &str, token: Option<&str>, json: bool, args: &AuditExportArgs) -> anyhow::Result<()> {
    let from_ms = parse_time(&args.from, false).context("--from")?;
    let to_ms = parse_time(&args.to, true).context("--to")?;
    if from_ms >= to_ms {
        bail!("--from ({}) must be before --to ({})", args.from, args.to);
    }
    let token = token
        .filter(|t| !t.is_empty())
        .context("no access token: pass --token or set WARDEN_TOKEN")?;
    let url = format!("{}/v1/audit/export", server.trim_end_matches('/'));
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .build(),
    );
    let body = json!({"from_ms": from_ms, "to_ms": to_ms, "team": args.team, "since_size": args.since_size});
    let progress = std::io::stderr().is_terminal() || std::env::var_os("WARDEN_PROGRESS").is_some();
    if progress {
        eprintln!("building the evidence pack on the server…");
    }
    let mut res = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(&body)
        .map_err(|e| anyhow::anyhow!("cannot reach warden at {server}: {e}; is `warden serve` running?"))?;
    let status = res.status().as_u16();
    if !(200..300).contains(&status) {
        let text = res.body_mut().read_to_string().unwrap_or_default();
        let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
        return Err(crate::client::ClientError::Api {
            status,
            code: value["error"]["code"].as_str().unwrap_or("unknown").to_owned(),
            message: value["error"]["message"]
                .as_str()
                .map_or_else(|| format!("{url} answered HTTP {status}"), str::to_owned),
        }
        .into());
    }
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let total = header("content-length");
    let events = header("x-warden-pack-events");
    let first_seq = header("x-warden-pack-first-seq");
    let end_seq = header("x-warden-pack-end-seq");
    let tree_size = header("x-warden-pack-tree-size");
    let mut reader = res.body_mut().with_config().limit(u64::MAX).reader();
    let written = write_atomically(&args.out, &mut reader, total, progress)?;
    let summary = json!({
        "out": args.out,
        "bytes": written,
        "events": events,
        "first_seq": first_seq,
        "end_seq": end_seq,
        "tree_size": tree_size,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "team": args.team,
    });
    if json {
        output::json(&summary);
    } else {
        println!(
            "wrote {} ({written} bytes): {} events, seq {}..{}, checkpoint of size {}; check it with `warden audit verify-pack {}`",
            args.out.display(),
            events.unwrap_or(0),
            first_seq.unwrap_or(0),
            end_seq.unwrap_or(0),
            tree_size.unwrap_or(0),
            args.out.display()
        );
    }
    Ok(())
}

/// Copies `reader` to `out` through `out.<pid>.tmp` (0600, synced), then renames it into place.
fn write_atomically(out: &Path, reader: &mut dyn Read, total: Option<u64>, progress: bool) -> anyhow::Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp_name = out.as_os_str().to_owned();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let result = (|| -> anyhow::Result<u64> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create `{}`", tmp.display()))?;
        let written = copy_with_progress(reader, &mut file, total, progress)?;
        if let Some(total) = total
            && written != total
        {
            bail!("the server sent {written} of {total} bytes; the pack is incomplete");
        }
        file.sync_all()
            .with_context(|| format!("cannot sync `{}`", tmp.display()))?;
        std::fs::rename(&tmp, out).with_context(|| format!("cannot rename to `{}`", out.display()))?;
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(dir) = File::open(parent)
        {
            let _ = dir.sync_all();
        }
        Ok(written)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn copy_with_progress(
    reader: &mut dyn Read,
    out: &mut File,
    total: Option<u64>,
    progress: bool,
) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    let mut last = Instant::now();
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => bail!("receiving the pack failed after {written} bytes: {e}"),
        };
        out.write_all(&buf[..n]).context("cannot write the pack")?;
        written += n as u64;
        if progress && last.elapsed() >= Duration::from_millis(500) {
            last = Instant::now();
            match total {
                Some(total) => eprintln!("received {written} of {total} bytes"),
                None => eprintln!("received {written} bytes"),
            }
        }
    }
    if progress {
        eprintln!("received {written} bytes");
    }
    Ok(written)
}

/// `warden audit verify-pack`: offline, no server.
pub(crate) fn verify_pack(json: bool, args: &AuditVerifyPackArgs) -> anyhow::Result<()> {
    let report = warden_lake::verify_pack_with_key(&args.file, args.key.as_deref())
        .map_err(|e| anyhow::anyhow!("the evidence pack `{}` does not verify: {e}", args.file.display()))?;
    let when = |ms: i64| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| format!("{ms} ms"))
    };
    if json {
        output::json(&json!({
            "ok": true,
            "origin": report.origin,
            "key_id": report.key_id,
            "tree_size": report.tree_size,
            "root": warden_lake::merkle::to_hex(&report.root),
            "from": when(report.from_ms),
            "to": when(report.to_ms),
            "team": report.team,
            "first_seq": report.first_seq,
            "end_seq": report.end_seq,
            "events": report.events,
            "redacted": report.redacted,
            "consistent_with": report.consistent_with.map(|(size, root)| json!({"size": size, "root": warden_lake::merkle::to_hex(&root)})),
            "notes": report.notes,
        }));
        return Ok(());
    }
    print!("{report}");
    println!(
        "  events: {} in full, {} of other teams as hashes",
        report.events, report.redacted
    );
    println!("  range: seq {}..{}", report.first_seq, report.end_seq);
    println!(
        "  window: {} .. {}{}",
        when(report.from_ms),
        when(report.to_ms),
        report
            .team
            .as_deref()
            .map(|t| format!(" (team {t})"))
            .unwrap_or_default()
    );
    println!(
        "  checkpoint: size {}, root {}",
        report.tree_size,
        warden_lake::merkle::to_hex(&report.root)
    );
    println!("  key id: {} (log `{}`)", report.key_id, report.origin);
    Ok(())
}
