//! A small blocking client of the Warden HTTP API.
//!
//! Every failure becomes a [`ClientError`] whose message is what the server said (its JSON error
//! message) or what went wrong on the way (connection refused, unreadable answer); a 403 is a denial,
//! which the binary reports with exit status 3.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// A failed API call.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// The server answered with an error.
    Api { status: u16, code: String, message: String },
    /// The server could not be reached or its answer could not be read.
    Transport(String),
    /// No access token was given.
    NoToken,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Api { status, code, message } => write!(f, "{message} (HTTP {status}, {code})"),
            ClientError::Transport(message) => f.write_str(message),
            ClientError::NoToken => f.write_str(
                "no access token: pass --token or set WARDEN_TOKEN (the first one is in warden-data/admin.token)",
            ),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// A denial the CLI itself reports (a decision that said no).
    pub(crate) fn denied(message: String) -> ClientError {
        ClientError::Api {
            status: 403,
            code: "denied".to_owned(),
            message,
        }
    }

    /// The HTTP status the server answered with, if it answered.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether a permission or a policy said no.
    pub(crate) fn is_denied(&self) -> bool {
        matches!(self, ClientError::Api { status: 403, .. })
    }
}

/// Talks to one server with one (optional) access token.
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Percent-encodes a path segment (agent ids contain `/` and `:`).
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    pub(crate) fn new(base: &str, token: Option<String>) -> Client {
        Client::with_timeout(base, token, Duration::from_secs(30))
    }

    /// A client whose every call gives up after `timeout`.
    pub(crate) fn with_timeout(base: &str, token: Option<String>, timeout: Duration) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build();
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// The same client (connection pool, timeout) with another token.
    pub(crate) fn with_token(&self, token: String) -> Client {
        Client {
            base: self.base.clone(),
            token: Some(token),
            agent: self.agent.clone(),
        }
    }

    fn token(&self) -> Result<&str, ClientError> {
        self.token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or(ClientError::NoToken)
    }

    pub(crate) fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let res = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.token()?))
            .call();
        self.finish(&url, res)
    }

    pub(crate) fn post(&self, path: &str, body: &impl Serialize) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let res = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token()?))
            .send_json(body);
        self.finish(&url, res)
    }

    /// Gets a text document (no token needed).
    pub(crate) fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut res = self.agent.get(&url).call().map_err(|e| {
            ClientError::Transport(format!(
                "cannot reach warden at {}: {e}; is `warden serve` running?",
                self.base
            ))
        })?;
        if !res.status().is_success() {
            return Err(ClientError::Transport(format!(
                "{url} answered HTTP {}",
                res.status().as_u16()
            )));
        }
        res.body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Transport(format!("cannot read {url}: {e}")))
    }

    /// Posts a form without a person's token (the OAuth token endpoint authenticates the agent).
    pub(crate) fn post_form(&self, path: &str, form: &[(&str, String)]) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let res = self
            .agent
            .post(&url)
            .send_form(form.iter().map(|(k, v)| (*k, v.as_str())));
        self.finish(&url, res)
    }

    pub(crate) fn delete(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let res = self
            .agent
            .delete(&url)
            .header("Authorization", &format!("Bearer {}", self.token()?))
            .call();
        self.finish(&url, res)
    }

    /// Posts JSON and returns the answer's body as it is (a rendered query result); an error answer
    /// becomes a [`ClientError`] as with [`Client::post`].
    pub(crate) fn post_for_text(&self, path: &str, body: &impl Serialize) -> Result<String, ClientError> {
        let url = format!("{}{path}", self.base);
        let res = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token()?))
            .send_json(body);
        self.finish_text(&url, res)
    }

    /// Gets the answer's body as it is, with the token; an error answer becomes a [`ClientError`].
    pub(crate) fn get_for_text(&self, path: &str) -> Result<String, ClientError> {
        let url = format!("{}{path}", self.base);
        let res = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.token()?))
            .call();
        self.finish_text(&url, res)
    }

    fn read(
        &self,
        url: &str,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, String), ClientError> {
        let mut res = res.map_err(|e| {
            ClientError::Transport(format!(
                "cannot reach warden at {}: {e}; is `warden serve` running?",
                self.base
            ))
        })?;
        let status = res.status().as_u16();
        let text = res
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Transport(format!("cannot read the answer from {url}: {e}")))?;
        Ok((status, text))
    }

    fn finish_text(
        &self,
        url: &str,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, ClientError> {
        let (status, text) = self.read(url, res)?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        Err(error_of(url, status, &text))
    }

    fn finish(
        &self,
        url: &str,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, ClientError> {
        let (status, text) = self.read(url, res)?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|_| {
                ClientError::Transport(format!("{url} answered HTTP {status} with a body that is not JSON"))
            });
        }
        Err(error_of(url, status, &text))
    }
}

/// The error an answer with a non-2xx `status` reports.
fn error_of(url: &str, status: u16, text: &str) -> ClientError {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return ClientError::Transport(format!("{url} answered HTTP {status} with a body that is not JSON"));
    };
    // OAuth endpoints answer RFC 6749 errors: {"error": "invalid_scope", "error_description": …}.
    if let Some(code) = value["error"].as_str() {
        let denied = matches!(code, "invalid_scope" | "invalid_grant" | "access_denied");
        return ClientError::Api {
            status: if denied { 403 } else { status },
            code: code.to_owned(),
            message: value["error_description"]
                .as_str()
                .unwrap_or("the server gave no description")
                .to_owned(),
        };
    }
    let error = &value["error"];
    ClientError::Api {
        status,
        code: error["code"].as_str().unwrap_or("unknown").to_owned(),
        message: error["message"]
            .as_str()
            .unwrap_or("the server gave no message")
            .to_owned(),
    }
}
