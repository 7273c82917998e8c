//! The persisted service record: our own versioned type, never statig's serde output.
//!
//! A record is everything the engine knows about one service. The store keeps
//! it as one value and derives every index (customer, state, scenario, queue
//! membership, agent load, timers) from it, so one write is one transition.

use std::collections::BTreeMap;

use crate::small_map::SmallMap;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Bumped when the record layout changes; readers refuse what they don't know.
/// Schema 2 added bookings. Only a record with a booking is written as 2, so
/// a node from before bookings (sharing a Redis during an upgrade) refuses it
/// instead of writing it back without its booking and leaking its seat.
/// Schema 3 added video legs and preferred agents; like bookings, only a
/// record that has one is written as 3. Schema 4 added the webhook outbox
/// (and its timer); only a record that has webhook events is written as 4.
/// Schema 5 added agent preview (an offer waiting for the agent's answer,
/// the rejects and the agents who declined); only a record that has one of
/// them is written as 5, so an older node never routes it to a decliner.
/// Schema 6 added URS routes (the ticket's targets and its step); only a
/// record that has one is written as 6, so an older node never routes it by
/// its virtual queue alone.
pub const RECORD_SCHEMA: u32 = 6;

/// The schema of a record with preview, without a URS route.
pub const RECORD_SCHEMA_PREVIEW: u32 = 5;

/// The schema of a record with webhook events, without preview.
pub const RECORD_SCHEMA_WEBHOOKS: u32 = 4;

/// The schema of a record with video or a preferred agent, without webhooks.
pub const RECORD_SCHEMA_VIDEO: u32 = 3;

/// The schema of a booked record without video.
pub const RECORD_SCHEMA_BOOKED: u32 = 2;

/// The schema of records without a booking: still readable by older nodes.
pub const RECORD_SCHEMA_PLAIN: u32 = 1;

/// How long a record stays readable after its expiration or completion,
/// whichever is later (so a client sees FAIL_TIMEOUT_TTL).
pub const COMPLETED_GRACE: Duration = Duration::seconds(300);

/// Outboxes keep at most this many notifications; the oldest goes first.
pub const OUTBOX_LIMIT: usize = 200;

/// The engine's states. On the wire (`_callback_state`) they are GMS's names.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Where a new service starts.
    #[default]
    Scheduled,
    WaitForAgent,
    WaitForUserConfirm,
    Connected,
    Completed,
}

impl ServiceState {
    pub const ALL: [ServiceState; 5] = [
        ServiceState::Scheduled,
        ServiceState::WaitForAgent,
        ServiceState::WaitForUserConfirm,
        ServiceState::Connected,
        ServiceState::Completed,
    ];

    /// GMS `_callback_state`.
    pub fn gms_name(self) -> &'static str {
        match self {
            ServiceState::Scheduled => "SCHEDULED",
            ServiceState::WaitForAgent => "QUEUED",
            ServiceState::WaitForUserConfirm => "ROUTING",
            ServiceState::Connected => "PROCESSING",
            ServiceState::Completed => "COMPLETED",
        }
    }

    pub fn from_gms_name(name: &str) -> Option<ServiceState> {
        Self::ALL
            .into_iter()
            .find(|s| s.gms_name().eq_ignore_ascii_case(name))
    }
}

/// GMS `_callback_reason`: why a service completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallbackReason {
    /// The interaction reached the agent: the normal end.
    AgentConnected,
    Cancelled,
    FailUserNoConfirm,
    FailTimeoutTtl,
    /// No agent could be reserved in time (`_find_agent_timeout`).
    FailTargetNotFound,
    /// The customer left the chat before it reached an agent.
    FailInteractionDeleted,
    /// Agents rejected the previewed service `_agent_preview_allow_reject`
    /// times: GMS's `AGENT_PREVIEW_CANCEL_AFTER_<n>REJECTS` on the wire (see
    /// [`ServiceRecord::reason_name`]); stored under its old name.
    #[serde(alias = "AGENT_PREVIEW_CANCEL_AFTER_REJECTS")]
    FailAgentRejected,
}

impl CallbackReason {
    pub fn gms_name(self) -> &'static str {
        match self {
            CallbackReason::AgentConnected => "AGENT_CONNECTED",
            CallbackReason::Cancelled => "CANCELLED",
            CallbackReason::FailUserNoConfirm => "FAIL_USER_NO_CONFIRM",
            CallbackReason::FailTimeoutTtl => "FAIL_TIMEOUT_TTL",
            CallbackReason::FailTargetNotFound => "FAIL_TARGET_NOT_FOUND",
            CallbackReason::FailInteractionDeleted => "FAIL_INTERACTION_DELETED",
            // Without its count: metric labels and filters.
            CallbackReason::FailAgentRejected => "AGENT_PREVIEW_CANCEL_AFTER_REJECTS",
        }
    }

    /// `_callback_reason` of a service that had `rejects` preview rejects.
    pub fn wire_name(self, rejects: u32) -> String {
        match self {
            CallbackReason::FailAgentRejected => {
                format!("AGENT_PREVIEW_CANCEL_AFTER_{rejects}REJECTS")
            }
            other => other.gms_name().to_owned(),
        }
    }

    /// Every reason, for a filter by name.
    pub const ALL: [CallbackReason; 7] = [
        CallbackReason::AgentConnected,
        CallbackReason::Cancelled,
        CallbackReason::FailUserNoConfirm,
        CallbackReason::FailTimeoutTtl,
        CallbackReason::FailTargetNotFound,
        CallbackReason::FailInteractionDeleted,
        CallbackReason::FailAgentRejected,
    ];

    /// The reason a GMS client names: its `gms_name`, or for rejects
    /// GMS's `AGENT_PREVIEW_CANCEL_AFTER_<n>REJECTS` with any count.
    pub fn from_gms_name(name: &str) -> Option<CallbackReason> {
        let upper = name.trim().to_ascii_uppercase();
        let rejects = upper
            .strip_prefix("AGENT_PREVIEW_CANCEL_AFTER_")
            .and_then(|rest| rest.strip_suffix("REJECTS"))
            .is_some_and(|n| n.is_empty() || n.chars().all(|c| c.is_ascii_digit()));
        if rejects {
            return Some(CallbackReason::FailAgentRejected);
        }
        Self::ALL.into_iter().find(|r| r.gms_name() == upper)
    }
}

/// Timers a record can hold; at most one of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// `_desired_time` reached: a scheduled service enters the queue.
    DesiredTime,
    /// The customer did not confirm in `_user_confirm_timeout`.
    UserConfirm,
    /// No agent in `_find_agent_timeout`.
    FindAgent,
    /// `_expiration_time` (`_desired_time` + `_ttl`) reached.
    Ttl,
    /// A booked service's reminder is due.
    Reminder,
    /// The live room's code expires.
    RoomTtl,
    /// The preferred agent had its chance: the queue may have the service.
    PreferredAgent,
    /// Webhook events wait for delivery (now, or the next retry). The
    /// runtime delivers them; the machine only hears the outcome.
    Webhook,
    /// The reserved agent did not answer its preview in `_agent_preview_timeout`.
    AgentPreview,
    /// The current URS target's `timeout` ran out: the next target.
    TargetTimeout,
}

impl TimerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerKind::DesiredTime => "desired_time",
            TimerKind::UserConfirm => "user_confirm",
            TimerKind::FindAgent => "find_agent",
            TimerKind::Ttl => "ttl",
            TimerKind::Reminder => "reminder",
            TimerKind::RoomTtl => "room_ttl",
            TimerKind::PreferredAgent => "preferred_agent",
            TimerKind::Webhook => "webhook",
            TimerKind::AgentPreview => "agent_preview",
            TimerKind::TargetTimeout => "target_timeout",
        }
    }
}

/// The service's place in the queue. Kept across a requeue, so a customer
/// who missed a confirmation does not go to the back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueTicket {
    pub queue: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<String>,
    pub priority: i32,
    #[serde(with = "crate::rfc3339")]
    pub since: DateTime<Utc>,
    /// Only this agent may take the service until the preferred-agent
    /// timer clears it (Auvious's preferred-agent flow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_agent: Option<String>,
    /// Agents who rejected (or let time out) this service's preview: the
    /// router never offers it to them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub declined: Vec<String>,
    /// Where the service stands in its scenario's URS targets (`_target`
    /// as a list or a URS string); none in the simple form, where the
    /// queue and the skills say who may take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Box<crate::routing::target::Route>>,
}

/// A booked slot. The store counts a seat for it while the service is not
/// completed, and refuses the write that would take more than `seats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    /// Start of the booked slot (UTC).
    #[serde(with = "crate::rfc3339")]
    pub slot: DateTime<Utc>,
    #[serde(with = "crate::rfc3339")]
    pub slot_end: DateTime<Utc>,
    /// Seats the slot had when it was booked.
    pub seats: u32,
    /// The calendar invite's SEQUENCE: 0 when booked, one more per change.
    #[serde(default)]
    pub sequence: u32,
    /// When the service leaves `scheduled` for the queue: the slot less the
    /// scenario's `enter_queue` buffer.
    #[serde(with = "crate::rfc3339")]
    pub enter_queue_at: DateTime<Utc>,
    #[serde(
        default,
        with = "crate::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub reminder_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_url: Option<String>,
    /// The zone the customer sees times in (IANA name).
    pub timezone: String,
    /// The secret of the customer's link to see, move or cancel the
    /// booking (`/booking/{id}?token=`): knowing the id is not enough.
    /// Kept across moves, so the link in earlier e-mails stays valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manage_token: Option<String>,
}

/// A notification for the customer's device. `payload` is exactly what is
/// pushed and what retrieve-notifications returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceNotification {
    pub id: String,
    pub tag: String,
    pub payload: serde_json::Value,
    #[serde(with = "crate::rfc3339")]
    pub at: DateTime<Utc>,
}

/// A notification for the agent desktop, in GMS's retrieve-agent-notifications shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentNotification {
    /// Unique within the service; empty in records written before ids existed.
    #[serde(default)]
    pub id: String,
    /// JSON text, as GMS sends it.
    pub message: String,
    pub tag: String,
    #[serde(with = "crate::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Party {
    Client,
    Agent,
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatEntryKind {
    #[serde(rename = "Notice.Joined")]
    Joined,
    #[serde(rename = "Message.Text")]
    Text,
    #[serde(rename = "Notice.Left")]
    Left,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatEntry {
    /// 1-based position in the transcript.
    pub index: u32,
    pub kind: ChatEntryKind,
    pub party: Party,
    pub nickname: String,
    pub text: String,
    #[serde(with = "crate::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chat {
    #[serde(with = "crate::rfc3339")]
    pub started_at: DateTime<Utc>,
    #[serde(
        default,
        with = "crate::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ended_at: Option<DateTime<Utc>>,
    pub nickname: String,
    pub subject: String,
    /// Fields the customer sent with ixn/chat (firstName, email, ...).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    #[serde(default)]
    pub transcript: Vec<ChatEntry>,
    /// Whether the agent has joined the chat.
    #[serde(default)]
    pub agent_joined: bool,
}

impl Chat {
    pub fn push(
        &mut self,
        kind: ChatEntryKind,
        party: Party,
        nickname: &str,
        text: &str,
        at: DateTime<Utc>,
    ) -> u32 {
        let index = self.transcript.len() as u32 + 1;
        self.transcript.push(ChatEntry {
            index,
            kind,
            party,
            nickname: nickname.to_owned(),
            text: text.to_owned(),
            at,
        });
        index
    }

    pub fn is_open(&self) -> bool {
        self.ended_at.is_none()
    }
}

/// One entry of the record's history: every state change, with its time and cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(with = "crate::rfc3339")]
    pub at: DateTime<Utc>,
    /// None for the creation.
    pub from: Option<ServiceState>,
    pub to: ServiceState,
    /// The event's name: a name of the machine's own, so not copied into
    /// every entry (read back from a store, it is owned).
    pub event: std::borrow::Cow<'static, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CallbackReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Who caused it: `customer (<credential>)`, `agent <id> (<credential>)`,
    /// a staff credential's name, `router`, `timer <kind>`; none in records
    /// written before callbackd knew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// `Default` is an empty record: what the machine leaves behind when a
/// transition takes its record out instead of cloning it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Layout version of this type ([`RECORD_SCHEMA`]).
    pub schema: u32,
    /// Bumped by every write; the store compares it (compare-and-set).
    pub version: u64,
    pub id: String,
    pub scenario: String,
    pub state: ServiceState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CallbackReason>,
    #[serde(with = "crate::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::rfc3339")]
    pub desired_time: DateTime<Utc>,
    /// `_desired_time` + `_ttl`.
    #[serde(with = "crate::rfc3339")]
    pub expiration_time: DateTime<Utc>,
    #[serde(
        default,
        with = "crate::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub completed_at: Option<DateTime<Utc>>,
    pub customer_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_notification_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_os: Option<String>,
    /// Every create field that is not one of ours (usr_*, and the rest).
    #[serde(default)]
    pub user_data: SmallMap<String, String>,
    pub ticket: QueueTicket,
    /// The booked slot, for services created with `_desired_time` in a
    /// scenario with a `_schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking: Option<Box<Booking>>,
    /// The video leg: a chat escalated to video, or a video appointment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<Box<crate::video::VideoLeg>>,
    /// The agent that currently holds a reservation on this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The agent that took the interaction, kept after completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    #[serde(
        default,
        with = "crate::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub connected_at: Option<DateTime<Utc>>,
    /// How many times the customer has been asked to confirm.
    #[serde(default)]
    pub confirm_attempts: u32,
    /// The reserved agent was offered a preview (`_agent_preview`) and has
    /// not accepted it yet: the customer is not told of an agent meanwhile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preview_pending: bool,
    /// How many times agents rejected the preview.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub preview_rejects: u32,
    #[serde(default, with = "crate::rfc3339::map")]
    pub timers: SmallMap<TimerKind, DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<Box<Chat>>,
    #[serde(default)]
    pub outbox: Vec<DeviceNotification>,
    #[serde(default)]
    pub agent_outbox: Vec<AgentNotification>,
    /// Webhook events owed to the scenario's subscriptions (see
    /// [`crate::webhook`]).
    #[serde(default, skip_serializing_if = "crate::webhook::Webhooks::is_empty")]
    pub webhooks: crate::webhook::Webhooks,
    /// Counter behind device notification ids and dialog ids.
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

impl ServiceRecord {
    /// Gives back the room its lists grew (a create pushes two history
    /// entries into room for four, and arms timers one by one), for a
    /// record kept as it is rather than copied: a copy is made exact.
    /// In the embedded store that room was 200 bytes a waiting service.
    pub fn shrink_to_fit(&mut self) {
        self.history.shrink_to_fit();
        self.timers.shrink_to_fit();
        self.user_data.shrink_to_fit();
        self.outbox.shrink_to_fit();
        self.agent_outbox.shrink_to_fit();
        self.webhooks.pending.shrink_to_fit();
        self.webhooks.failed.shrink_to_fit();
    }

    /// When the store may forget the record: a grace period after its
    /// expiration (or completion), so the TTL timer, due at the expiration,
    /// can still complete it and clients can read the outcome.
    pub fn storage_deadline(&self) -> DateTime<Utc> {
        let end = match self.completed_at {
            Some(done) => self.expiration_time.max(done),
            None => self.expiration_time,
        };
        end.checked_add_signed(COMPLETED_GRACE)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The agent holding the service now, or the one that handled it.
    pub fn handling_agent(&self) -> Option<&str> {
        self.agent.as_deref().or(self.served_by.as_deref())
    }

    /// The seat the store must count for this service: (scenario, slot start, seats).
    pub fn seat(&self) -> Option<(&str, DateTime<Utc>, u32)> {
        match &self.booking {
            Some(b) if self.state != ServiceState::Completed => {
                Some((self.scenario.as_str(), b.slot, b.seats))
            }
            _ => None,
        }
    }

    /// The code the store indexes for this service: its latest room's,
    /// while the record exists (so a survey can still find an ended room).
    pub fn room_code(&self) -> Option<&str> {
        self.video
            .as_ref()
            .and_then(|v| v.last_room())
            .map(|r| r.code.as_str())
    }

    /// The room this service holds live, if any (none once completed).
    pub fn live_room(&self) -> Option<&crate::video::Room> {
        if self.state == ServiceState::Completed {
            return None;
        }
        self.video.as_ref().and_then(|v| v.live_room())
    }

    /// The agent this service keeps in a live room: the store refuses a
    /// write that would put one agent in two.
    pub fn room_agent(&self) -> Option<&str> {
        self.live_room()?;
        self.video.as_ref().and_then(|v| v.agent.as_deref())
    }

    /// `_callback_reason` as GMS writes it for this record: rejects carry
    /// their count (`AGENT_PREVIEW_CANCEL_AFTER_2REJECTS`).
    pub fn reason_name(&self) -> Option<String> {
        Some(self.reason?.wire_name(self.preview_rejects))
    }

    /// The lowest schema that holds everything in this record.
    pub fn required_schema(&self) -> u32 {
        if self.ticket.route.is_some() {
            RECORD_SCHEMA
        } else if self.preview_pending
            || self.preview_rejects > 0
            || !self.ticket.declined.is_empty()
        {
            RECORD_SCHEMA_PREVIEW
        } else if !self.webhooks.is_empty() {
            RECORD_SCHEMA_WEBHOOKS
        } else if self.video.is_some() || self.ticket.preferred_agent.is_some() {
            RECORD_SCHEMA_VIDEO
        } else if self.booking.is_some() {
            RECORD_SCHEMA_BOOKED
        } else {
            RECORD_SCHEMA_PLAIN
        }
    }

    /// Whether the store should hold the service in its queue.
    pub fn is_queued(&self) -> bool {
        self.state == ServiceState::WaitForAgent
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn push_outbox(&mut self, n: DeviceNotification) {
        if self.outbox.len() >= OUTBOX_LIMIT {
            self.outbox.remove(0);
        }
        self.outbox.push(n);
    }

    pub fn push_agent_outbox(&mut self, n: AgentNotification) {
        if self.agent_outbox.len() >= OUTBOX_LIMIT {
            self.agent_outbox.remove(0);
        }
        self.agent_outbox.push(n);
    }

    /// Decodes a stored record, refusing a layout newer than this build knows.
    pub fn decode(bytes: &[u8]) -> Result<ServiceRecord, String> {
        let rec: ServiceRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if rec.schema > RECORD_SCHEMA {
            return Err(format!(
                "record {} has schema {}, this build reads up to {}",
                rec.id, rec.schema, RECORD_SCHEMA
            ));
        }
        Ok(rec)
    }

    pub fn encode(&self) -> Vec<u8> {
        // A waiting service's record is about 900 bytes: one allocation,
        // where serde_json's 128 bytes to start grew three times.
        let mut json = Vec::with_capacity(1024);
        serde_json::to_writer(&mut json, self).expect("a record always serialises");
        json
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
