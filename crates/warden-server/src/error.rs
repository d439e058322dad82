//! The API's error type: every failure becomes `{"error": {"code", "message"}}` with one status.
//!
//! Codes are stable strings that scripts may match on; messages are for people. A 5xx response says
//! only "internal error" and the cause goes to the log, so internals never leak to callers.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use warden_core::AccessDenied;
use warden_store::StoreError;

/// An API failure.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    required_role: Option<String>,
    policy_ids: Option<Vec<String>>,
}

/// The error body, as documented in the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// The failure.
    pub(crate) error: ErrorDetail,
}

/// One failure.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// A stable, machine-readable code: `bad_request`, `invalid_json`, `unauthenticated`, `forbidden`,
    /// `denied_by_policy`, `not_found`, `conflict`, `payload_too_large`, `unsupported_media_type`, `method_not_allowed`,
    /// `internal`.
    pub(crate) code: String,
    /// What went wrong and what to do, for people.
    pub(crate) message: String,
    /// For `forbidden`: the role(s) that would have been allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) required_role: Option<String>,
    /// For `denied_by_policy`: the guardrails that refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) policy_ids: Option<Vec<String>>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            required_role: None,
            policy_ids: None,
        }
    }

    /// 400: the request is well formed JSON but says something invalid.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no credentials, or credentials Warden does not accept.
    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403: a guardrail refused the change; the message quotes its `@message`.
    pub fn denied_by_policy(decision: &warden_policy::Decision) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "denied_by_policy",
            message: decision.reason.clone(),
            required_role: None,
            policy_ids: Some(decision.policy_ids.clone()),
        }
    }

    /// 403 naming the role that would have been allowed.
    pub fn forbidden(message: impl Into<String>, required_role: &str) -> ApiError {
        let mut err = ApiError::new(StatusCode::FORBIDDEN, "forbidden", message);
        err.required_role = Some(required_role.to_owned());
        err
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500; `cause` is logged, not returned.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {cause}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl From<AccessDenied> for ApiError {
    fn from(denied: AccessDenied) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: denied.to_string(),
            required_role: Some(denied.required),
            policy_ids: None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::NotFound { .. } => ApiError::not_found(err.to_string()),
            StoreError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                required_role: self.required_role,
                policy_ids: self.policy_ids,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"warden\""),
            );
        }
        response
    }
}
