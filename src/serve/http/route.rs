//! From a request's method and target to a JSON response: pure, no I/O.
//! What the routes answer comes from an [`Api`].

use serde_json::{json, Value};

use super::request::{parse_query, percent_decode, split_target, Rejection};
use super::HttpError;
use crate::util::redact;

/// `?limit=` of `/v1/builds` when not given.
pub const DEFAULT_LIMIT: usize = 50;

/// The largest `?limit=` of `/v1/builds`.
pub const MAX_LIMIT: usize = 1000;

/// The methods the API allows (the `Allow` header of a 405).
pub const ALLOWED_METHODS: &str = "GET, HEAD";

/// What `/v1/builds` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildQuery {
    /// Only the builds of this pipeline (`?pipeline=NAME`).
    pub pipeline: Option<String>,
    /// At most this many, 1 to [`MAX_LIMIT`] (`?limit=N`, default
    /// [`DEFAULT_LIMIT`]).
    pub limit: usize,
}

/// What the HTTP API serves; the scheduler implements it (or uses
/// [`super::CatalogApi`]). Methods may block (they run on tokio's blocking
/// pool). `Ok(None)` means "no such thing" (404). Errors become 400 for
/// [`HttpError::BadRequest`] and the catalog's user errors, 404 for the
/// catalog's `NotFound`, else 500; their messages are sent to the client,
/// so they must hold no secret.
pub trait Api: Send + Sync {
    /// `GET /health`: the body, a JSON object.
    fn health(&self) -> Result<Value, HttpError>;
    /// `GET /v1/pipelines`: one JSON object per pipeline.
    fn pipelines(&self) -> Result<Vec<Value>, HttpError>;
    /// `GET /v1/pipelines/{name}`.
    fn pipeline(&self, name: &str) -> Result<Option<Value>, HttpError>;
    /// `GET /v1/builds`: recent builds, running and finished, newest first.
    fn builds(&self, query: &BuildQuery) -> Result<Vec<Value>, HttpError>;
    /// `GET /v1/builds/{id}` (`id` percent-decoded, not checked).
    fn build(&self, id: &str) -> Result<Option<Value>, HttpError>;
    /// `GET /v1/images[?name=NAME]`.
    fn images(&self, name: Option<&str>) -> Result<Vec<Value>, HttpError>;
    /// `GET /v1/images/{reference}`: a catalog id or `NAME/x.y.z/n`
    /// (percent-decoded; an encoded `%2F` and a plain `/` are the same).
    fn image(&self, reference: &str) -> Result<Option<Value>, HttpError>;
}

/// A response: a status and a JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

impl Response {
    /// 200 with `body`.
    pub fn ok(body: Value) -> Self {
        Response { status: 200, body }
    }

    /// `status` with the body `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Response {
            status,
            body: json!({ "error": message.into() }),
        }
    }

    /// The reason phrase of [`Response::status`].
    pub fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            414 => "URI Too Long",
            421 => "Misdirected Request",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "",
        }
    }

    /// The response as sent: status line, headers (`Content-Type:
    /// application/json`, `Content-Length`, `Connection: close`, `Date`,
    /// and `Allow` on a 405) and, unless `head_only` (a HEAD request), the
    /// body, every secret in its strings masked ([`redact::json`]). `date`
    /// is the `Date` header's value.
    pub fn encode(&self, head_only: bool, date: &str) -> Vec<u8> {
        let mut shown = self.body.clone();
        redact::json(&mut shown);
        let mut body = shown.to_string().into_bytes();
        body.push(b'\n');
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
             Date: {date}\r\n",
            self.status,
            self.reason(),
            body.len()
        );
        if self.status == 405 {
            out.push_str(&format!("Allow: {ALLOWED_METHODS}\r\n"));
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if !head_only {
            out.extend_from_slice(&body);
        }
        out
    }
}

impl From<Rejection> for Response {
    fn from(r: Rejection) -> Self {
        Response::error(r.status, r.message)
    }
}

impl From<&HttpError> for Response {
    fn from(e: &HttpError) -> Self {
        Response::error(e.status(), super::chain(e))
    }
}

/// Answers `method target` from `api`: 405 for any method but GET and
/// HEAD (HEAD is answered like GET; the server drops the body), 400 for a
/// malformed target or query, 404 for unknown paths and ids.
pub fn route(method: &str, target: &str, api: &dyn Api) -> Response {
    if method != "GET" && method != "HEAD" {
        return Response::error(
            405,
            format!("{method} is not allowed: this API is read-only ({ALLOWED_METHODS})"),
        );
    }
    match answer(target, api) {
        Ok(r) => r,
        Err(Failure::Rejected(r)) => r.into(),
        Err(Failure::Api(e)) => (&e).into(),
    }
}

enum Failure {
    Rejected(Rejection),
    Api(HttpError),
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        Failure::Rejected(r)
    }
}

impl From<HttpError> for Failure {
    fn from(e: HttpError) -> Self {
        Failure::Api(e)
    }
}

fn not_found(what: String) -> Response {
    Response::error(404, what)
}

fn found(value: Option<Value>, what: impl FnOnce() -> String) -> Response {
    value.map_or_else(|| not_found(what()), Response::ok)
}

fn list(key: &str, items: Vec<Value>) -> Response {
    Response::ok(json!({ key: items }))
}

fn answer(target: &str, api: &dyn Api) -> Result<Response, Failure> {
    let (path, query) = split_target(target)?;
    let params = parse_query(query.unwrap_or(""))?;
    let segments = path[1..]
        .split('/')
        .map(|s| percent_decode(s, false))
        .collect::<Result<Vec<_>, _>>()?;
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let allowed: &[&str] = match segs.as_slice() {
        ["v1", "builds"] => &["pipeline", "limit"],
        ["v1", "images"] => &["name"],
        _ => &[],
    };
    let params = Params::new(params, allowed)?;
    Ok(match segs.as_slice() {
        ["health"] => Response::ok(api.health()?),
        ["v1", "pipelines"] => list("pipelines", api.pipelines()?),
        ["v1", "pipelines", name] if !name.is_empty() => {
            found(api.pipeline(name)?, || format!("no pipeline `{name}`"))
        }
        ["v1", "builds"] => list("builds", api.builds(&build_query(&params)?)?),
        ["v1", "builds", id] if !id.is_empty() => {
            found(api.build(id)?, || format!("no build `{id}`"))
        }
        ["v1", "images"] => list("images", api.images(params.get("name")?)?),
        ["v1", "images", rest @ ..] if rest.iter().any(|s| !s.is_empty()) => {
            let reference = rest.join("/");
            found(api.image(&reference)?, || format!("no image `{reference}`"))
        }
        _ => not_found(format!(
            "no resource `{path}`: the API serves /health, /v1/pipelines, /v1/builds and /v1/images"
        )),
    })
}

/// A query's parameters, each known and given at most once.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(pairs: Vec<(String, String)>, allowed: &[&str]) -> Result<Self, Rejection> {
        for (i, (k, _)) in pairs.iter().enumerate() {
            let bad = |m: String| Rejection {
                status: 400,
                message: m,
            };
            if !allowed.contains(&k.as_str()) {
                return Err(bad(if allowed.is_empty() {
                    format!("unknown query parameter `{k}`: this resource takes none")
                } else {
                    format!(
                        "unknown query parameter `{k}`: this resource takes {}",
                        allowed.join(", ")
                    )
                }));
            }
            if pairs[..i].iter().any(|(seen, _)| seen == k) {
                return Err(bad(format!("query parameter `{k}` is given twice")));
            }
        }
        Ok(Params(pairs))
    }

    /// The value of `key`, which must not be empty when given.
    fn get(&self, key: &str) -> Result<Option<&str>, Rejection> {
        match self.0.iter().find(|(k, _)| k == key) {
            Some((_, v)) if v.is_empty() => Err(Rejection {
                status: 400,
                message: format!("query parameter `{key}` is empty"),
            }),
            Some((_, v)) => Ok(Some(v)),
            None => Ok(None),
        }
    }
}

fn build_query(params: &Params) -> Result<BuildQuery, Rejection> {
    let limit = match params.get("limit")? {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| Rejection {
                status: 400,
                message: format!("limit `{text}` is not a number from 1 to {MAX_LIMIT}"),
            })?,
    };
    Ok(BuildQuery {
        pipeline: params.get("pipeline")?.map(str::to_string),
        limit,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::catalog::CatalogError;

    /// A fixed Api recording what it was asked (routing is tested alone;
    /// the catalog-backed Api is tested against a real catalog in
    /// tests/serve_http.rs).
    #[derive(Default)]
    struct Fixed {
        asked: Mutex<Vec<String>>,
    }

    impl Fixed {
        fn note(&self, s: String) {
            self.asked.lock().unwrap().push(s);
        }
    }

    impl Api for Fixed {
        fn health(&self) -> Result<Value, HttpError> {
            Ok(json!({"status": "ok"}))
        }
        fn pipelines(&self) -> Result<Vec<Value>, HttpError> {
            Ok(vec![json!({"name": "web"})])
        }
        fn pipeline(&self, name: &str) -> Result<Option<Value>, HttpError> {
            self.note(format!("pipeline {name}"));
            Ok((name == "web" || name == "a/b").then(|| json!({"name": name})))
        }
        fn builds(&self, q: &BuildQuery) -> Result<Vec<Value>, HttpError> {
            self.note(format!("builds {:?} {}", q.pipeline, q.limit));
            Ok(vec![])
        }
        fn build(&self, id: &str) -> Result<Option<Value>, HttpError> {
            self.note(format!("build {id}"));
            Ok((id == "7").then(|| json!({"id": 7})))
        }
        fn images(&self, name: Option<&str>) -> Result<Vec<Value>, HttpError> {
            self.note(format!("images {name:?}"));
            Ok(vec![json!({"id": 1})])
        }
        fn image(&self, reference: &str) -> Result<Option<Value>, HttpError> {
            self.note(format!("image {reference}"));
            match reference {
                "broken" => Err(HttpError::Api {
                    what: "reading the schedule".into(),
                    source: "disk on fire".into(),
                }),
                "gone" => Err(HttpError::Catalog(CatalogError::NotFound {
                    what: "gone".into(),
                })),
                "bad" => Err(HttpError::BadRequest {
                    message: "bad ref".into(),
                }),
                "web/1.0.0/1" => Ok(Some(json!({"ref": reference}))),
                _ => Ok(None),
            }
        }
    }

    fn get(api: &Fixed, target: &str) -> (u16, Value) {
        let r = route("GET", target, api);
        (r.status, r.body)
    }

    #[test]
    fn routes_to_the_api() {
        let api = Fixed::default();
        assert_eq!(get(&api, "/health"), (200, json!({"status": "ok"})));
        assert_eq!(
            get(&api, "/v1/pipelines"),
            (200, json!({"pipelines": [{"name": "web"}]}))
        );
        assert_eq!(get(&api, "/v1/pipelines/web").0, 200);
        assert_eq!(get(&api, "/v1/pipelines/a%2Fb").0, 200);
        assert_eq!(get(&api, "/v1/builds").1, json!({"builds": []}));
        assert_eq!(get(&api, "/v1/builds?pipeline=web+nightly&limit=5").0, 200);
        assert_eq!(get(&api, "/v1/builds/7").0, 200);
        assert_eq!(get(&api, "/v1/images?name=web").0, 200);
        assert_eq!(get(&api, "/v1/images/web/1.0.0/1").0, 200);
        assert_eq!(get(&api, "/v1/images/web%2F1.0.0%2F1").0, 200);
        assert_eq!(route("HEAD", "/health", &api).status, 200);
        assert_eq!(
            *api.asked.lock().unwrap(),
            [
                "pipeline web",
                "pipeline a/b",
                "builds None 50",
                "builds Some(\"web nightly\") 5",
                "build 7",
                "images Some(\"web\")",
                "image web/1.0.0/1",
                "image web/1.0.0/1",
            ]
        );
    }

    #[test]
    fn unknown_things_are_404() {
        let api = Fixed::default();
        for t in [
            "/",
            "/v1",
            "/v2/images",
            "/health/",
            "/v1/pipelines/",
            "/v1/pipelines/db",
            "/v1/pipelines/web/x",
            "/v1/builds/8",
            "/v1/builds/",
            "/v1/images/",
            "/v1/images/db/1.0.0/1",
        ] {
            let (status, body) = get(&api, t);
            assert_eq!(status, 404, "{t}");
            assert!(body["error"].as_str().unwrap().contains("no "), "{t}");
        }
    }

    #[test]
    fn bad_requests_are_400() {
        let api = Fixed::default();
        for t in [
            "*",
            "/v1/images/%zz",
            "/v1/builds?limit=0",
            "/v1/builds?limit=1001",
            "/v1/builds?limit=ten",
            "/v1/builds?limit=1&limit=2",
            "/v1/builds?pipeline=",
            "/v1/builds?pipline=web",
            "/v1/images?name=%ff",
            "/health?verbose",
            "/v1/images/bad",
        ] {
            assert_eq!(get(&api, t).0, 400, "{t}");
        }
        assert_eq!(get(&api, "/v1/builds?limit=1000").0, 200);
    }

    #[test]
    fn api_failures_become_statuses() {
        let api = Fixed::default();
        assert_eq!(
            get(&api, "/v1/images/broken"),
            (500, json!({"error": "reading the schedule: disk on fire"}))
        );
        assert_eq!(get(&api, "/v1/images/gone").0, 404);
        let (status, body) = get(&api, "/v1/images/bad");
        assert_eq!((status, body), (400, json!({"error": "bad ref"})));
    }

    #[test]
    fn other_methods_are_405() {
        let api = Fixed::default();
        for m in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get"] {
            let r = route(m, "/v1/images", &api);
            assert_eq!(r.status, 405, "{m}");
            let text = String::from_utf8(r.encode(false, "d")).unwrap();
            assert!(text.contains("\r\nAllow: GET, HEAD\r\n"), "{text}");
        }
        assert!(api.asked.lock().unwrap().is_empty());
    }

    #[test]
    fn encodes_responses() {
        let r = Response::ok(json!({"a": 1}));
        let full = String::from_utf8(r.encode(false, "Tue, 01 Dec 2026 09:00:00 GMT")).unwrap();
        assert_eq!(
            full,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\
             Connection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
             Date: Tue, 01 Dec 2026 09:00:00 GMT\r\n\r\n{\"a\":1}\n"
        );
        let head = String::from_utf8(r.encode(true, "Tue, 01 Dec 2026 09:00:00 GMT")).unwrap();
        assert_eq!(head, full.trim_end_matches("{\"a\":1}\n"));
        assert!(!head.contains("Allow"));
    }
}
