//! Push tests: Bayeux over long-polling and WebSocket, and the plain WebSocket,
//! from Rust clients against the real server on 127.0.0.1:0.

mod access;
mod agent_channel;
mod bayeux_long_poll;
mod bayeux_websocket;
mod binding;
mod chat;
mod client;
mod limits;
mod outbox;
mod plain_ws;
mod video;
