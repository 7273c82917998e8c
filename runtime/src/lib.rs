//! The callbackd runtime: what drives the pure engine on one node.
//!
//! - [`shell`]: [`Shell`], the only way to change a service: read the
//!   record, apply an event with `engine::machine::apply`, write it back with
//!   compare-and-set, carry out the effects. Beside it run the router, the
//!   timer loop, the sweepers, room opening and outbox clean-up, all stopped
//!   by one shutdown signal ([`Shell::spawn_background`]).
//! - [`positions`]: queue positions pushed to the devices connected here.
//! - [`notices`]: appointment notices: the ICS invite, e-mail over SMTP, SMS.
//! - [`room_maker`]: video rooms' codes, tokens, join links and signed tokens.
//! - [`clock`]: the wall clock, and a clock that follows tokio's (paused) time.
//! - [`cause`]: who caused a request's transitions, for the record's history.
//!
//! This crate knows no HTTP server and has no HTTP stack: `http-front`
//! serves the API on top of it and hands it an outbound HTTP client
//! ([`push::outbound::HttpPost`]) for httpcb notifications and SMS.

pub mod cause;
pub mod clock;
pub mod metered_store;
pub mod metrics;
pub mod notices;
pub mod positions;
pub mod room_maker;
pub mod shell;

pub use shell::{create_guard, CreateRequest, Parts, Shell, ShellError, WebhookSecrets};
