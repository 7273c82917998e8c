//! Request bodies and parameters that have rules, each parsed once into a
//! type before a handler acts on it. Every error names its field, with the
//! status and code of [`AppError`](crate::error::AppError).
//!
//! - [`fields`]: the rules many fields share (ids, bounded text, times, zones).
//! - [`callback`]: create and reschedule.
//! - [`routing`]: the seed's `routingData`.
//! - [`room`]: the room token.
//! - [`agent`]: an agent's profile.

pub mod agent;
pub mod callback;
pub mod fields;
pub mod room;
pub mod routing;
