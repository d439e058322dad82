//! Warden's control plane: the HTTP API under `/v1`, its OpenAPI document, and `serve`, which owns
//! the data directory (single-writer lock, database, signing keys, bootstrap token) and runs the
//! server until SIGTERM.
//!
//! **Architecture Invariant:** handlers stay thin. They authenticate the caller, check the role,
//! validate input and call the store or a library crate; domain rules live in `warden-core`, storage
//! in `warden-store`, credentials in `warden-identity`, so the gateway and the CLI can share them.

mod audit;
mod clock;
mod credentials;
mod error;
mod extract;
mod gateway;
mod policy;
mod routes;
mod serve;
mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;

pub use clock::parse_offset;
pub use credentials::{Credentials, TokenPolicy};
pub use error::ApiError;
pub use policy::PolicyState;
pub use serve::{MAX_TOKEN_TTL_SECS, ServeConfig, ServeError, say, serve, shutdown_signal};
pub use state::AppState;

/// The largest request body the API accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The whole HTTP surface: `/healthz`, `/openapi.json` and the `/v1` API.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = routes::api().split_for_parts();
    let openapi = std::sync::Arc::new(openapi);
    let gateway = state.gateway.router();
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/openapi.json",
            get(move || async move { axum::Json(openapi.as_ref().clone()) }),
        )
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such endpoint; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see /openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        // The gateway has its own body limit and answers MCP clients in MCP's own error formats.
        .merge(gateway)
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::api().split_for_parts().1
}
