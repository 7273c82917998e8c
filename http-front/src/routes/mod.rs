//! HTTP routes, one file per group of commands.

mod agents;
mod callback;
mod chat;
mod connect;
mod misc;
mod notifications;
mod push;
mod queue_position;
mod schedule;
mod services;
pub mod video;

use std::sync::Arc;

use axum::routing::{get, post, put};
use axum::Router;

use crate::requests::fields::check_id;
use crate::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/genesys/1/service/callback", get(callback::query_by_id))
        .route(
            "/genesys/1/service/callback/{scenario}",
            post(callback::create).get(callback::query),
        )
        .route(
            "/genesys/1/service/callback/{scenario}/availability",
            get(schedule::availability_v1),
        )
        .route(
            "/genesys/2/service/callback/{scenario}/availability",
            get(schedule::availability_v2),
        )
        .route(
            "/genesys/1/service/callback/{scenario}/{id}",
            axum::routing::delete(callback::cancel).put(schedule::reschedule),
        )
        .route("/genesys/1/service/{id}/connect", post(connect::connect))
        .route(
            "/genesys/1/service/{id}/check-queue-position",
            post(queue_position::check).get(queue_position::check),
        )
        .route("/genesys/1/service/{id}/ixn/chat", post(chat::start))
        .route("/genesys/1/service/{id}/ixn/chat/send", post(chat::send))
        .route(
            "/genesys/1/service/{id}/ixn/chat/refresh",
            post(chat::refresh).get(chat::refresh),
        )
        .route(
            "/genesys/1/service/{id}/ixn/chat/disconnect",
            post(chat::disconnect),
        )
        .route(
            "/genesys/1/service/{id}/ixn/chat/startTyping",
            post(chat::start_typing),
        )
        .route(
            "/genesys/1/service/{id}/ixn/chat/stopTyping",
            post(chat::stop_typing),
        )
        .route(
            "/genesys/1/service/{id}/internal-notification",
            post(notifications::internal),
        )
        .route(
            "/genesys/1/service/{id}/retrieve-notifications",
            post(notifications::retrieve).get(notifications::retrieve),
        )
        .route(
            "/genesys/1/service/{id}/agent-notification",
            post(notifications::to_agent),
        )
        .route(
            "/genesys/1/service/{id}/retrieve-agent-notifications",
            post(notifications::retrieve_agent).get(notifications::retrieve_agent),
        )
        .route(
            "/api/v1/agents/{agent_id}",
            put(agents::upsert).get(agents::show),
        )
        .route("/api/v1/agents/{agent_id}/ready", post(agents::ready))
        .route(
            "/api/v1/agents/{agent_id}/not-ready",
            post(agents::not_ready),
        )
        .route("/api/v1/services/{id}", get(services::show))
        .route("/api/v1/services/{id}/complete", post(services::complete))
        .route("/api/v1/services/{id}/chat", post(services::chat))
        .route("/api/v1/services/{id}/chat/typing", post(services::typing))
        .route(
            "/genesys/1/service/{id}/ixn/video",
            post(video::start_by_customer).get(video::show_to_customer),
        )
        .route("/api/v1/services/{id}/video", post(video::start_by_agent))
        .route("/api/v1/rooms/{code}", get(video::show_room))
        .route("/api/v1/rooms/{code}/signal", post(video::signal))
        .route("/api/v1/rooms/{code}/survey", post(video::survey))
        .route("/api/v1/rooms/{code}/{action}", post(video::room_action))
        .route("/api/v1/scenarios", get(misc::scenarios))
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
