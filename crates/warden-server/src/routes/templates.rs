//! `/v1/templates`: the golden-path templates `warden init` renders into agent projects. The platform
//! team owns them: every edit stores a new version (old versions stay readable, so a project can be
//! re-rendered from the version that made it); anyone authenticated reads them.
//!
//! The built-in default is seeded as version 1 of `default` on the first start ([`seed_default`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use warden_core::{Name, Operation, golden_path};
use warden_store::{Actor, Store, StoreError, TemplateRecord};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::state::AppState;

/// The name `warden init` uses when none is given.
pub(crate) const DEFAULT_TEMPLATE: &str = "default";

/// The built-in default template's files.
const DEFAULT_FILES: &[(&str, &str)] = &[
    (".mcp.json", include_str!("../../templates/default/.mcp.json")),
    (
        ".claude/settings.json",
        include_str!("../../templates/default/.claude/settings.json"),
    ),
    (
        ".claude/skills/warden/SKILL.md",
        include_str!("../../templates/default/.claude/skills/warden/SKILL.md"),
    ),
    (
        "managed/managed-settings.json",
        include_str!("../../templates/default/managed/managed-settings.json"),
    ),
    (
        "managed/managed-mcp.json",
        include_str!("../../templates/default/managed/managed-mcp.json"),
    ),
];

/// Stores the built-in template as version 1 of `default` unless a `default` exists.
pub(crate) async fn seed_default(store: &Store) -> Result<(), StoreError> {
    let files = DEFAULT_FILES
        .iter()
        .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
        .collect();
    let name = Name::parse(DEFAULT_TEMPLATE).map_err(|e| StoreError::Internal(e.to_string()))?;
    store.seed_template(&Actor::system(), &name, files).await?;
    Ok(())
}

/// One version of a template.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TemplateView {
    /// The template's name.
    name: Name,
    /// The version.
    version: i64,
    /// Relative path to text with `{{placeholder}}`s.
    files: BTreeMap<String, String>,
    /// Who stored this version.
    created_by: String,
    /// When.
    created_at: String,
}

impl From<TemplateRecord> for TemplateView {
    fn from(t: TemplateRecord) -> TemplateView {
        TemplateView {
            name: t.name,
            version: t.version,
            files: t.files,
            created_by: t.created_by,
            created_at: t.created_at,
        }
    }
}

/// A new version of a template.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetTemplate {
    /// The template's name (a new name starts at version 1).
    name: Name,
    /// Relative path to text; placeholders: see `warden template show`.
    files: BTreeMap<String, String>,
}

/// Which version to read.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionQuery {
    /// The version; the newest when left out.
    version: Option<i64>,
}

/// Store a new version of a template (platform-admin).
#[utoipa::path(post, path = "/v1/templates", tag = "templates", request_body = SetTemplate,
    security(("access_token" = [])),
    responses((status = 201, body = TemplateView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn set_template(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiJson(body): ApiJson<SetTemplate>,
) -> Result<(StatusCode, Json<TemplateView>), ApiError> {
    person.authorize(Operation::ManageTemplates)?;
    golden_path::check_files(&body.files).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let stored = state
        .store
        .put_template(&Actor::person(&person.name), &body.name, body.files)
        .await?;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// The newest version of every template.
#[utoipa::path(get, path = "/v1/templates", tag = "templates", security(("access_token" = [])),
    responses((status = 200, body = Vec<TemplateView>)))]
pub(crate) async fn list_templates(
    State(state): State<AppState>,
    Caller(person): Caller,
) -> Result<Json<Vec<TemplateView>>, ApiError> {
    person.authorize(Operation::ReadRegistry)?;
    let list = state.store.list_templates().await?;
    Ok(Json(list.into_iter().map(TemplateView::from).collect()))
}

/// One template, the newest version unless `version` is given.
#[utoipa::path(get, path = "/v1/templates/{name}", tag = "templates", params(("name" = String, Path), VersionQuery),
    security(("access_token" = [])),
    responses((status = 200, body = TemplateView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show_template(
    State(state): State<AppState>,
    Caller(person): Caller,
    ApiPath(name): ApiPath<Name>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<Json<TemplateView>, ApiError> {
    person.authorize(Operation::ReadRegistry)?;
    if query.version.is_some_and(|v| v < 1) {
        return Err(ApiError::bad_request("`version` starts at 1"));
    }
    Ok(Json(state.store.template(&name, query.version).await?.into()))
}
