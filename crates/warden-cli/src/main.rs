//! The `warden` binary: `warden serve` runs the control plane, `warden gateway` a standalone MCP
//! gateway; every other command is a thin client of the HTTP API.
//!
//! Exit status: 0 success; 1 error (one line on stderr beginning `error: `); 2 usage error; 3 denied
//! (a policy or a permission said no).

mod agent_auth;
mod audit;
mod cli;
mod client;
mod commands;
mod hook;
mod init;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than the system allocator: the audit lake allocates an event's strings on one
/// thread and frees them on another, at tens of thousands of events a second, and glibc's malloc
/// spent a fifth of the ingest benchmark's CPU doing that and re-faulting pages it had returned.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process. mimalloc asks the kernel for them
/// (`madvise(MADV_HUGEPAGE)`) on its segments, and the first touch of each 2 MiB page zeroes all of
/// it in one page fault. A server's heap grows steadily (the audit lake holds its unsealed events in
/// memory), so every few hundred milliseconds one request thread, or the lake's writer in the middle
/// of a commit, stalled for ~5 ms on a virtual machine: that was most of the gateway's added p99
/// (BENCHMARKS.md, "Transparent huge pages"). With 4 KiB pages the same memory is faulted in small
/// steps. Failing to turn them off is harmless, so an error is ignored.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

fn main() -> ExitCode {
    no_transparent_huge_pages();
    // The hook runs once per tool call: answer it without building the whole command line.
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "hook")
        && args.next().is_some_and(|a| a == "claude-code")
        && args.next().is_none()
    {
        return hook::claude_code();
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    if matches!(cli.command, cli::Command::Hook(cli::HookCommand::ClaudeCode)) {
        return hook::claude_code();
    }
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&format!("{err:#}")));
            let denied = err
                .downcast_ref::<client::ClientError>()
                .is_some_and(client::ClientError::is_denied);
            ExitCode::from(if denied { 3 } else { 1 })
        }
    }
}

fn one_line(message: &str) -> String {
    message
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
