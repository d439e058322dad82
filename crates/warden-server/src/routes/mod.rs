//! The `/v1` API: one module per resource, each a thin layer that authenticates, checks the caller's
//! role, validates input and calls the store. The router and the OpenAPI document are built from the
//! same `routes!` lists, so the document cannot drift from what the server accepts.

mod access_tokens;
mod agents;
mod audit;
mod events;
mod gateway_sync;
mod hooks;
mod mcp_servers;
mod oauth;
mod otlp;
mod policy;
mod revocations;
mod scopes;
mod teams;
mod templates;

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Warden API", description = "Zero-trust control plane for fleets of AI agents"),
    modifiers(&BearerAuth),
    components(schemas(crate::error::ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "access_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "agent_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("an agent's access token from POST /oauth2/token"))
                    .build(),
            ),
        );
    }
}

pub(crate) use templates::seed_default as seed_default_template;

/// The `/v1` routes with their OpenAPI document.
pub(crate) fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(teams::create_team, teams::list_teams))
        .routes(routes!(
            access_tokens::create_access_token,
            access_tokens::list_access_tokens
        ))
        .routes(routes!(access_tokens::revoke_access_token))
        .routes(routes!(access_tokens::whoami))
        .routes(routes!(agents::register_agent, agents::list_agents))
        .routes(routes!(agents::show_agent))
        .routes(routes!(agents::suspend_agent))
        .routes(routes!(agents::resume_agent))
        .routes(routes!(agents::revoke_agent))
        .routes(routes!(agents::grant_scope, agents::list_agent_grants))
        .routes(routes!(agents::ungrant_scope))
        .routes(routes!(agents::list_grants))
        .routes(routes!(mcp_servers::add_mcp_server, mcp_servers::list_mcp_servers))
        .routes(routes!(scopes::define_scope, scopes::list_scopes))
        .routes(routes!(events::list_events))
        .routes(routes!(audit::query))
        .routes(routes!(audit::append))
        .routes(routes!(audit::govern))
        .routes(routes!(audit::verify, audit::verify_get))
        .routes(routes!(audit::export))
        .routes(routes!(revocations::feed))
        .routes(routes!(revocations::rotate_keys))
        .routes(routes!(agents::tag_agent))
        .routes(routes!(agents::untag_agent))
        .routes(routes!(policy::add_guardrail, policy::list_guardrails))
        .routes(routes!(policy::remove_guardrail))
        .routes(routes!(policy::schema))
        .routes(routes!(policy::authorize))
        .routes(routes!(policy::check))
        .routes(routes!(gateway_sync::snapshot))
        .routes(routes!(gateway_sync::ingest))
        .routes(routes!(templates::set_template, templates::list_templates))
        .routes(routes!(templates::show_template))
        .routes(hooks::route())
        .routes(otlp::logs_route())
        .routes(otlp::metrics_route())
        .routes(routes!(oauth::token))
        .routes(routes!(oauth::introspect))
        .routes(routes!(oauth::jwks))
}

/// Reads a text field that must not be empty or overlong.
pub(crate) fn text_field(field: &str, value: &str, max: usize) -> Result<String, crate::error::ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(crate::error::ApiError::bad_request(format!(
            "`{field}` must not be empty"
        )));
    }
    if trimmed.chars().count() > max {
        return Err(crate::error::ApiError::bad_request(format!(
            "`{field}` is longer than {max} characters"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(crate::error::ApiError::bad_request(format!(
            "`{field}` contains control characters"
        )));
    }
    Ok(trimmed.to_owned())
}
