//! The browser playground at `/playground`: a page that shows what the service does with a
//! conversation (context, drops, tokens, cost, fallbacks, TTL). Its sources are under
//! `web/playground/`; the script is the one built file (`dist/playground.js`, committed),
//! so the binary embeds everything and a build needs no Node.

use actix_web::{HttpResponse, get, http::header};

const PAGE: &str = include_str!("../../web/playground/index.html");
const SCRIPT: &str = include_str!("../../web/playground/dist/playground.js");
const STYLE: &str = include_str!("../../web/playground/playground.css");

/// Nothing but this service's own script, stylesheet and API: no inline code, no other
/// origin, no framing. A message that somehow became markup still could not run.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn configure(cfg: &mut super::Routes) {
    cfg.service(page).service(script).service(style);
}

/// Never taken from a browser's cache unchecked, so a new binary's playground is seen at once.
fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

#[utoipa::path(
    tag = "playground",
    responses((status = 200, description = "The playground page", content_type = "text/html", body = String))
)]
#[get("/playground")]
async fn page() -> HttpResponse {
    asset("text/html; charset=utf-8", PAGE)
}

#[utoipa::path(
    tag = "playground",
    responses((status = 200, description = "The playground's script", content_type = "text/javascript", body = String))
)]
#[get("/playground/playground.js")]
async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

#[utoipa::path(
    tag = "playground",
    responses((status = 200, description = "The playground's stylesheet", content_type = "text/css", body = String))
)]
#[get("/playground/playground.css")]
async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}
