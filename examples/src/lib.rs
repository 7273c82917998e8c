//! Simulated GMS clients for callbackd: a customer's mobile app and an agent
//! desktop. The logic lives here so a test can drive both against a server
//! and check what they saw; `src/bin/` holds thin command lines.
//!
//! ```text
//! cargo run -p examples --bin agent-desktop -- --server http://127.0.0.1:8080 --agent alice
//! cargo run -p examples --bin mobile-app -- --server http://127.0.0.1:8080 --scenario chat-delay
//! ```

mod api;

pub mod agent_desktop;
pub mod bench;
pub mod load;
pub mod mobile_app;

pub use api::TranscriptRow;
