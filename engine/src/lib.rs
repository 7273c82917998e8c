//! The callbackd engine: the pure core of callback orchestration.
//!
//! - [`scenario`]: admin-written TOML scenarios, loaded and validated.
//! - [`record`]: the persisted, versioned service record.
//! - [`machine`]: the statig state machine; [`machine::apply`] is every
//!   transition, a pure function of (record, event, now).
//! - [`schedule`]: business hours and the slots of booked callbacks.
//! - [`routing`]: skill expressions and the matching of services to agents.
//! - [`stats`]: rolling queue statistics for the estimated wait time.
//! - [`store`]: the `Store` trait and the embedded in-memory store.
//! - [`video`]: video legs, rooms (call sessions) and the `[_video]` table.
//! - [`clock`]: where "now" comes from.
//! - [`pii`]: personal data masked for logs.
//! - [`small_map`]: the sorted-`Vec` map a record keeps its user data and
//!   timers in.
//! - [`rfc3339`]: a record's timestamps in JSON, as chrono writes them,
//!   without chrono's `fmt` and parser on the hot path.
//!
//! The engine does no I/O: no HTTP, no sockets, no files but the scenario
//! directory it is asked to read at start-up.

pub mod clock;
pub mod machine;
pub mod phone;
pub mod pii;
pub mod record;
pub mod rfc3339;
pub mod routing;
pub mod scenario;
pub mod schedule;
pub mod small_map;
pub mod stats;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod video;
pub mod webhook;
