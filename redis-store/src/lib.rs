//! The Redis store: service records, queues, agents and timers in Redis, so
//! that they survive a restart and several callbackd nodes can share them.
//!
//! Every call is bounded by a timeout; a Redis that is down or slow gives
//! `StoreError::Unavailable`, which the HTTP front answers with 503.
//!
//! # Layout
//!
//! - `config`: [`RedisConfig`], parsed from `--store` (`redis://…`,
//!   `redis+cluster://…`, `?namespace=`), and [`ConfigError`].
//! - `store`: [`RedisStore`] and its `engine::store::Store` implementation:
//!   reads are plain (pipelined) commands, every write is one script.
//! - `pubsub`: [`RedisStore::timer_wakeups`] (the namespace's wake channel)
//!   and [`RedisStore::publish`] / [`RedisStore::messages`] for other
//!   crates' channels, such as http-front's push relay.
//! - `keys`: every key and channel name, built from the `{<namespace>}:`
//!   prefix in one place.
//! - `values`: what the keys hold: the compressed record, the index entry a
//!   write derives from it, queue and timer members.
//! - `scripts`: the Lua scripts; every write is one of them (a create that
//!   the create script hands on, having written nothing, is then a put).
//! - `conn`: one connection type over a single server (a `ConnectionManager`,
//!   which reconnects by itself) or a Redis Cluster.
//! - [`testing`] (feature `testing`): throw-away `redis-server` processes
//!   (one server, or a cluster) on free ports for tests.
//!
//! The key layout is in docs/storage.md ("Redis key layout"). In short,
//! every key starts with `{<namespace>}:`, so one deployment's data shares a
//! hash slot and each script stays in one slot on Redis Cluster.

mod config;
mod conn;
mod keys;
mod pubsub;
mod scripts;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod values;

// The modules are private; what other crates use is re-exported here, at
// the paths it always had (`redis_store::RedisStore`, …).
pub use config::{ConfigError, RedisConfig, DEFAULT_OP_TIMEOUT};
pub use pubsub::Subscription;
pub use store::RedisStore;
