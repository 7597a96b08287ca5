//! The OpenAPI 3.1 document, generated from the route registrations, and a documentation
//! page that renders it with no external assets (it works offline).

use actix_web::{HttpResponse, get, web};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(info(
    title = "session-relay",
    description = "Stateful LLM sessions: send only the new message, the server keeps the \
                   history. Error bodies, codes and field rules are those of API.md."
))]
struct ApiDoc;

/// Title, version and description; the paths are added as routes are registered.
pub fn base() -> utoipa::openapi::OpenApi {
    let mut api = ApiDoc::openapi();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api
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

#[utoipa::path(tag = "operations", responses((status = 200, description = "This document")))]
#[get("/openapi.json")]
async fn openapi_json(document: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.0.clone())
}

#[utoipa::path(tag = "operations", responses((status = 200, description = "The document, rendered")))]
#[get("/docs")]
async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("docs.html"))
}
