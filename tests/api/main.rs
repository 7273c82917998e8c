//! Black-box API tests: one binary, the real server on 127.0.0.1:0.

mod access;
mod admin;
mod bad_inputs;
mod booking;
mod booking_mail;
mod chat_immediate;
mod cors;
mod encodings;
mod hostile;
mod httpcb;
mod metrics;
mod on_redis;
mod positions;
mod preview;
mod queries;
mod queue_positions;
mod request_id;
mod seed_flow;
mod simulators;
mod throttling;
mod timeouts;
mod tls;
mod video;
mod webhooks;
