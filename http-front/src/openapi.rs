//! `GET /openapi.json`: an OpenAPI 3.1 description of every route, made
//! from the route table the router is built from ([`crate::routes::routes`]),
//! so the description cannot lack a route the server serves.
//!
//! GMS's calls take their fields as multipart/form-data (as the seed sends
//! them), urlencoded or a flat JSON object, and most answers are GMS's
//! free-form objects: the description says so rather than inventing
//! schemas; the error shape, the credentials and every parameter are exact.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::auth::Need;
use crate::routes::{routes, Access, Body, Route};

/// GET /openapi.json
pub async fn serve() -> Response {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let text = DOCUMENT.get_or_init(|| document().to_string());
    ([(header::CONTENT_TYPE, "application/json")], text.clone()).into_response()
}

/// The whole description.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in routes() {
        let item = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        item[route.method.as_str().to_ascii_lowercase()] = operation(&route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "callbackd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Callback orchestration with the GMS Callback API: services, chat, video rooms, push, bookings, and the operator's API.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["message", "exception"],
                    "properties": {
                        "message": {"type": "string", "description": "What is wrong, naming the field"},
                        "exception": {"type": "string", "description": "A stable code, e.g. MISSING_PARAMETER"},
                    },
                },
                "GmsFields": {
                    "type": "object",
                    "description": "GMS fields (`_customer_number`, `_desired_time`, …); any other field is user data",
                    "additionalProperties": {"type": "string"},
                },
            },
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic", "description": "A credential's name and secret"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "`name:secret`, or a minted key `cbk_<id>_<secret>`"},
                "bearer": {"type": "http", "scheme": "bearer", "description": "`name:secret`, a minted key, or a JWT from the identity provider"},
                "roomToken": {"type": "apiKey", "in": "query", "name": "token", "description": "A side's room token (or `Authorization: Bearer <token>`)"},
                "bookingToken": {"type": "apiKey", "in": "query", "name": "token", "description": "The token of the customer's booking link (`_manage_url`), or `Authorization: Bearer <token>`"},
            },
        },
    })
}

fn operation(route: &Route) -> Value {
    let mut parameters: Vec<Value> = path_parameters(route.path)
        .map(|name| {
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
        })
        .collect();
    parameters.extend(route.query.iter().map(|(name, what)| {
        json!({"name": name, "in": "query", "required": false, "description": what, "schema": {"type": "string"}})
    }));
    let mut op = json!({
        "operationId": operation_id(route),
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": parameters,
        "responses": responses(route),
    });
    if let Some(body) = request_body(route.body) {
        op["requestBody"] = body;
    }
    match route.access {
        Access::Need(need) => {
            op["security"] = json!([{"basic": []}, {"apiKey": []}, {"bearer": []}]);
            op["description"] = json!(format!(
                "Needs {} when callbackd checks callers.",
                match need {
                    Need::AtLeast(role) => format!("role `{role}` or above"),
                    Need::Staff =>
                        "an agent acting on its own services, or a supervisor".to_owned(),
                }
            ));
        }
        Access::RoomToken => op["security"] = json!([{"roomToken": []}, {"bearer": []}]),
        Access::BookingToken => op["security"] = json!([{"bookingToken": []}]),
        Access::Push => {
            op["description"] = json!("A device connects by its `gms_user`; an agent desktop by `agent_id` with that agent's credential (headers, the handshake's `ext`, or the plain WebSocket's first frame).");
        }
        Access::Public | Access::Page => op["security"] = json!([]),
    }
    op
}

/// `{name}` segments of a path, in order.
fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

/// A stable, unique id: the method and the path's words.
fn operation_id(route: &Route) -> String {
    let words: Vec<String> = route
        .path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    // CometD's `/genesys/cometd/` differs from `/genesys/cometd` only by its slash.
    let slash = if route.path.ends_with('/') {
        "_batch"
    } else {
        ""
    };
    format!(
        "{}_{}{slash}",
        route.method.as_str().to_ascii_lowercase(),
        words.join("_")
    )
}

fn request_body(body: Body) -> Option<Value> {
    let fields = json!({"$ref": "#/components/schemas/GmsFields"});
    match body {
        Body::None => None,
        Body::Form => Some(json!({
            "required": false,
            "content": {
                "multipart/form-data": {"schema": fields},
                "application/x-www-form-urlencoded": {"schema": fields},
                "application/json": {"schema": fields},
            },
        })),
        Body::Json => Some(json!({
            "required": false,
            "content": {"application/json": {"schema": {"type": "object"}}},
        })),
    }
}

fn responses(route: &Route) -> Value {
    let error = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let with = |description: &str| {
        let mut e = error.clone();
        e["description"] = json!(description);
        e
    };
    let ok = match (route.path, &route.access) {
        ("/metrics", _) => {
            json!({"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}})
        }
        (p, _) if p.ends_with("/invite.ics") => {
            json!({"description": "The invite (RFC 5545)", "content": {"text/calendar": {"schema": {"type": "string"}}}})
        }
        (p, _) if p.ends_with("/export") || p.ends_with("/reportcancelled") => {
            json!({"description": "CSV, with a header row", "content": {"text/csv": {"schema": {"type": "string"}}}})
        }
        ("/assets/{path}", _) => {
            json!({"description": "The file (by its type)", "content": {"*/*": {"schema": {"type": "string"}}}})
        }
        (_, Access::Page) => {
            json!({"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}})
        }
        (_, Access::Push) if route.method == axum::http::Method::GET => {
            json!({"description": "Switching to the WebSocket protocol (101); 200 is never answered"})
        }
        _ => json!({"description": "OK", "content": {"application/json": {"schema": {}}}}),
    };
    let mut out = json!({
        "200": ok,
        "400": with("Bad input; the message names the field"),
        "404": with("No such service, scenario, agent or room"),
        "429": with("Over a rate limit or a scenario's throttle (Retry-After)"),
        "503": with("The store does not answer, or the node is busy"),
    });
    if matches!(
        route.access,
        Access::Need(_) | Access::RoomToken | Access::BookingToken | Access::Push
    ) {
        out["401"] = with("No credential, or a wrong one (WWW-Authenticate)");
        out["403"] = with("The credential may not do this");
    }
    if route.method != axum::http::Method::GET {
        out["409"] = with("The service's state does not allow it");
    }
    out
}
