//! Connecting to something that is not there, or not usable, fails at once with a precise error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use warden_core::Transport;
use warden_mcp::{Upstream, UpstreamCredentials, UpstreamError};

use crate::support::{config, free_port, name};

async fn connect(transport: Transport, credentials: UpstreamCredentials) -> UpstreamError {
    let started = Instant::now();
    let err = Upstream::connect(&name("broken"), &transport, credentials, config())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    err
}

/// The error and its causes, as the edge prints them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn refuses_unusable_upstreams() {
    let err = connect(
        Transport::Stdio {
            command: "/nonexistent/mcp-server".to_owned(),
            args: vec![],
        },
        UpstreamCredentials::default(),
    )
    .await;
    assert!(matches!(err, UpstreamError::Spawn { .. }), "{err:?}");
    assert_eq!(
        chain(&err),
        "cannot start upstream `broken` with command `/nonexistent/mcp-server`: No such file or directory (os error 2)"
    );

    // A program that is no MCP server: it exits at once.
    let err = connect(
        Transport::Stdio {
            command: "true".to_owned(),
            args: vec![],
        },
        UpstreamCredentials::default(),
    )
    .await;
    assert_eq!(
        err.to_string(),
        "upstream `broken` exited while `initialize` was in flight"
    );

    let port = free_port();
    let err = connect(
        Transport::Http {
            url: format!("http://127.0.0.1:{port}/mcp"),
        },
        UpstreamCredentials::default(),
    )
    .await;
    assert!(matches!(err, UpstreamError::Connect { .. }), "{err:?}");
    assert!(
        chain(&err).starts_with(&format!(
            "cannot reach upstream `broken` at `http://127.0.0.1:{port}/mcp`: "
        )),
        "{}",
        chain(&err)
    );

    let err = connect(
        Transport::Http {
            url: "https://example.invalid/mcp".to_owned(),
        },
        UpstreamCredentials::default(),
    )
    .await;
    assert_eq!(
        err.to_string(),
        "upstream `broken` cannot be reached this way: url `https://example.invalid/mcp`: https is not supported yet"
    );

    let err = connect(
        Transport::Http {
            url: "ftp://x/mcp".to_owned(),
        },
        UpstreamCredentials::default(),
    )
    .await;
    assert!(matches!(err, UpstreamError::Transport { .. }), "{err:?}");

    let credentials = UpstreamCredentials {
        headers: BTreeMap::from([("Bad Header".to_owned(), "secret-value".to_owned())]),
        env: BTreeMap::new(),
    };
    let err = connect(
        Transport::Http {
            url: format!("http://127.0.0.1:{port}/mcp"),
        },
        credentials,
    )
    .await;
    assert_eq!(
        err.to_string(),
        "credential header `Bad Header` for upstream `broken` is not a valid http header"
    );
    assert!(!format!("{err:?}").contains("secret-value"));
}
