//! What answers a request no route took: 405 with `Allow` when its path is served under other
//! methods, 404 otherwise. The known paths and their methods are read from the OpenAPI
//! document, which the route registrations themselves build, so this table cannot drift.

use actix_web::{HttpRequest, HttpResponse, dev::ResourceDef, web};
use utoipa::openapi::{OpenApi, PathItem};

use crate::error::ApiError;

/// Every documented path pattern with the methods it answers, as an `Allow` header value.
pub struct KnownPaths(Vec<(ResourceDef, String)>);

impl KnownPaths {
    pub fn from_openapi(api: &OpenApi) -> KnownPaths {
        let paths = api.paths.paths.iter().map(|(pattern, item)| {
            let mut methods = methods(item);
            methods.sort_unstable();
            (ResourceDef::new(pattern.as_str()), methods.join(", "))
        });
        KnownPaths(paths.collect())
    }

    /// The `Allow` value of the first pattern that matches `path`.
    fn allowed(&self, path: &str) -> Option<&str> {
        (self.0.iter())
            .find(|(pattern, _)| pattern.is_match(path))
            .map(|(_, allow)| allow.as_str())
    }
}

fn methods(item: &PathItem) -> Vec<&'static str> {
    let operations = [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("HEAD", &item.head),
        ("PATCH", &item.patch),
        ("TRACE", &item.trace),
    ];
    (operations.into_iter())
        .filter(|(_, operation)| operation.is_some())
        .map(|(method, _)| method)
        .collect()
}

/// The default service of the application.
pub async fn unrouted(
    req: HttpRequest,
    known: web::Data<KnownPaths>,
) -> Result<HttpResponse, ApiError> {
    Err(match known.allowed(req.path()) {
        Some(allow) => ApiError::MethodNotAllowed {
            allow: allow.to_string(),
        },
        None => ApiError::RouteNotFound,
    })
}
