//! The standalone gateway's HTTP client for the control plane: JSON over plain HTTP, the gateway's
//! access token on every authenticated request, a timeout on every exchange, and bounded bodies.
//!
//! It never logs or returns the token, and turns every failure into a [`ClientError`] that says
//! whether the control plane was unreachable or answered with a refusal.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The largest response body read (a snapshot of a big fleet is a few MiB).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an exchange with the control plane failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClientError {
    /// No answer: connection refused or reset, timeout, or a server error (5xx).
    #[error("{0}")]
    Unreachable(String),
    /// The control plane answered with a refusal (4xx).
    #[error("the control plane refused `{path}` with {status}: {message}")]
    Refused {
        /// The request path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The API's error message.
        message: String,
    },
    /// The answer is not what the API documents.
    #[error("the control plane's answer to `{path}` is not valid: {reason}")]
    Invalid {
        /// The request path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// A client for one control plane.
pub(crate) struct ControlClient {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `http://host[:port][/prefix]`, no trailing slash.
    base: String,
    authorization: HeaderValue,
}

impl ControlClient {
    /// A client for the control plane at `base` (an `http://` URL), authenticating with `token`.
    pub(crate) fn new(base: &str, token: &str) -> Result<ControlClient, String> {
        let base = base.trim().trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|err| format!("control plane url `{base}` is invalid: {err}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "control plane url `{base}`: https is not supported yet; reach the control plane over http \
                     (a loopback address or a TLS-terminating sidecar)"
                ));
            }
            _ => return Err(format!("control plane url `{base}` must start with http://")),
        }
        if uri.host().is_none_or(str::is_empty) || uri.query().is_some() {
            return Err(format!("control plane url `{base}` must be `http://host[:port]`"));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err("the gateway's access token is empty".to_owned());
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the gateway's access token contains characters not allowed in a header".to_owned())?;
        authorization.set_sensitive(true);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(ControlClient {
            client,
            base,
            authorization,
        })
    }

    /// The control plane's base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`, with the token when `authenticated`, within `timeout`.
    pub(crate) async fn get(&self, path: &str, authenticated: bool, timeout: Duration) -> Result<Value, ClientError> {
        self.exchange(Method::GET, path, None, authenticated, timeout).await
    }

    /// `POST path` with a JSON `body`, with the token, within `timeout`.
    pub(crate) async fn post(&self, path: &str, body: Bytes, timeout: Duration) -> Result<Value, ClientError> {
        self.exchange(Method::POST, path, Some(body), true, timeout).await
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        authenticated: bool,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut builder = Request::builder()
            .method(method)
            .uri(&url)
            .header(ACCEPT, "application/json");
        if authenticated {
            builder = builder.header(AUTHORIZATION, self.authorization.clone());
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|err| ClientError::Unreachable(format!("cannot build a request for {url}: {err}")))?;
        let unreachable =
            |reason: String| ClientError::Unreachable(format!("cannot reach the control plane at {url}: {reason}"));
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| unreachable(describe(&err)))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|err| unreachable(format!("reading the answer failed: {err}")))?
                .to_bytes();
            Ok::<_, ClientError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {}s", timeout.as_secs_f32())))??;
        if status.is_server_error() {
            return Err(unreachable(format!("it answered {status}: {}", api_message(&bytes))));
        }
        if !status.is_success() {
            return Err(ClientError::Refused {
                path: path_only(path),
                status: status.as_u16(),
                message: api_message(&bytes),
            });
        }
        serde_json::from_slice(&bytes).map_err(|err| ClientError::Invalid {
            path: path_only(path),
            reason: format!("not JSON: {err}"),
        })
    }
}

/// The message of an API error body `{"error": {"message": …}}`, else the start of the body.
fn api_message(bytes: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error_description"))
            .and_then(Value::as_str)
    });
    match message {
        Some(message) => message.chars().take(500).collect(),
        None => String::from_utf8_lossy(bytes).chars().take(200).collect(),
    }
}

/// `path` without its query string, for messages.
fn path_only(path: &str) -> String {
    path.split('?').next().unwrap_or(path).to_owned()
}

/// A connection error with its cause (hyper's own message alone says little).
fn describe(err: &hyper_util::client::legacy::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::{ControlClient, api_message};

    #[test]
    fn urls_and_tokens_are_checked() {
        assert!(ControlClient::new("http://127.0.0.1:8470/", "wdn_x").is_ok());
        let err = |url: &str, token: &str| ControlClient::new(url, token).err().unwrap_or_default();
        assert!(err("https://warden.example", "t").contains("https is not supported"));
        assert!(err("ftp://x", "t").contains("must start with http://"));
        assert!(err("not a url", "t").contains("invalid"));
        assert!(err("http://127.0.0.1:1", " ").contains("empty"));
        assert!(err("http://127.0.0.1:1", "a\nb").contains("not allowed"));
    }

    #[test]
    fn api_messages() {
        assert_eq!(api_message(br#"{"error":{"code":"forbidden","message":"no"}}"#), "no");
        assert_eq!(api_message(b"plain"), "plain");
    }
}
