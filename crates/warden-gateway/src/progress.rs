//! Progress relay: a `tools/call` whose client asks for progress (`params._meta.progressToken`) and
//! accepts `text/event-stream` is answered, once the upstream reports progress, with an SSE stream
//! carrying the upstream's `notifications/progress` for that call as they come, then the response.
//! A call answered before any progress gets a plain JSON response like any other.
//!
//! This module owns the token the upstream sees, the matching of the upstream's notifications to a
//! call, the rewriting of the token back to the client's own, and the SSE framing. The upstream sees
//! a fresh random token per call, never the client's: one upstream connection serves every agent, so
//! a client-chosen token could collide with another agent's and show it progress that is not its own.
//!
//! Progress is advisory. A client that reads too slowly loses progress notifications, never the
//! response, and no call ever waits for its client to read. Nothing here is audited: the call's
//! decision and outcome are, as for any call.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode, header::ACCEPT};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use warden_mcp::jsonrpc::{Message, Notification};

use crate::session::random_hex;

/// The notification method relayed.
const PROGRESS: &str = "notifications/progress";

/// How many messages may wait for a slow client before progress notifications are dropped.
const BUFFER: usize = 64;

/// One call's progress relay: the client's token, the one the upstream sees, and the stream to the
/// client.
#[derive(Debug)]
pub(crate) struct ProgressRelay {
    /// The client's own token, as sent (a string or a number), put back in every notification.
    client_token: Value,
    /// The token the upstream sees.
    upstream_token: String,
    tx: mpsc::Sender<Message>,
}

impl ProgressRelay {
    /// A relay for a request of `method` with `params`, if the client asked for progress and accepts
    /// an SSE response; with the receiving end of the stream to answer with.
    pub(crate) fn for_request(
        method: &str,
        params: Option<&Value>,
        headers: &HeaderMap,
    ) -> Option<(ProgressRelay, mpsc::Receiver<Message>)> {
        if method != "tools/call" || !accepts_event_stream(headers) {
            return None;
        }
        let client_token = params?.get("_meta")?.get("progressToken")?;
        if !(client_token.is_string() || client_token.is_number()) {
            return None;
        }
        let upstream_token = format!("warden-{}", random_hex(16)?);
        let (tx, rx) = mpsc::channel(BUFFER);
        let relay = ProgressRelay {
            client_token: client_token.clone(),
            upstream_token,
            tx,
        };
        Some((relay, rx))
    }

    /// The token to send upstream in `params._meta.progressToken`.
    pub(crate) fn upstream_token(&self) -> &str {
        &self.upstream_token
    }

    /// Where the response goes once the call is answered, after every relayed notification.
    pub(crate) fn sender(&self) -> mpsc::Sender<Message> {
        self.tx.clone()
    }

    /// Runs `call`, relaying the upstream's progress notifications for it until it completes.
    /// `notifications` must be subscribed before the call is sent, so that none is missed.
    pub(crate) async fn relay_during<F: Future>(
        &self,
        call: F,
        mut notifications: broadcast::Receiver<Notification>,
    ) -> F::Output {
        let mut call = std::pin::pin!(call);
        let mut listening = true;
        loop {
            tokio::select! {
                biased;
                output = &mut call => {
                    // What the upstream sent before its response is already queued: pass it on
                    // first, so that the response comes last.
                    loop {
                        match notifications.try_recv() {
                            Ok(notification) => self.pass_on(notification),
                            Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                            Err(_) => return output,
                        }
                    }
                }
                received = notifications.recv(), if listening => match received {
                    Ok(notification) => self.pass_on(notification),
                    // Progress is advisory: what the broadcast dropped is lost, the rest goes on.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => listening = false,
                },
            }
        }
    }

    /// Sends `notification` to the client, with the client's token, if it is this call's progress.
    fn pass_on(&self, notification: Notification) {
        if notification.method != PROGRESS {
            return;
        }
        let Some(Value::Object(mut params)) = notification.params else {
            return;
        };
        if params.get("progressToken").and_then(Value::as_str) != Some(self.upstream_token.as_str()) {
            return;
        }
        params.insert("progressToken".to_owned(), self.client_token.clone());
        let message = Message::from(Notification {
            method: PROGRESS.to_owned(),
            params: Some(Value::Object(params)),
        });
        // A full buffer means the client is not reading: drop this one rather than wait.
        let _ = self.tx.try_send(message);
    }
}

/// Whether the request's `Accept` header admits `text/event-stream`.
fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let media = item.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("text/event-stream") || media == "*/*" || media.eq_ignore_ascii_case("text/*")
        })
}

/// A 200 whose body is an SSE stream of `first`, then the messages `rx` yields, ending when every
/// sender is gone.
pub(crate) fn event_stream(first: Message, rx: mpsc::Receiver<Message>) -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/event-stream"), (CACHE_CONTROL, "no-cache")],
        Body::from_stream(Events { first: Some(first), rx }),
    )
        .into_response()
}

/// The SSE framing of a message stream: one `message` event per JSON-RPC message.
struct Events {
    first: Option<Message>,
    rx: mpsc::Receiver<Message>,
}

fn frame(message: &Message) -> Bytes {
    Bytes::from(format!("event: message\ndata: {}\n\n", message.to_line()))
}

impl futures_core::Stream for Events {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(frame(&first))));
        }
        self.rx
            .poll_recv(cx)
            .map(|message| message.map(|message| Ok(frame(&message))))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header::ACCEPT};
    use serde_json::json;
    use warden_mcp::jsonrpc::{Message, Notification};

    use super::{ProgressRelay, accepts_event_stream};

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_calls_asking_for_progress_from_clients_taking_sse_are_relayed() {
        let sse = accept("application/json, text/event-stream");
        let params = json!({"name": "t", "_meta": {"progressToken": "p1"}});
        assert!(ProgressRelay::for_request("tools/call", Some(&params), &sse).is_some());
        assert!(
            ProgressRelay::for_request("tools/call", Some(&json!({"_meta": {"progressToken": 7}})), &sse).is_some()
        );
        assert!(ProgressRelay::for_request("tools/list", Some(&params), &sse).is_none());
        assert!(ProgressRelay::for_request("tools/call", Some(&params), &accept("application/json")).is_none());
        assert!(ProgressRelay::for_request("tools/call", Some(&params), &HeaderMap::new()).is_none());
        assert!(ProgressRelay::for_request("tools/call", Some(&json!({"name": "t"})), &sse).is_none());
        let odd = json!({"_meta": {"progressToken": {"an": "object"}}});
        assert!(ProgressRelay::for_request("tools/call", Some(&odd), &sse).is_none());
        assert!(accepts_event_stream(&accept("text/event-stream;q=0.5")));
        assert!(!accepts_event_stream(&accept("application/json;q=1")));
    }

    #[tokio::test]
    async fn progress_for_this_call_is_passed_on_with_the_clients_token() {
        let sse = accept("text/event-stream");
        let params = json!({"_meta": {"progressToken": 42}});
        let (relay, mut rx) = ProgressRelay::for_request("tools/call", Some(&params), &sse).unwrap();
        assert!(relay.upstream_token().starts_with("warden-"));
        let progress = |token: &str, method: &str| Notification {
            method: method.to_owned(),
            params: Some(json!({"progressToken": token, "progress": 1, "total": 2, "message": "half"})),
        };
        let (tx, notifications) = tokio::sync::broadcast::channel(8);
        let token = relay.upstream_token().to_owned();
        let answer = relay
            .relay_during(
                async {
                    tx.send(progress("another-call", "notifications/progress")).unwrap();
                    tx.send(progress(&token, "notifications/message")).unwrap();
                    tx.send(progress(&token, "notifications/progress")).unwrap();
                    tokio::task::yield_now().await;
                    "answer"
                },
                notifications,
            )
            .await;
        assert_eq!(answer, "answer");
        drop(relay);
        let Some(Message::Notification(relayed)) = rx.recv().await else {
            panic!("nothing relayed")
        };
        assert_eq!(relayed.method, "notifications/progress");
        assert_eq!(
            relayed.params,
            Some(json!({"progressToken": 42, "progress": 1, "total": 2, "message": "half"}))
        );
        assert!(rx.recv().await.is_none(), "only this call's progress is relayed");
    }
}
