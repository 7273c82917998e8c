//! HTTP routes, one file per group of commands.

mod admin;
mod agents;
mod callback;
mod chat;
mod connect;
mod keys;
mod misc;
mod notifications;
mod push;
mod queue_position;
mod schedule;
mod services;
pub mod video;
mod webhooks;

use std::sync::Arc;

use access::Role;
use axum::routing::{get, post, put, MethodRouter};
use axum::Router;

use crate::auth::{self, Need};
use crate::requests::fields::check_id;
use crate::AppState;

/// Every API route, grouped by what it needs of its caller (see
/// [`crate::auth`]): the GMS customer calls need a `client` (or better),
/// the queries by properties a `backend`, the agent API an agent acting on
/// its own things or a supervisor, profiles and the operator's API
/// (`/genesys/1/admin/…`, the agent list, move, requeue) a supervisor,
/// keys an admin.
/// The room API proves each side with its room token instead, and
/// `/healthz` is for load balancers.
pub fn router(state: Arc<AppState>) -> Router {
    let gate = |need: Need| axum::middleware::from_fn_with_state((state.clone(), need), auth::gate);
    let client =
        |mr: MethodRouter<Arc<AppState>>| mr.route_layer(gate(Need::AtLeast(Role::Client)));
    let backend =
        |mr: MethodRouter<Arc<AppState>>| mr.route_layer(gate(Need::AtLeast(Role::Backend)));
    let staff = |mr: MethodRouter<Arc<AppState>>| mr.route_layer(gate(Need::Staff));
    let supervisor =
        |mr: MethodRouter<Arc<AppState>>| mr.route_layer(gate(Need::AtLeast(Role::Supervisor)));
    let admin = |mr: MethodRouter<Arc<AppState>>| mr.route_layer(gate(Need::AtLeast(Role::Admin)));
    Router::new()
        .route(
            "/genesys/1/service/callback",
            client(get(callback::query_by_id)),
        )
        .route(
            "/genesys/1/service/callback/{scenario}",
            client(post(callback::create)).merge(backend(get(callback::query))),
        )
        .route(
            "/genesys/1/service/callback/{scenario}/availability",
            client(get(schedule::availability_v1)),
        )
        .route(
            "/genesys/2/service/callback/{scenario}/availability",
            client(get(schedule::availability_v2)),
        )
        .route(
            "/genesys/1/service/callback/{scenario}/{id}",
            client(axum::routing::delete(callback::cancel).put(schedule::reschedule)),
        )
        .route(
            "/genesys/1/service/{id}/connect",
            client(post(connect::connect)),
        )
        .route(
            "/genesys/1/service/{id}/check-queue-position",
            client(post(queue_position::check).get(queue_position::check)),
        )
        .route(
            "/genesys/1/service/{id}/ixn/chat",
            client(post(chat::start)),
        )
        .route(
            "/genesys/1/service/{id}/ixn/chat/send",
            client(post(chat::send)),
        )
        .route(
            "/genesys/1/service/{id}/ixn/chat/refresh",
            client(post(chat::refresh).get(chat::refresh)),
        )
        .route(
            "/genesys/1/service/{id}/ixn/chat/disconnect",
            client(post(chat::disconnect)),
        )
        .route(
            "/genesys/1/service/{id}/ixn/chat/startTyping",
            client(post(chat::start_typing)),
        )
        .route(
            "/genesys/1/service/{id}/ixn/chat/stopTyping",
            client(post(chat::stop_typing)),
        )
        .route(
            "/genesys/1/service/{id}/internal-notification",
            client(post(notifications::internal)),
        )
        .route(
            "/genesys/1/service/{id}/retrieve-notifications",
            client(post(notifications::retrieve).get(notifications::retrieve)),
        )
        .route(
            "/genesys/1/service/{id}/agent-notification",
            client(post(notifications::to_agent)),
        )
        .route(
            "/genesys/1/service/{id}/retrieve-agent-notifications",
            staff(post(notifications::retrieve_agent).get(notifications::retrieve_agent)),
        )
        .route(
            "/genesys/1/service/{id}/ixn/video",
            client(post(video::start_by_customer).get(video::show_to_customer)),
        )
        .route(
            "/genesys/1/admin/callback/queues",
            supervisor(get(admin::queues)),
        )
        .route(
            "/genesys/1/admin/callback/watermarks",
            supervisor(get(admin::watermarks)),
        )
        .route(
            "/genesys/1/admin/callback/cancel",
            supervisor(post(admin::cancel)),
        )
        .route(
            "/genesys/1/admin/callback/reportcancelled",
            supervisor(post(admin::report_cancelled)),
        )
        .route(
            "/genesys/1/admin/callback/export",
            supervisor(get(admin::export)),
        )
        .route("/api/v1/agents", supervisor(get(admin::agents)))
        .route(
            "/api/v1/agents/{agent_id}",
            supervisor(put(agents::upsert)).merge(staff(get(agents::show))),
        )
        .route(
            "/api/v1/agents/{agent_id}/ready",
            staff(post(agents::ready)),
        )
        .route(
            "/api/v1/agents/{agent_id}/not-ready",
            staff(post(agents::not_ready)),
        )
        .route(
            "/api/v1/agents/{agent_id}/keys",
            admin(post(keys::mint).get(keys::list)),
        )
        .route(
            "/api/v1/agents/{agent_id}/keys/{name}",
            admin(axum::routing::delete(keys::revoke)),
        )
        .route("/metrics", supervisor(get(crate::metrics::render)))
        .route(
            "/api/v1/webhooks/deliveries",
            supervisor(get(webhooks::deliveries)),
        )
        .route(
            "/api/v1/services/{id}/webhooks/retry",
            supervisor(post(webhooks::retry)),
        )
        .route("/api/v1/services/{id}", staff(get(services::show)))
        .route(
            "/api/v1/services/{id}/complete",
            staff(post(services::complete)),
        )
        .route(
            "/api/v1/services/{id}/move",
            supervisor(post(admin::move_service)),
        )
        .route(
            "/api/v1/services/{id}/requeue",
            supervisor(post(admin::requeue)),
        )
        .route(
            "/api/v1/services/{id}/accept",
            staff(post(services::accept)),
        )
        .route(
            "/api/v1/services/{id}/reject",
            staff(post(services::reject)),
        )
        .route("/api/v1/services/{id}/chat", staff(post(services::chat)))
        .route(
            "/api/v1/services/{id}/chat/typing",
            staff(post(services::typing)),
        )
        .route(
            "/api/v1/services/{id}/video",
            staff(post(video::start_by_agent)),
        )
        .route("/api/v1/rooms/{code}", get(video::show_room))
        .route("/api/v1/rooms/{code}/signal", post(video::signal))
        .route("/api/v1/rooms/{code}/survey", post(video::survey))
        .route("/api/v1/rooms/{code}/{action}", post(video::room_action))
        .route("/api/v1/scenarios", client(get(misc::scenarios)))
        .route("/healthz", get(misc::healthz))
        .fallback(misc::not_found)
        .method_not_allowed_fallback(misc::method_not_allowed)
        .with_state(state)
}

/// The push endpoints. Kept apart from the API so they escape its request
/// timeout: a held connect and a WebSocket last by design.
pub fn push_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/genesys/cometd",
            post(push::long_poll).get(push::cometd_socket),
        )
        // CometD's long-polling appends the message type (`/handshake`,
        // `/connect`), and sends the rest (subscribe, batches) to `.../`.
        .route("/genesys/cometd/", post(push::long_poll))
        .route("/genesys/cometd/{*kind}", post(push::long_poll))
        .route("/api/v1/push/ws", get(push::plain_socket))
        .method_not_allowed_fallback(misc::method_not_allowed)
        .with_state(state)
}
