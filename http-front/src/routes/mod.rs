//! HTTP routes, one file per group of commands.

mod admin;
mod agents;
mod bookings;
mod callback;
mod chat;
mod connect;
mod ewt;
mod keys;
mod misc;
mod notifications;
mod office_hours;
mod push;
mod queue_position;
mod schedule;
mod services;
mod stats;
pub mod video;
mod webhooks;

use std::sync::Arc;

use access::Role;
use axum::routing::{get, post, put, MethodRouter};
use axum::Router;

use crate::auth::{self, Need};
use crate::requests::fields::check_id;
use crate::AppState;

/// `name` must be a loaded scenario (400 naming `field` otherwise).
fn loaded_scenario(
    state: &AppState,
    field: &str,
    name: &str,
) -> Result<(), crate::error::AppError> {
    if state.shell.scenarios().get(name).is_none() {
        return Err(crate::error::AppError::field(
            field,
            format!("`{name}` is not a loaded scenario"),
        ));
    }
    Ok(())
}

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Checked by the credential [`auth::gate`].
    Need(Need),
    /// The room API: each side proves itself with its room token.
    RoomToken,
    /// The customer's booking: its link's token proves it.
    BookingToken,
    /// Push: a device by its `gms_user`, an agent by its credential.
    Push,
    /// Anyone (load balancers, the API description).
    Public,
    /// A page or a page's asset, for anyone: what it shows comes from API
    /// calls, each checked as usual.
    Page,
}

/// What a route's request body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    /// GMS's fields: multipart/form-data, urlencoded, or a flat JSON object.
    Form,
    Json,
}

/// One route: what the router serves and what `/openapi.json` says of it,
/// from the one table, so neither can have a route the other lacks.
pub struct Route {
    pub method: axum::http::Method,
    pub path: &'static str,
    pub access: Access,
    pub body: Body,
    pub tag: &'static str,
    pub summary: &'static str,
    /// Query parameters: (name, what it is).
    pub query: &'static [(&'static str, &'static str)],
    handler: fn() -> MethodRouter<Arc<AppState>>,
}

const CLIENT: Access = Access::Need(Need::AtLeast(Role::Client));
const BACKEND: Access = Access::Need(Need::AtLeast(Role::Backend));
const STAFF: Access = Access::Need(Need::Staff);
const SUPERVISOR: Access = Access::Need(Need::AtLeast(Role::Supervisor));
const ADMIN: Access = Access::Need(Need::AtLeast(Role::Admin));

const AVAILABILITY: &[(&str, &str)] = &[
    ("start", "first day (ISO-8601; default now)"),
    ("number-of-days", "days from start"),
    ("end", "last instant (ISO-8601), instead of number-of-days"),
    ("max-time-slots", "at most this many slots"),
];
const QUERY: &[(&str, &str)] = &[
    ("_id", "a service id"),
    (
        "_customer_number",
        "any returned key or user-data key is a condition; `!` negates",
    ),
    (
        "_callback_state",
        "SCHEDULED, QUEUED, ROUTING, PROCESSING or COMPLETED; `!` negates",
    ),
    ("operand", "AND (default) or OR"),
];
const ADMIN_FILTERS: &[(&str, &str)] = &[
    ("target", "a queue"),
    ("service_name", "a scenario"),
    ("start_time", "desired time from (ISO-8601)"),
    ("end_time", "desired time to (ISO-8601)"),
    (
        "states",
        "comma-separated GMS states (default: the active ones)",
    ),
    ("max", "page size (default 100, at most 1000)"),
    ("page", "page number, from 1"),
];

macro_rules! route {
    ($method:ident $path:literal, $access:expr, $body:ident, $tag:literal, $summary:literal, $query:expr, $handler:expr) => {
        Route {
            method: axum::http::Method::$method,
            path: $path,
            access: $access,
            body: Body::$body,
            tag: $tag,
            summary: $summary,
            query: $query,
            handler: || $handler,
        }
    };
}

/// Every route callbackd serves, in the order the API description lists them.
pub fn routes() -> Vec<Route> {
    use axum::routing::delete;
    vec![
        route!(GET "/genesys/1/service/callback", CLIENT, None, "GMS callback", "One service by `_id` (a client); with other conditions, the query across every scenario (a backend)", QUERY, get(callback::query_by_id)),
        route!(POST "/genesys/1/service/callback/{scenario}", CLIENT, Form, "GMS callback", "Create a callback service", &[], post(callback::create)),
        route!(GET "/genesys/1/service/callback/{scenario}", BACKEND, None, "GMS callback", "Query a scenario's services by conditions", QUERY, get(callback::query)),
        route!(GET "/genesys/1/service/callback/{scenario}/availability", CLIENT, None, "GMS callback", "Open slots and seats left (GMS v1)", AVAILABILITY, get(schedule::availability_v1)),
        route!(GET "/genesys/2/service/callback/{scenario}/availability", CLIENT, None, "GMS callback", "Open slots with local times (GMS v2)", &[("start", "first day"), ("end", "last instant"), ("number-of-days", "days from start"), ("max-time-slots", "at most this many"), ("timezone", "IANA zone of localTime"), ("report-busy", "true: full slots too")], get(schedule::availability_v2)),
        route!(DELETE "/genesys/1/service/callback/{scenario}/{id}", CLIENT, None, "GMS callback", "Cancel a service", &[], delete(callback::cancel)),
        route!(PUT "/genesys/1/service/callback/{scenario}/{id}", CLIENT, Form, "GMS callback", "Reschedule (`_new_desired_time`), with the number and user data", &[], put(schedule::reschedule)),
        route!(GET "/genesys/1/service/ewt-for-vq", CLIENT, None, "GMS stats", "Estimated wait per virtual queue (GMS EWT API v1, Genesys Widgets)", &[("name", "comma-separated queues"), ("aqt", "urs, urs2 or stat")], get(ewt::v1)),
        route!(GET "/genesys/2/ewt", CLIENT, None, "GMS stats", "Estimated wait per virtual queue (GMS EWT API v2, mode ewt2)", &[("vq", "comma-separated queues")], get(ewt::v2_default)),
        route!(GET "/genesys/2/ewt/{mode}", CLIENT, None, "GMS stats", "Estimated wait per virtual queue (GMS EWT API v2)", &[("vq", "comma-separated queues")], get(ewt::v2)),
        route!(GET "/genesys/1/service/{id}", CLIENT, None, "GMS calendar", "A scenario's office hours (GMS Calendar Service): open now, the next openings", &[("start", "window start (ISO-8601)"), ("end", "window end"), ("number-of-days", "days from start")], get(office_hours::calendar)),
        route!(POST "/genesys/1/service/{id}/connect", CLIENT, Form, "GMS callback", "The customer confirms: the StartChat dialog", &[], post(connect::connect)),
        route!(POST "/genesys/1/service/{id}/check-queue-position", CLIENT, Form, "GMS callback", "Position, EWT and agent-ready threshold", &[], post(queue_position::check)),
        route!(GET "/genesys/1/service/{id}/check-queue-position", CLIENT, None, "GMS callback", "Position, EWT and agent-ready threshold", &[], get(queue_position::check)),
        route!(POST "/genesys/1/service/{id}/ixn/chat", CLIENT, Form, "GMS chat", "Start the chat", &[], post(chat::start)),
        route!(POST "/genesys/1/service/{id}/ixn/chat/send", CLIENT, Form, "GMS chat", "Send a chat message (`message`)", &[], post(chat::send)),
        route!(POST "/genesys/1/service/{id}/ixn/chat/refresh", CLIENT, Form, "GMS chat", "The transcript from `transcriptPosition`", &[], post(chat::refresh)),
        route!(GET "/genesys/1/service/{id}/ixn/chat/refresh", CLIENT, None, "GMS chat", "The transcript from `transcriptPosition`", &[("transcriptPosition", "first row, from 1")], get(chat::refresh)),
        route!(POST "/genesys/1/service/{id}/ixn/chat/disconnect", CLIENT, Form, "GMS chat", "The customer leaves the chat", &[], post(chat::disconnect)),
        route!(POST "/genesys/1/service/{id}/ixn/chat/startTyping", CLIENT, Form, "GMS chat", "The customer is typing", &[], post(chat::start_typing)),
        route!(POST "/genesys/1/service/{id}/ixn/chat/stopTyping", CLIENT, Form, "GMS chat", "The customer stopped typing", &[], post(chat::stop_typing)),
        route!(POST "/genesys/1/service/{id}/internal-notification", CLIENT, Form, "GMS notifications", "Agent desktop to device: `_display_message`, `_internal_message`", &[], post(notifications::internal)),
        route!(POST "/genesys/1/service/{id}/retrieve-notifications", CLIENT, Form, "GMS notifications", "The device's outbox, emptied", &[], post(notifications::retrieve)),
        route!(GET "/genesys/1/service/{id}/retrieve-notifications", CLIENT, None, "GMS notifications", "The device's outbox, emptied", &[], get(notifications::retrieve)),
        route!(POST "/genesys/1/service/{id}/agent-notification", CLIENT, Form, "GMS notifications", "Device to agent desktop", &[], post(notifications::to_agent)),
        route!(POST "/genesys/1/service/{id}/retrieve-agent-notifications", STAFF, Form, "GMS notifications", "The agent outbox, emptied", &[], post(notifications::retrieve_agent)),
        route!(GET "/genesys/1/service/{id}/retrieve-agent-notifications", STAFF, None, "GMS notifications", "The agent outbox, emptied", &[], get(notifications::retrieve_agent)),
        route!(POST "/genesys/1/service/{id}/ixn/video", CLIENT, Form, "Video", "The customer asks for video from the chat", &[], post(video::start_by_customer)),
        route!(GET "/genesys/1/service/{id}/ixn/video", CLIENT, None, "Video", "The customer's view of the room", &[], get(video::show_to_customer)),
        route!(GET "/genesys/1/admin/callback/queues", SUPERVISOR, None, "Operator", "Services by queue, time window and state, paged", ADMIN_FILTERS, get(admin::queues)),
        route!(GET "/genesys/1/admin/callback/watermarks", SUPERVISOR, None, "Operator", "Active services per queue", &[("service_name", "a scenario (repeatable)")], get(admin::watermarks)),
        route!(POST "/genesys/1/admin/callback/cancel", SUPERVISOR, Json, "Operator", "Bulk cancel: `{\"ids\",\"reason\"}`", &[], post(admin::cancel)),
        route!(POST "/genesys/1/admin/callback/reportcancelled", SUPERVISOR, Json, "Operator", "Cancelled services as CSV", &[], post(admin::report_cancelled)),
        route!(GET "/genesys/1/admin/callback/export", SUPERVISOR, None, "Operator", "Services as CSV", ADMIN_FILTERS, get(admin::export)),
        route!(GET "/api/v1/stats/hours", SUPERVISOR, None, "Operator", "Services created, answered and completed per hour, with the average wait", &[("hours", "how many hours, 1 to 48 (default 12)"), ("service_name", "a scenario")], get(stats::hours)),
        route!(GET "/api/v1/agents", SUPERVISOR, None, "Agents", "Every agent with its state and load", &[], get(admin::agents)),
        route!(PUT "/api/v1/agents/{agent_id}", SUPERVISOR, Json, "Agents", "Create or update an agent's profile", &[], put(agents::upsert)),
        route!(GET "/api/v1/agents/{agent_id}", STAFF, None, "Agents", "An agent's profile, readiness and load", &[], get(agents::show)),
        route!(POST "/api/v1/agents/{agent_id}/ready", STAFF, None, "Agents", "The agent is ready", &[], post(agents::ready)),
        route!(POST "/api/v1/agents/{agent_id}/not-ready", STAFF, None, "Agents", "The agent is not ready", &[], post(agents::not_ready)),
        route!(POST "/api/v1/agents/{agent_id}/keys", ADMIN, Json, "Access", "Mint a key for the agent (answered once)", &[], post(keys::mint)),
        route!(GET "/api/v1/agents/{agent_id}/keys", ADMIN, None, "Access", "The agent's keys, by name", &[], get(keys::list)),
        route!(DELETE "/api/v1/agents/{agent_id}/keys/{name}", ADMIN, None, "Access", "Revoke a key on every node at once", &[], delete(keys::revoke)),
        route!(GET "/metrics", SUPERVISOR, None, "Operator", "Prometheus metrics", &[], get(crate::metrics::render)),
        route!(GET "/api/v1/webhooks/deliveries", SUPERVISOR, None, "Webhooks", "The recent webhook attempts of every node", &[], get(webhooks::deliveries)),
        route!(POST "/api/v1/services/{id}/webhooks/retry", SUPERVISOR, None, "Webhooks", "Put a service's given-up webhook events back in line", &[], post(webhooks::retry)),
        route!(GET "/api/v1/services/{id}", STAFF, None, "Services", "The full record, with its history", &[], get(services::show)),
        route!(POST "/api/v1/services/{id}/complete", STAFF, Json, "Services", "Complete a connected service", &[], post(services::complete)),
        route!(POST "/api/v1/services/{id}/move", SUPERVISOR, Json, "Operator", "Move a waiting service to another queue or agent", &[], post(admin::move_service)),
        route!(POST "/api/v1/services/{id}/accept", STAFF, Json, "Services", "The offered agent accepts a previewed service (`{\"agent_id\"}` for a supervisor or when open)", &[], post(services::accept)),
        route!(POST "/api/v1/services/{id}/reject", STAFF, Json, "Services", "The offered agent rejects a previewed service: back to its queue for another agent", &[], post(services::reject)),
        route!(POST "/api/v1/services/{id}/requeue", SUPERVISOR, None, "Operator", "Put a routed or connected service back in its queue", &[], post(admin::requeue)),
        route!(POST "/api/v1/services/{id}/chat", STAFF, Json, "Services", "The agent's chat message", &[], post(services::chat)),
        route!(POST "/api/v1/services/{id}/chat/typing", STAFF, Json, "Services", "The agent is typing", &[], post(services::typing)),
        route!(POST "/api/v1/services/{id}/video", STAFF, Json, "Video", "The agent asks for video", &[], post(video::start_by_agent)),
        route!(GET "/api/v1/rooms/{code}", Access::RoomToken, None, "Video", "A room as one side sees it", &[("token", "the side's room token (or Authorization: Bearer)")], get(video::show_room)),
        route!(POST "/api/v1/rooms/{code}/signal", Access::RoomToken, Json, "Video", "SDP or ICE for the other side", &[("token", "the side's room token")], post(video::signal)),
        route!(POST "/api/v1/rooms/{code}/survey", Access::RoomToken, Json, "Video", "The customer's survey answer", &[("token", "the side's room token")], post(video::survey)),
        route!(POST "/api/v1/rooms/{code}/{action}", Access::RoomToken, None, "Video", "accept, decline, join or leave", &[("token", "the side's room token")], post(video::room_action)),
        route!(GET "/api/v1/bookings/{id}", Access::BookingToken, None, "Bookings", "The customer's booking, by its link", &[("token", "the booking's link token")], get(bookings::show)),
        route!(PUT "/api/v1/bookings/{id}", Access::BookingToken, Json, "Bookings", "Move the booking to the open slot holding `_new_desired_time`", &[("token", "the booking's link token")], put(bookings::move_booking)),
        route!(DELETE "/api/v1/bookings/{id}", Access::BookingToken, None, "Bookings", "Cancel the booking; the seat is free again", &[("token", "the booking's link token")], delete(bookings::cancel)),
        route!(GET "/api/v1/bookings/{id}/invite.ics", Access::BookingToken, None, "Bookings", "The booking's invite (ICS), to add to a calendar", &[("token", "the booking's link token")], get(bookings::invite)),
        route!(GET "/api/v1/scenarios", CLIENT, None, "GMS callback", "The scenarios this server serves", &[], get(misc::scenarios)),
        route!(GET "/healthz", Access::Public, None, "Operator", "Whether this node serves (and reaches its store)", &[], get(misc::healthz)),
        route!(GET "/openapi.json", Access::Public, None, "Operator", "This API description", &[], get(crate::openapi::serve)),
        route!(GET "/callback/{scenario}", Access::Page, None, "Pages", "The customer's page: ask for a callback or a chat, wait, confirm, chat", &[("lang", "a language (en, ar); default the browser's")], get(crate::pages::callback)),
        route!(GET "/book/{scenario}", Access::Page, None, "Pages", "Book a slot: open times in the viewer's zone, details, confirmation with invite and manage link", &[("lang", "a language (en, ar)")], get(crate::pages::book)),
        route!(GET "/booking/{id}", Access::Page, None, "Pages", "The customer's booking by its link: see, move, cancel, add to calendar", &[("token", "the booking's link token"), ("lang", "a language (en, ar)")], get(crate::pages::booking)),
        route!(GET "/room/{code}", Access::Page, None, "Pages", "A video room: ring, camera and microphone check, the WebRTC call through the relay, the survey", &[("token", "the side's room token"), ("lang", "a language (en, ar)")], get(crate::pages::room)),
        route!(GET "/video/{id}", Access::Page, None, "Pages", "A booked video appointment's join link: the waiting room until the advisor takes it, then the room", &[("lang", "a language (en, ar)")], get(crate::pages::waiting_room)),
        route!(GET "/supervisor", Access::Page, None, "Pages", "The supervisor's board: live queues, agents, services with filters, timeline, cancel, CSV", &[("lang", "a language (en, ar)")], get(crate::pages::supervisor)),
        route!(GET "/agent", Access::Page, None, "Pages", "The agent console: readiness, offers, services in tabs, chat, notify, complete", &[("lang", "a language (en, ar)")], get(crate::pages::agent)),
        route!(GET "/assets/{path}", Access::Page, None, "Pages", "The pages' scripts, styles, translations and sounds", &[], get(crate::pages::asset)),
        route!(POST "/genesys/cometd", Access::Push, Json, "Push", "CometD (Bayeux) long-polling batch", &[("gms_user", "the device"), ("agent_id", "the agent desktop")], post(push::long_poll)),
        route!(GET "/genesys/cometd", Access::Push, None, "Push", "CometD (Bayeux) WebSocket", &[("gms_user", "the device"), ("agent_id", "the agent desktop")], get(push::cometd_socket)),
        route!(POST "/genesys/cometd/", Access::Push, Json, "Push", "CometD long-polling (the rest of a session's batches)", &[], post(push::long_poll)),
        route!(POST "/genesys/cometd/{kind}", Access::Push, Json, "Push", "CometD long-polling, by message type (handshake, connect)", &[], post(push::long_poll)),
        route!(GET "/api/v1/push/ws", Access::Push, None, "Push", "The plain WebSocket", &[("gms_user", "the device"), ("agent_id", "the agent desktop")], get(push::plain_socket)),
    ]
}

/// Whether a route is a push endpoint (outside the API's request timeout).
fn is_push(route: &Route) -> bool {
    matches!(route.access, Access::Push)
}

/// The router path of a table path: `{kind}` of CometD's long-polling
/// takes the rest of the path.
fn router_path(path: &'static str) -> &'static str {
    match path {
        "/genesys/cometd/{kind}" => "/genesys/cometd/{*kind}",
        "/assets/{path}" => "/assets/{*path}",
        other => other,
    }
}

/// The routes of the table that `keep` picks, each behind what it needs.
fn build(state: &Arc<AppState>, keep: impl Fn(&Route) -> bool) -> Router<Arc<AppState>> {
    let gate = |need: Need| axum::middleware::from_fn_with_state((state.clone(), need), auth::gate);
    let mut router = Router::new();
    for route in routes().into_iter().filter(|r| keep(r)) {
        let method_router = (route.handler)();
        let method_router = match route.access {
            Access::Need(need) => method_router.route_layer(gate(need)),
            Access::RoomToken
            | Access::BookingToken
            | Access::Push
            | Access::Public
            | Access::Page => method_router,
        };
        // The same path with another method merges into one route.
        router = router.route(router_path(route.path), method_router);
    }
    router
}

/// Every API route of [`routes`], each behind what it needs of its caller
/// (see [`crate::auth`]): the GMS customer calls need a `client` (or
/// better), the queries by properties a `backend`, the agent API an agent
/// acting on its own things or a supervisor, profiles and the operator's
/// API a supervisor, keys an admin. The room API proves each side with its
/// room token instead, and `/healthz` and `/openapi.json` are open.
pub fn router(state: Arc<AppState>) -> Router {
    build(&state, |r| !is_push(r))
        .fallback(misc::not_found)
        .method_not_allowed_fallback(misc::method_not_allowed)
        .with_state(state)
}

/// The push endpoints of [`routes`]. Kept apart from the API so they
/// escape its request timeout: a held connect and a WebSocket last by
/// design.
pub fn push_router(state: Arc<AppState>) -> Router {
    build(&state, is_push)
        .method_not_allowed_fallback(misc::method_not_allowed)
        .with_state(state)
}
