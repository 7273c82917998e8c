//! Push: how a notification reaches the customer's device or the agent
//! desktop the moment it exists, instead of on the next poll.
//!
//! - [`Delivery`]: one notification for one audience (a device, by its
//!   `_device_notification_id`, or an agent), on the channel that audience
//!   listens to.
//! - [`registry`]: this node's clients. Each has a bounded queue; a client
//!   that cannot keep up is dropped with a reason.
//! - [`bayeux`]: a Bayeux 1.0 (CometD) server, over long-polling and
//!   WebSocket, as GMS serves it on `/genesys/cometd`.
//! - [`plain`]: the same deliveries over a plain WebSocket, for clients
//!   without a CometD library.
//! - [`fanout`]: every node hears every delivery (through Redis pub/sub when
//!   several nodes share a store), so a client may be connected to any node.
//! - [`httpcb`]: `_device_os=httpcb`: the notification is POSTed to the
//!   scenario's URL, with retries.
//! - [`outbound`]: the [`outbound::HttpPost`] trait those POSTs go through;
//!   `http-front` supplies the HTTP client.
//!
//! A notification that matters (agent available, a chat message, an internal
//! notification) is always in the service's outbox first. Once a transport
//! has handed it to its client, the registry reports it as [`Pushed`], and
//! the shell takes it out of the outbox, so retrieve-notifications does not
//! return it a second time. Whatever could not be pushed stays there.
//!
//! This crate speaks the protocols; it does not serve HTTP. `http-front`
//! upgrades the WebSocket and hands its frames here as [`Frame`]s.

pub mod bayeux;
pub mod fanout;
pub mod httpcb;
pub mod outbound;
pub mod plain;
pub mod registry;

use serde::{Deserialize, Serialize};

pub use bayeux::Bayeux;
pub use fanout::{Fanout, Relay};
pub use registry::{Limits, Registry};

/// The channel a device listens on (GMS's `comet_channel`).
pub const DEVICE_CHANNEL: &str = "/_genesys";

/// The channel of supervisors' boards: every service's changes, on a
/// supervisor's credential.
pub const SUPERVISOR_CHANNEL: &str = "/supervisors";

/// The channel of one side of a video room (`<code>/customer`,
/// `<code>/agent`): the room page, proven by that side's room token.
pub fn room_channel(room: &str) -> String {
    format!("/rooms/{room}")
}

/// The channel of one agent desktop.
pub fn agent_channel(agent: &str) -> String {
    format!("/agents/{agent}")
}

/// Who a delivery is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Audience {
    /// The device that owns the service: its `_device_notification_id`,
    /// which the device presents as `gms_user`.
    Device { device: String },
    /// An agent desktop.
    Agent { agent: String },
    /// Every supervisor's board.
    Supervisors,
    /// One side of a video room: `<code>/customer` or `<code>/agent`.
    Room { room: String },
}

impl Audience {
    pub fn channel(&self) -> String {
        match self {
            Audience::Device { .. } => DEVICE_CHANNEL.to_owned(),
            Audience::Agent { agent } => agent_channel(agent),
            Audience::Supervisors => SUPERVISOR_CHANNEL.to_owned(),
            Audience::Room { room } => room_channel(room),
        }
    }
}

/// One notification on its way to one audience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub service_id: String,
    pub audience: Audience,
    pub tag: String,
    /// What the client receives (the Bayeux message's `data`).
    pub data: serde_json::Value,
    /// The outbox notification this carries, if it is kept in an outbox;
    /// `None` for what is never kept (typing, state changes, positions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
}

/// A kept notification that a transport handed to its client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pushed {
    pub service_id: String,
    /// True for the agent outbox, false for the device outbox.
    pub to_agent: bool,
    pub notification: String,
}

impl Delivery {
    pub(crate) fn pushed(&self) -> Option<Pushed> {
        self.notification.as_ref().map(|n| Pushed {
            service_id: self.service_id.clone(),
            to_agent: matches!(self.audience, Audience::Agent { .. }),
            notification: n.clone(),
        })
    }
}

/// A WebSocket frame, as far as push cares. `http-front` maps its socket's
/// messages to and from these.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<Close>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

/// Close codes we send (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure: the client disconnected, or the connection was idle.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A policy was broken: a slow consumer, a protocol error.
    pub const POLICY: u16 = 1008;
    /// The server is full: try later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}
