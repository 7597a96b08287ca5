//! `/playground` is served by the binary itself, with a strict Content-Security-Policy,
//! whether or not the service has keys (the page asks for one; the browser tests in
//! `tests/browser/` drive it).

use reqwest::StatusCode;

use crate::{
    helpers::{Backend, spawn_app},
    openapi::assert_nothing_external,
};

#[tokio::test]
async fn the_page_and_its_assets_are_served_without_a_key_under_a_self_only_policy() {
    let app = spawn_app(Backend::Memory).await;
    for (path, content_type) in [
        ("/playground", "text/html; charset=utf-8"),
        (
            "/playground/playground.js",
            "text/javascript; charset=utf-8",
        ),
        ("/playground/playground.css", "text/css; charset=utf-8"),
    ] {
        // No Authorization header: a browser opening the page has no key yet.
        let response = app
            .http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_nothing_external(&response.text().await.unwrap());
    }
    let page = app.get_text("/playground").await;
    assert!(page.contains(r#"<script src="/playground/playground.js" defer></script>"#));
    assert!(page.contains(r#"href="/playground/playground.css""#));
    // The page runs no inline code (the policy would block it).
    assert_eq!(page.matches("<script").count(), 1);
}
