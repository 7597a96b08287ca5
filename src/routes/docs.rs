//! The OpenAPI 3.1 document, generated from the route registrations and the very types the
//! handlers decode and answer with, and a page that renders it with no external assets.
//!
//! # Documenting a route
//!
//! A handler registered through [`super::Routes`] without `#[utoipa::path]` does not
//! compile. What its annotation says:
//! - `request_body = T` for an [`super::extract::ApiJson<T>`] body, where `T` is the type
//!   the handler decodes, deriving `utoipa::ToSchema` next to `serde::Deserialize`;
//! - `params(Q)` for an [`super::extract::ApiQuery<Q>`], `Q` deriving `utoipa::IntoParams`
//!   (`#[into_params(parameter_in = Query)]`); path parameters are found by themselves;
//! - its success answers, `(status = 200, body = R)`, `R` the type it serializes (deriving
//!   `utoipa::ToSchema`), and any error the shared set below lacks (`body = ErrorBody`).
//!
//! Everything else is added to every operation by [`complete`]: the bearer security
//! scheme (except on [`PUBLIC`] paths), and the errors every authenticated route may
//! answer — in the flat contract shape, or OpenAI's under the [`OPENAI_PATHS`].

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::{
    OpenApi, ToSchema,
    openapi::{
        Components, ContentBuilder, Ref, RefOr, ResponseBuilder,
        path::{Operation, PathItem},
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "session-relay",
        description = "Stateful LLM sessions: send only the new message, the server keeps the \
                       history. Error bodies, codes and field rules are those of API.md."
    ),
    // Schemas only query parameters name are not collected by themselves.
    components(schemas(
        ErrorBody,
        OpenAiErrorBody,
        OpenAiError,
        crate::domain::transfer::ImportMode,
        crate::metering::usage::GroupBy
    ))
)]
struct ApiDoc;

/// The flat error body of the session API: `{"error", "message", ...extra fields}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The stable code: `invalid_request`, `session_not_found`, …
    pub error: String,
    pub message: String,
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// Seconds to wait before retrying (429, 409, 503).
    pub retry_after: Option<u64>,
}

/// OpenAI's error shape, on the OpenAI-compatible routes.
#[derive(Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    pub error: OpenAiError,
}

#[derive(Serialize, ToSchema)]
pub struct OpenAiError {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub code: Option<String>,
    pub param: Option<String>,
}

/// Paths anyone may call: no key, and no auth errors.
pub const PUBLIC: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/playground",
    "/playground/playground.js",
    "/playground/playground.css",
];

/// Path prefixes of the OpenAI-compatible routes, which answer errors in OpenAI's shape.
pub const OPENAI_PATHS: &[&str] = &[
    "/v1/chat/",
    "/v1/models",
    "/v1/responses",
    "/v1/conversations",
];

/// The errors any authenticated operation may answer, and those of one with a body.
const AUTHENTICATED_ERRORS: &[(u16, &str)] = &[
    (
        400,
        "Invalid request: malformed or out-of-range input (`field` names it)",
    ),
    (401, "Missing, unknown, expired or revoked API key"),
    (403, "The key is not allowed here"),
    (
        404,
        "Not found (a foreign session looks exactly like an unknown one)",
    ),
    (
        429,
        "Over a rate limit, or too many connections from this address",
    ),
    (
        503,
        "The store is unavailable; retry after `retry_after` seconds",
    ),
];
const BODY_ERRORS: &[(u16, &str)] = &[
    (408, "The request body was not received in time"),
    (413, "The body is larger than the limit (`limit_bytes`)"),
];

/// Title, version, the security scheme; the paths are added as routes are registered.
pub fn base() -> utoipa::openapi::OpenApi {
    let mut api = ApiDoc::openapi();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    let bearer = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some(
            "An API key (`sr_…`), a configured key, or a client token (`srt_…`)",
        ))
        .build();
    let components = api.components.get_or_insert_with(Components::new);
    components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
    api
}

/// Adds to every registered operation what all of them share (see the module comment).
pub fn complete(api: &mut utoipa::openapi::OpenApi) {
    for (path, item) in api.paths.paths.iter_mut() {
        let public = PUBLIC.contains(&path.as_str());
        let schema = if OPENAI_PATHS.iter().any(|prefix| path.starts_with(prefix)) {
            "OpenAiErrorBody"
        } else {
            "ErrorBody"
        };
        for operation in operations(item) {
            if public {
                continue;
            }
            operation.security = Some(vec![SecurityRequirement::new(
                "bearer",
                Vec::<String>::new(),
            )]);
            let has_body = operation.request_body.is_some();
            let errors =
                AUTHENTICATED_ERRORS
                    .iter()
                    .chain(if has_body { BODY_ERRORS } else { &[] });
            for (status, description) in errors {
                let responses = &mut operation.responses.responses;
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_response(description, schema));
            }
        }
    }
}

/// An error answer with the given body schema, for operations to name in `responses(...)`.
fn error_response(description: &str, schema: &str) -> RefOr<utoipa::openapi::Response> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(schema)))
        .build();
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", content)
            .build(),
    )
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The document, serialized once per worker.
pub struct Document(String);

impl Document {
    pub fn new(api: &utoipa::openapi::OpenApi) -> Document {
        Document(api.to_json().unwrap_or_else(|_| "{}".into()))
    }
}

pub fn configure(cfg: &mut super::Routes) {
    cfg.service(openapi_json).service(page);
}

#[utoipa::path(tag = "operations", responses((status = 200, description = "This document", body = Object)))]
#[get("/openapi.json")]
async fn openapi_json(document: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.0.clone())
}

#[utoipa::path(tag = "operations", responses((status = 200, description = "The document, rendered", content_type = "text/html", body = String)))]
#[get("/docs")]
async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("docs.html"))
}
