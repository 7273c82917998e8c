//! The pages people use, served from the same origin as the API: the
//! customer's callback and chat page (`/callback/{scenario}`), the agent
//! console (`/agent`), and the assets
//! every page shares (`/assets/…`). The files live in `http-front/assets/`
//! (the pages in `pages/`, what they share beside it)
//! and are built into the binary (rust-embed), so running callbackd needs
//! no Node build step and no files beside it.
//!
//! Every page answers with the same security headers: a
//! Content-Security-Policy that allows scripts and styles from this origin
//! only (no inline script, so what a customer typed can never run),
//! `X-Content-Type-Options`, a `Referrer-Policy` that keeps tokens in links
//! to ourselves, and frame rules that allow only callbackd's own pages and
//! the origins given with `--frame-origin` to embed a page (the site
//! widget).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

use crate::extract::Path;
use crate::AppState;

#[derive(Embed)]
#[folder = "assets/"]
struct Assets;

/// What a file is, by its extension; `None`: not served.
fn content_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.').map(|(_, e)| e)?;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "mp3" => "audio/mpeg",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// The headers of every page. `frame_ancestors` is the CSP source list of
/// the origins that may embed it.
fn page_headers(headers: &mut HeaderMap, frame_ancestors: &str) {
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: https:; \
         media-src 'self' blob: mediastream: https:; connect-src 'self'; font-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {frame_ancestors}"
    );
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    if frame_ancestors == "'self'" {
        // For browsers that predate frame-ancestors.
        headers.insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(self), microphone=(self), display-capture=(self)"),
    );
    nosniff(headers);
}

fn nosniff(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// An embedded file with its type and an ETag, revalidated on each use
/// (`no-cache`): a new binary's assets are picked up at once.
fn file(path: &str, request: &HeaderMap) -> Option<Response> {
    let kind = content_type(path)?;
    let file = Assets::get(path)?;
    let etag = format!(
        "\"{}\"",
        file.metadata
            .sha256_hash()
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    nosniff(&mut headers);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return Some((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    Some((headers, file.data.into_owned()).into_response())
}

/// A page: `name` from the assets, with the page headers.
fn page(state: &AppState, name: &str, status: StatusCode, request: &HeaderMap) -> Response {
    let mut response = match file(&format!("pages/{name}"), request) {
        Some(r) => r,
        None => (StatusCode::INTERNAL_SERVER_ERROR, "page missing").into_response(),
    };
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    page_headers(response.headers_mut(), &state.frame_ancestors);
    response
}

/// The page for a path that names nothing: a 404 a person can read.
pub fn missing(state: &AppState, request: &HeaderMap) -> Response {
    page(state, "not-found.html", StatusCode::NOT_FOUND, request)
}

/// GET /assets/{path}: a shared file (scripts, styles, translations,
/// sounds); 404 for anything else.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn asset(Path(path): Path<String>, request: HeaderMap) -> Response {
    // rust-embed holds only what is in the folder; `..` never names a
    // file, but say so plainly rather than rely on it.
    // Pages are served at their own paths, with the page headers.
    let servable =
        !path.starts_with("pages/") && !path.split('/').any(|s| s == ".." || s.is_empty());
    match file(&path, &request).filter(|_| servable) {
        Some(r) => r,
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such asset",
        )
            .into_response(),
    }
}

/// GET /callback/{scenario}: ask for a callback or a chat, wait with the
/// place in the queue, confirm when the agent is ready, chat.
#[tracing::instrument(level = "debug", skip_all, fields(scenario = %scenario))]
pub async fn callback(
    State(state): State<Arc<AppState>>,
    Path(scenario): Path<String>,
    request: HeaderMap,
) -> Response {
    if state.shell.scenario(&scenario).is_err() {
        return missing(&state, &request);
    }
    page(&state, "callback.html", StatusCode::OK, &request)
}

/// GET /book/{scenario}: book a slot of a scheduled scenario.
#[tracing::instrument(level = "debug", skip_all, fields(scenario = %scenario))]
pub async fn book(
    State(state): State<Arc<AppState>>,
    Path(scenario): Path<String>,
    request: HeaderMap,
) -> Response {
    match state.shell.scenario(&scenario) {
        Ok(s) if s.schedule.is_some() => page(&state, "book.html", StatusCode::OK, &request),
        _ => missing(&state, &request),
    }
}

/// GET /booking/{id}: the customer's booking, by the link with its token
/// (the page asks the API with it; without it the page says so).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn booking(
    State(state): State<Arc<AppState>>,
    Path(_id): Path<String>,
    request: HeaderMap,
) -> Response {
    page(&state, "booking.html", StatusCode::OK, &request)
}

/// GET /room/{code}: a video room, one side's page by its link's token
/// (the page asks the room API with it).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn room(
    State(state): State<Arc<AppState>>,
    Path(_code): Path<String>,
    request: HeaderMap,
) -> Response {
    page(&state, "room.html", StatusCode::OK, &request)
}

/// GET /video/{service_id}: the join link of a booked video appointment:
/// the waiting room, then the room.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn waiting_room(
    State(state): State<Arc<AppState>>,
    Path(_id): Path<String>,
    request: HeaderMap,
) -> Response {
    page(&state, "video.html", StatusCode::OK, &request)
}

/// GET /supervisor: the supervisor's board.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn supervisor(State(state): State<Arc<AppState>>, request: HeaderMap) -> Response {
    page(&state, "supervisor.html", StatusCode::OK, &request)
}

/// GET /agent: the agent console.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn agent(State(state): State<Arc<AppState>>, request: HeaderMap) -> Response {
    page(&state, "agent.html", StatusCode::OK, &request)
}

/// The CSP `frame-ancestors` sources: callbackd's own pages (the video
/// room inside the chat and the console) and the `--frame-origin` sites.
pub fn frame_ancestors(origins: &[HeaderValue]) -> String {
    let mut list = vec!["'self'"];
    list.extend(origins.iter().filter_map(|o| o.to_str().ok()));
    list.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_type() {
        for path in Assets::iter() {
            assert!(content_type(&path).is_some(), "{path} would not be served");
        }
    }

    #[test]
    fn frame_ancestors_are_callbackd_and_the_configured_sites() {
        assert_eq!(frame_ancestors(&[]), "'self'");
        let origins = [
            HeaderValue::from_static("https://shop.example"),
            HeaderValue::from_static("https://help.example:8443"),
        ];
        assert_eq!(
            frame_ancestors(&origins),
            "'self' https://shop.example https://help.example:8443"
        );
    }
}
