//! The service state machine, built with statig in blocking mode.
//!
//! ```text
//!            ┌──────────────────────── active ───────────────────────────┐
//!  create ─▶ │ scheduled ─▶ wait_for_agent ─▶ wait_for_user_confirm ─▶ connected │ ─▶ completed(reason)
//!            │                  ▲  └──────────(no confirm needed)──────▶  ▲     │
//!            │                  └──── requeue ◀──┘                            │
//!            └────────────────────────────────────────────────────────────┘
//! ```
//!
//! Every transition is a pure function, [`apply`]: (record, event, now) →
//! (record, effects). The machine reads and writes the record; the effects tell
//! the async shell what to do about it (wake the router, push a notification,
//! re-arm the timer loop). The store derives queue membership, agent load and
//! timers from the record, so the shell never has to translate effects into
//! store calls by hand.
//!
//! Restoring a record puts the machine straight into the stored state without
//! running entry actions: entering a state arms timers and notifies the
//! customer, which must happen once, not on every load.
//!
//! This module holds the events, effects and errors, the statig states and
//! the entry points [`create`] and [`apply`]; the rest of `Service`'s
//! behaviour lives beside it: `chat`, `booking` (schedule, reminder,
//! appointments), `video` (the video leg and its rooms) and `notify`
//! (outboxes and notice payloads).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use statig::blocking::*;

use crate::record::*;
use crate::routing::target::Route;
use crate::scenario::{OnUserConfirmTimeout, Scenario};
use crate::video::{Room, RoomEnd, RoutingData, VideoLeg, VideoRoute};

mod booking;
mod chat;
mod notify;
pub use notify::state_notice;
mod video;

/// What a reschedule changes besides the time (GMS's PUT takes the
/// customer's number and user data with `_new_desired_time`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The new `_customer_number`, if one was sent.
    pub customer_number: Option<String>,
    /// User data to set (added, or replacing the value of the same key).
    pub user_data: std::collections::BTreeMap<String, String>,
}

impl Changes {
    fn apply_to(&self, rec: &mut ServiceRecord) {
        if let Some(number) = &self.customer_number {
            rec.customer_number = number.clone();
        }
        rec.user_data
            .extend(self.user_data.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

/// What can happen to a service.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The service was created (internal: leaves the `fresh` pseudo-state).
    Created,
    /// A timer of the record fell due. [`apply`] checks it is still armed.
    TimerFired {
        kind: TimerKind,
        due: DateTime<Utc>,
    },
    /// The router reserved this agent for the service.
    AgentReserved {
        agent: String,
    },
    /// The customer confirmed (`connect`).
    UserConfirmed,
    /// The customer started the chat (`ixn/chat`).
    ChatStarted {
        nickname: String,
        subject: String,
        parameters: std::collections::BTreeMap<String, String>,
    },
    /// A chat message; the machine knows who `from` is (the chat's
    /// nickname for the client, the reserved agent for the agent).
    ChatMessage {
        from: Party,
        text: String,
    },
    /// One side left the chat.
    ChatLeft {
        by: Party,
    },
    /// The agent finished the interaction.
    Complete,
    /// The customer (or an admin) cancelled.
    Cancel,
    /// The agent desktop sent a notification to the device.
    InternalNotification {
        display: String,
        application: String,
    },
    /// The device sent a notification to the agent desktop.
    AgentNotification {
        display: String,
        application: String,
    },
    /// The customer fetched its notifications: the whole outbox is emptied
    /// (the shell answers with the record as it was before this event).
    NotificationsRetrieved,
    /// The agent desktop fetched its notifications.
    AgentNotificationsRetrieved,
    /// These notifications reached the device (`device`) or the agent
    /// desktop (`agent`) by push: they leave the outboxes, so retrieving
    /// does not hand them out a second time.
    NotificationsPushed {
        device: Vec<String>,
        agent: Vec<String>,
    },
    /// A webhook delivery round: these events reached their receiver,
    /// these (id, why) did not. Bookkeeping, allowed in every state.
    WebhooksAttempted {
        delivered: Vec<String>,
        failed: Vec<(String, String)>,
    },
    /// An operator puts the given-up webhook events back in line.
    WebhooksRetried,
    /// One side of the chat started or stopped typing. Nothing is stored:
    /// the other side is told, if it listens.
    ChatTyping {
        by: Party,
        typing: bool,
    },
    /// The customer moved a scheduled service to another time; `booking` is
    /// the new slot (its seat is checked by the store), none in a scenario
    /// without a schedule.
    Reschedule {
        desired_time: DateTime<Utc>,
        booking: Option<Booking>,
        /// What else GMS's reschedule may change with the time.
        changes: Changes,
    },
    /// The customer or the agent asked for video on this service (a live
    /// chat escalating). `room` was made by the shell; `agent_free` says the
    /// chat's agent is in no other room, so it can take the video itself.
    StartVideo {
        by: Party,
        routing: RoutingData,
        scenario: String,
        conversation_id: Option<String>,
        room: Box<Room>,
        agent_free: bool,
    },
    /// A room for a video leg that has none live: the agent took a booked
    /// video appointment, or asks for a new call after one ended.
    OpenRoom {
        room: Room,
    },
    /// The agent link of the live room, made for the leg's agent after the
    /// room was made (a template room routed through the queue).
    AgentLinked {
        agent: String,
        url: String,
        token: String,
    },
    /// The called side accepted or declined the ringing room.
    RoomAnswered {
        by: Party,
        accept: bool,
    },
    RoomJoined {
        party: Party,
    },
    RoomLeft {
        party: Party,
    },
    /// WebRTC signalling (SDP offer or answer, ICE candidate) for the other
    /// side. Nothing is stored.
    RoomSignal {
        from: Party,
        signal: serde_json::Value,
    },
    /// The agent completes even though the room is live; the room ends.
    ForceComplete,
    /// The customer's answer to the one-question survey after the call.
    SurveyAnswered {
        question: String,
        scale: u8,
        score: u8,
        comment: Option<String>,
    },
    /// A supervisor moves a waiting service to another queue and/or to a
    /// preferred agent; it keeps its priority and age, so its place. One
    /// offered to an agent (ROUTING) is taken back from that agent first.
    Moved {
        queue: Option<String>,
        agent: Option<String>,
    },
    /// A supervisor takes a service back from its agent (ROUTING or
    /// PROCESSING): it waits in its queue again with its age, and the agent
    /// is free for another.
    Requeued,
    /// The agent accepted the preview it was offered (`_agent_preview`).
    AgentAccepted {
        agent: String,
    },
    /// The agent rejected the preview: the service goes back to its queue
    /// with its age, and is never offered to this agent again.
    AgentRejected {
        agent: String,
    },
    /// The router found the current URS target's stat condition holds
    /// (`stat_to_check`): the service moves on to the next target now.
    /// `step` is the target the router saw, so a stale plan changes nothing.
    TargetSkipped {
        step: usize,
    },
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::TimerFired { kind, .. } => match kind {
                TimerKind::DesiredTime => "desired_time_reached",
                TimerKind::UserConfirm => "user_confirm_timeout",
                TimerKind::FindAgent => "find_agent_timeout",
                TimerKind::Ttl => "ttl_expired",
                TimerKind::Reminder => "reminder_due",
                TimerKind::RoomTtl => "room_expired",
                TimerKind::PreferredAgent => "preferred_agent_timeout",
                TimerKind::Webhook => "webhook_due",
                TimerKind::AgentPreview => "agent_preview_timeout",
                TimerKind::TargetTimeout => "target_timeout",
            },
            Event::Created => "created",
            Event::AgentReserved { .. } => "agent_reserved",
            Event::UserConfirmed => "user_confirmed",
            Event::ChatStarted { .. } => "chat_started",
            Event::ChatMessage { .. } => "chat_message",
            Event::ChatLeft { .. } => "chat_left",
            Event::Complete => "complete",
            Event::Cancel => "cancel",
            Event::InternalNotification { .. } => "internal_notification",
            Event::AgentNotification { .. } => "agent_notification",
            Event::NotificationsRetrieved => "notifications_retrieved",
            Event::AgentNotificationsRetrieved => "agent_notifications_retrieved",
            Event::NotificationsPushed { .. } => "notifications_pushed",
            Event::WebhooksAttempted { .. } => "webhooks_attempted",
            Event::WebhooksRetried => "webhooks_retried",
            Event::ChatTyping { .. } => "chat_typing",
            Event::Reschedule { .. } => "reschedule",
            Event::StartVideo { .. } => "video_requested",
            Event::OpenRoom { .. } => "room_opened",
            Event::AgentLinked { .. } => "agent_linked",
            Event::RoomAnswered { accept: true, .. } => "room_accepted",
            Event::RoomAnswered { accept: false, .. } => "room_declined",
            Event::RoomJoined { .. } => "room_joined",
            Event::RoomLeft { .. } => "room_left",
            Event::RoomSignal { .. } => "room_signal",
            Event::ForceComplete => "force_complete",
            Event::SurveyAnswered { .. } => "survey_answered",
            Event::Moved { .. } => "moved",
            Event::Requeued => "requeued",
            Event::AgentAccepted { .. } => "agent_accepted",
            Event::AgentRejected { .. } => "agent_rejected",
            Event::TargetSkipped { .. } => "target_skipped",
        }
    }

    /// Whether the history keeps this event even when the state stays: a
    /// supervisor's hand on a service is always accounted for.
    pub fn always_in_history(&self) -> bool {
        // An agent's answer to a preview is accounted for too: accepting
        // with a confirmation still to ask keeps the state.
        // Moving on to the next URS target keeps the state, and is what a
        // supervisor reads a long wait by.
        matches!(
            self,
            Event::Moved { .. }
                | Event::Requeued
                | Event::AgentAccepted { .. }
                | Event::AgentRejected { .. }
                | Event::TargetSkipped { .. }
                | Event::TimerFired {
                    kind: TimerKind::TargetTimeout,
                    ..
                }
        )
    }
}

/// What the shell must do after the record is stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// The service joined its queue: run the router.
    EnteredQueue {
        queue: String,
    },
    /// The service left its queue (reserved, cancelled, timed out).
    LeftQueue {
        queue: String,
    },
    /// The agent gained this service (the store checks its limit atomically).
    AgentReserved {
        agent: String,
    },
    /// The agent lost this service: it has room again, run the router.
    AgentReleased {
        agent: String,
    },
    /// A device notification was added to the outbox.
    NotifyDevice {
        id: String,
        tag: String,
    },
    /// An agent-desktop notification was added to the agent outbox.
    NotifyAgent {
        agent: Option<String>,
        id: String,
        tag: String,
    },
    /// Tell the device something that is not kept (typing): push it if the
    /// device listens, otherwise it is gone.
    PushDevice {
        tag: String,
        payload: serde_json::Value,
    },
    /// The same for the agent desktop.
    PushAgent {
        agent: Option<String>,
        tag: String,
        payload: serde_json::Value,
    },
    /// A timer was armed; the timer loop may need to wake earlier.
    TimerArmed {
        kind: TimerKind,
        due: DateTime<Utc>,
    },
    TimerCancelled {
        kind: TimerKind,
    },
    /// Samples for the queue's estimated wait time.
    WaitSample {
        queue: String,
        seconds: f64,
    },
    HandleSample {
        queue: String,
        seconds: f64,
    },
    /// Something happened to a booked appointment that the customer and the
    /// agents may be told about (e-mail, calendar invite, SMS), as the
    /// scenario's notifications say.
    Appointment {
        change: AppointmentChange,
    },
    /// The video leg has an agent but no live room: the shell makes one
    /// (code, tokens, links) and applies [`Event::OpenRoom`].
    OpenRoom,
    /// The live room's agent link names another agent (or none): the shell
    /// makes the leg agent's link and applies [`Event::AgentLinked`].
    LinkAgent,
    /// A live room ended: its agent may take another video, run the router.
    RoomEnded {
        agent: Option<String>,
    },
    /// The agent let a preview time out: set it not ready in the store, as
    /// an ACD does with an agent who does not answer.
    AgentNotReady {
        agent: String,
    },
    /// Tell the device the service's new state (and thereby that it owns
    /// it); not kept, like [`Effect::PushDevice`]. [`create`] always ends
    /// with one, [`apply`] when the state changed: last, after everything
    /// else the transition did. The message is [`state_notice`] of the
    /// record written: the shell builds it only when a device may hear it.
    StateNotice,
}

/// What happened to a booked appointment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AppointmentChange {
    Booked,
    Rescheduled { previous_start: DateTime<Utc> },
    Cancelled,
    Reminder,
}

/// An event the service's state does not allow. The HTTP layer answers 409.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransitionError {
    #[error("{message}")]
    NotAllowed {
        state: ServiceState,
        event: &'static str,
        message: String,
    },
    /// A timer that was re-armed or cancelled since it was read: nothing to do.
    #[error("timer {kind:?} is no longer armed")]
    StaleTimer { kind: TimerKind },
    /// The event would change nothing (pushed notifications that already
    /// left the outbox): there is nothing to write.
    #[error("nothing to change")]
    Unchanged,
}

/// Data a new service starts with.
#[derive(Debug, Clone)]
pub struct NewService {
    pub id: String,
    pub customer_number: String,
    pub desired_time: Option<DateTime<Utc>>,
    pub device_notification_id: Option<String>,
    pub device_os: Option<String>,
    pub user_data: std::collections::BTreeMap<String, String>,
    /// The slot taken, when the scenario has a schedule and a time was asked for.
    pub booking: Option<Booking>,
    /// Only this agent may take the service until `_preferred_agent_timeout`.
    pub preferred_agent: Option<String>,
    /// A video service's leg (with its first room, when it has one already).
    pub video: Option<VideoLeg>,
}

/// The statig machine's shared storage: the record being worked on.
pub struct Service {
    rec: ServiceRecord,
    scenario: Arc<Scenario>,
    now: DateTime<Utc>,
}

/// The machine's external context: effects out, and whether the event was refused.
#[derive(Default)]
pub struct Context {
    effects: Vec<Effect>,
    refused: Option<String>,
}

impl Context {
    fn refuse(&mut self, why: impl Into<String>) {
        self.refused = Some(why.into());
    }
}

#[state_machine(
    initial = "State::fresh()",
    state(derive(Debug, Clone, PartialEq)),
    superstate(derive(Debug))
)]
impl Service {
    /// Where every machine starts. It has no entry action, so initialising a
    /// machine to restore a record runs nothing; creation leaves it at once.
    #[state]
    fn fresh(context: &mut Context, event: &Event) -> Outcome<State> {
        match event {
            Event::Created => Transition(State::scheduled()),
            other => {
                context.refuse(format!("`{}` before the service exists", other.name()));
                Handled
            }
        }
    }

    /// Every state but `completed`. Cancel and TTL work from anywhere in it.
    #[superstate(entry_action = "enter_active")]
    fn active(&mut self, context: &mut Context, event: &Event) -> Outcome<State> {
        match event {
            Event::Cancel => Transition(State::completed(CallbackReason::Cancelled)),
            Event::TimerFired {
                kind: TimerKind::Ttl,
                ..
            } => Transition(State::completed(CallbackReason::FailTimeoutTtl)),
            Event::InternalNotification {
                display,
                application,
            } => {
                self.internal_notification(context, display, application);
                Handled
            }
            Event::AgentNotification {
                display,
                application,
            } => {
                self.agent_notification(context, display, application);
                Handled
            }
            Event::TimerFired {
                kind: TimerKind::Reminder,
                ..
            } => {
                // Once the customer is with an agent, or the slot has begun
                // (every node was down at the reminder's time), it is noise.
                let ahead = self.rec.booking.as_ref().is_some_and(|b| self.now < b.slot);
                if self.rec.connected_at.is_none() && ahead {
                    self.remind(context);
                }
                Handled
            }
            Event::TimerFired {
                kind: TimerKind::RoomTtl,
                ..
            } => {
                self.room_expired(context);
                Handled
            }
            Event::RoomAnswered { .. }
            | Event::RoomJoined { .. }
            | Event::RoomLeft { .. }
            | Event::RoomSignal { .. } => {
                self.room_event(context, event);
                Handled
            }
            Event::SurveyAnswered { .. } => {
                self.survey(context, event);
                Handled
            }
            // A timer this state does not handle is spent: `apply` already
            // removed it, and refusing would leave it due forever.
            Event::TimerFired { .. } => Handled,
            other => {
                context.refuse(self.refusal(other));
                Handled
            }
        }
    }

    #[action]
    fn enter_active(&mut self, context: &mut Context) {
        let due = self.rec.expiration_time;
        self.arm(context, TimerKind::Ttl, due);
        // A video service created with its room (the seed's create with
        // desired_time=now): the code expires like any room's.
        let room_expires = self
            .rec
            .video
            .as_ref()
            .and_then(|v| v.live_room())
            .map(|r| r.expires_at);
        if let Some(at) = room_expires {
            self.arm(context, TimerKind::RoomTtl, at);
        }
    }

    #[state(superstate = "active", entry_action = "enter_scheduled")]
    fn scheduled(&mut self, context: &mut Context, event: &Event) -> Outcome<State> {
        match event {
            Event::TimerFired {
                kind: TimerKind::DesiredTime,
                ..
            } => Transition(State::wait_for_agent()),
            Event::Reschedule {
                desired_time,
                booking,
                changes,
            } => {
                self.reschedule(context, *desired_time, booking.clone());
                changes.apply_to(&mut self.rec);
                Handled
            }
            // Not in a queue yet: it joins the new one when its time comes.
            Event::Moved { queue, agent } => {
                self.move_ticket(context, queue, agent);
                Handled
            }
            _ => Super,
        }
    }

    #[action]
    fn enter_scheduled(&mut self, context: &mut Context) {
        self.arm_schedule(context);
    }

    #[state(
        superstate = "active",
        entry_action = "enter_queue",
        exit_action = "leave_queue"
    )]
    fn wait_for_agent(&mut self, context: &mut Context, event: &Event) -> Outcome<State> {
        match event {
            Event::AgentReserved { agent }
                if self
                    .rec
                    .ticket
                    .preferred_agent
                    .as_ref()
                    .is_some_and(|p| p != agent) =>
            {
                let preferred = self.rec.ticket.preferred_agent.clone().unwrap_or_default();
                context.refuse(self.in_state(&format!(
                    "the service is kept for its preferred agent {preferred} for now"
                )));
                Handled
            }
            Event::AgentReserved { agent } if self.rec.ticket.declined.contains(agent) => {
                context.refuse(self.in_state(&format!(
                    "agent {agent} declined this service's preview; it goes to another agent"
                )));
                Handled
            }
            Event::AgentReserved { agent } => {
                self.rec.agent = Some(agent.clone());
                context.effects.push(Effect::AgentReserved {
                    agent: agent.clone(),
                });
                let waited =
                    (self.now - self.rec.ticket.since).num_milliseconds().max(0) as f64 / 1000.0;
                context.effects.push(Effect::WaitSample {
                    queue: self.rec.ticket.queue.clone(),
                    seconds: waited,
                });
                // Video was asked for just now: nobody needs to confirm it,
                // and no agent previews it.
                if self.scenario.agent_preview && self.rec.video.is_none() {
                    // ROUTING: the agent answers the preview before the
                    // customer is asked or told anything.
                    self.rec.preview_pending = true;
                    Transition(State::wait_for_user_confirm())
                } else if self.scenario.wait_for_user_confirm && self.rec.video.is_none() {
                    Transition(State::wait_for_user_confirm())
                } else {
                    Transition(State::connected())
                }
            }
            Event::TimerFired {
                kind: TimerKind::FindAgent,
                ..
            } => Transition(State::completed(CallbackReason::FailTargetNotFound)),
            Event::TimerFired {
                kind: TimerKind::PreferredAgent,
                ..
            } if self.rec.ticket.preferred_agent.is_some() => {
                // The preferred agent did not take it in time: the queue may.
                self.rec.ticket.preferred_agent = None;
                let queue = self.rec.ticket.queue.clone();
                context.effects.push(Effect::EnteredQueue { queue });
                Handled
            }
            Event::TimerFired {
                kind: TimerKind::TargetTimeout,
                ..
            } => {
                self.next_target(context, false);
                Handled
            }
            Event::TargetSkipped { step } => {
                let current = self.rec.ticket.route.as_ref().map(|r| r.step);
                if current != Some(*step) || !self.next_target(context, true) {
                    context.refuse(self.in_state(&format!(
                        "target {} is not the service's current target, or is its last",
                        step + 1
                    )));
                }
                Handled
            }
            Event::Moved { queue, agent } => {
                let left = self.rec.ticket.queue.clone();
                if !self.move_ticket(context, queue, agent) {
                    return Handled;
                }
                context.effects.push(Effect::LeftQueue { queue: left });
                if agent.is_some() {
                    // The new preferred agent gets the whole window.
                    self.disarm(context, TimerKind::PreferredAgent);
                    self.arm_preferred(context);
                }
                let queue = self.rec.ticket.queue.clone();
                context.effects.push(Effect::EnteredQueue { queue });
                Handled
            }
            Event::StartVideo {
                by,
                routing,
                scenario,
                conversation_id,
                room,
                ..
            } => {
                if let Some(why) = self.video_refusal(*by, false) {
                    context.refuse(why);
                    return Handled;
                }
                self.start_video(*by, routing, scenario, conversation_id, room, context);
                // Still waiting: the place in the queue is kept, the target is the video's.
                self.retarget(routing, self.rec.ticket.since);
                self.disarm(context, TimerKind::PreferredAgent);
                self.arm_preferred(context);
                let queue = self.rec.ticket.queue.clone();
                context.effects.push(Effect::EnteredQueue { queue });
                self.video_notice(context, "routing");
                Handled
            }
            // Chat-immediate: the customer chats while waiting for an agent;
            // and a chat waiting for its video agent goes on meanwhile.
            Event::ChatStarted { .. } | Event::ChatMessage { .. } | Event::ChatTyping { .. }
                if !self.scenario.wait_for_agent
                    || (self.rec.video.is_some()
                        && !matches!(event, Event::ChatStarted { .. })) =>
            {
                self.chat_event(context, event)
            }
            // Waiting for the video's agent, the customer may close the chat.
            Event::ChatLeft { by: Party::Client }
                if self.rec.chat.is_some() && self.rec.live_room().is_some() =>
            {
                self.chat_event(context, event)
            }
            Event::ChatLeft { by: Party::Client } if self.rec.chat.is_some() => {
                self.chat_event(context, event);
                Transition(State::completed(CallbackReason::FailInteractionDeleted))
            }
            _ => Super,
        }
    }

    #[action]
    fn enter_queue(&mut self, context: &mut Context) {
        let queue = self.rec.ticket.queue.clone();
        context.effects.push(Effect::EnteredQueue { queue });
        if let Some(timeout) = self.scenario.find_agent_timeout {
            // Re-armed on a requeue: the customer gets a whole new wait.
            let due = after(self.now, timeout);
            self.arm(context, TimerKind::FindAgent, due);
        }
        self.arm_preferred(context);
        self.arm_target(context);
    }

    #[action]
    fn leave_queue(&mut self, context: &mut Context) {
        let queue = self.rec.ticket.queue.clone();
        context.effects.push(Effect::LeftQueue { queue });
        self.disarm(context, TimerKind::FindAgent);
        self.disarm(context, TimerKind::PreferredAgent);
        self.disarm(context, TimerKind::TargetTimeout);
    }

    /// Starts the current URS target's clock on first queueing, and arms
    /// its timeout (a requeued service goes on where it was: its time on
    /// the target counts from when the target began).
    fn arm_target(&mut self, context: &mut Context) {
        let now = self.now;
        let Some(route) = self.rec.ticket.route.as_mut() else {
            return;
        };
        route.since.get_or_insert(now);
        if let Some(due) = route.due(&self.scenario.target.steps) {
            self.arm(context, TimerKind::TargetTimeout, due.max(now));
        }
    }

    /// Moves on to the next URS target (after the timeout, or `skipped` for
    /// its stat condition): the queue entry changes, so the router runs.
    /// False at the last target.
    fn next_target(&mut self, context: &mut Context, skipped: bool) -> bool {
        let now = self.now;
        let steps = &self.scenario.target.steps;
        let Some(route) = self.rec.ticket.route.as_mut() else {
            return false;
        };
        if !route.advance(steps, skipped, now) {
            return false;
        }
        self.disarm(context, TimerKind::TargetTimeout);
        self.arm_target(context);
        let queue = self.rec.ticket.queue.clone();
        context.effects.push(Effect::EnteredQueue { queue });
        true
    }

    #[state(
        superstate = "active",
        entry_action = "ask_user_confirm",
        exit_action = "stop_user_confirm"
    )]
    fn wait_for_user_confirm(&mut self, context: &mut Context, event: &Event) -> Outcome<State> {
        match event {
            Event::UserConfirmed if self.rec.preview_pending => {
                context.refuse(self.in_state(
                    "the agent has not accepted the service yet; connect once the agent-available notification arrives",
                ));
                Handled
            }
            Event::AgentAccepted { agent } | Event::AgentRejected { agent }
                if !self.rec.preview_pending || self.rec.agent.as_ref() != Some(agent) =>
            {
                context.refuse(self.in_state(&format!(
                    "no preview of this service waits for agent {agent}'s answer"
                )));
                Handled
            }
            Event::AgentAccepted { .. } => {
                self.rec.preview_pending = false;
                self.disarm(context, TimerKind::AgentPreview);
                if self.scenario.wait_for_user_confirm {
                    // Now the flow goes on as without preview: ask the customer.
                    self.start_user_confirm(context);
                    Handled
                } else {
                    Transition(State::connected())
                }
            }
            Event::AgentRejected { .. } if self.scenario.agent_preview_allow_reject == 0 => {
                context.refuse(self.in_state(
                    "the scenario allows no rejects (_agent_preview_allow_reject = 0); accept, or let the preview time out",
                ));
                Handled
            }
            Event::AgentRejected { agent } => {
                self.rec.preview_rejects += 1;
                self.decline(agent);
                if self.rec.preview_rejects >= self.scenario.agent_preview_allow_reject {
                    Transition(State::completed(CallbackReason::FailAgentRejected))
                } else {
                    self.release_agent(context);
                    Transition(State::wait_for_agent())
                }
            }
            Event::TimerFired {
                kind: TimerKind::AgentPreview,
                ..
            } if self.rec.preview_pending => {
                // Not the agent's choice, so not a reject; but the service
                // does not wait for that agent again.
                if let Some(agent) = self.rec.agent.clone() {
                    self.decline(&agent);
                    if self.scenario.agent_preview_timeout_set_notready {
                        context.effects.push(Effect::AgentNotReady { agent });
                    }
                }
                self.release_agent(context);
                Transition(State::wait_for_agent())
            }
            Event::UserConfirmed => Transition(State::connected()),
            Event::Moved { queue, agent } => {
                if !self.move_ticket(context, queue, agent) {
                    return Handled;
                }
                self.release_agent(context);
                Transition(State::wait_for_agent())
            }
            Event::Requeued => {
                self.release_agent(context);
                Transition(State::wait_for_agent())
            }
            Event::TimerFired {
                kind: TimerKind::UserConfirm,
                ..
            } => match self.scenario.on_user_confirm_timeout {
                OnUserConfirmTimeout::ConnectAnyway => Transition(State::connected()),
                OnUserConfirmTimeout::Fail => {
                    Transition(State::completed(CallbackReason::FailUserNoConfirm))
                }
                OnUserConfirmTimeout::Requeue => {
                    if self.rec.confirm_attempts >= self.scenario.max_user_confirm_attempts {
                        Transition(State::completed(CallbackReason::FailUserNoConfirm))
                    } else {
                        self.release_agent(context);
                        Transition(State::wait_for_agent())
                    }
                }
            },
            _ => Super,
        }
    }

    #[action]
    fn ask_user_confirm(&mut self, context: &mut Context) {
        if self.rec.preview_pending {
            let due = after(self.now, self.scenario.agent_preview_timeout);
            self.arm(context, TimerKind::AgentPreview, due);
            self.offer_preview(context);
        } else {
            self.start_user_confirm(context);
        }
    }

    #[action]
    fn stop_user_confirm(&mut self, context: &mut Context) {
        self.disarm(context, TimerKind::UserConfirm);
        self.disarm(context, TimerKind::AgentPreview);
        self.rec.preview_pending = false;
    }

    #[state(superstate = "active", entry_action = "enter_connected")]
    fn connected(&mut self, context: &mut Context, event: &Event) -> Outcome<State> {
        match event {
            // A retried connect gets the dialog again rather than an error.
            Event::UserConfirmed => Handled,
            Event::ChatStarted { .. } | Event::ChatMessage { .. } | Event::ChatTyping { .. } => {
                self.chat_event(context, event)
            }
            // The chat may end while the video goes on.
            Event::ChatLeft { .. } if self.rec.chat.is_some() && self.rec.live_room().is_some() => {
                self.chat_event(context, event)
            }
            Event::ChatLeft { .. } if self.rec.chat.is_some() => {
                self.chat_event(context, event);
                Transition(State::completed(CallbackReason::AgentConnected))
            }
            Event::Complete => match self.rec.live_room().map(|r| r.code.clone()) {
                Some(code) => {
                    context.refuse(self.in_state(&format!(
                        "video room {code} is live; leave the room first, or complete with force"
                    )));
                    Handled
                }
                None => Transition(State::completed(CallbackReason::AgentConnected)),
            },
            Event::ForceComplete => {
                self.end_room(context, RoomEnd::Forced);
                Transition(State::completed(CallbackReason::AgentConnected))
            }
            Event::Requeued => match self.rec.live_room().map(|r| r.code.clone()) {
                Some(code) => {
                    context.refuse(self.in_state(&format!(
                        "video room {code} is live; the agent leaves the room first"
                    )));
                    Handled
                }
                None => {
                    self.agent_leaves_chat(
                        context,
                        "has left the session: the service went back to the queue",
                    );
                    self.release_agent(context);
                    // Nobody handles it until the next agent connects.
                    self.rec.served_by = None;
                    self.rec.connected_at = None;
                    Transition(State::wait_for_agent())
                }
            },
            Event::StartVideo {
                by,
                routing,
                scenario,
                conversation_id,
                room,
                agent_free,
            } => {
                let same_agent = *agent_free && self.rec.agent.is_some();
                if let Some(why) = self.video_refusal(*by, same_agent) {
                    context.refuse(why);
                    return Handled;
                }
                self.start_video(*by, routing, scenario, conversation_id, room, context);
                if same_agent {
                    let now = self.now;
                    if let Some(leg) = self.rec.video.as_mut() {
                        leg.agent = self.rec.agent.clone();
                        leg.routed = Some(VideoRoute::SameAgent);
                        leg.connected_at = Some(now);
                    }
                    self.ring(context);
                    return Handled;
                }
                // The chat's agent cannot take it: route the video by its
                // routingData, as a new request, and let the agent go.
                self.retarget(routing, self.now);
                self.agent_leaves_chat(
                    context,
                    "has left the session: the video call goes to another agent",
                );
                self.release_agent(context);
                // Until the video's agent connects, nobody handles it: chat
                // messages must not go to the agent who let it go.
                self.rec.served_by = None;
                self.video_notice(context, "routing");
                Transition(State::wait_for_agent())
            }
            Event::AgentLinked { agent, url, token } => {
                let ours = self.rec.video.as_ref().and_then(|v| v.agent.as_deref()) == Some(agent);
                let Some(room) = self
                    .rec
                    .video
                    .as_mut()
                    .and_then(|v| v.live_room_mut())
                    .filter(|_| ours)
                else {
                    context.refuse(self.in_state(&format!(
                        "agent {agent} does not hold this service's live video room"
                    )));
                    return Handled;
                };
                room.agent_url = url.clone();
                room.agent_token = token.clone();
                room.named_agent = Some(agent.clone());
                self.ring(context);
                Handled
            }
            Event::OpenRoom { room } => {
                let has_agent = self.rec.video.as_ref().is_some_and(|v| v.agent.is_some());
                if !has_agent || self.rec.live_room().is_some() {
                    context.refuse(self.in_state(
                        "a room opens only for a video leg with an agent and no live room",
                    ));
                    return Handled;
                }
                let expires = room.expires_at;
                if let Some(leg) = self.rec.video.as_mut() {
                    leg.push_room(room.clone());
                }
                self.arm(context, TimerKind::RoomTtl, expires);
                self.ring(context);
                Handled
            }
            _ => Super,
        }
    }

    #[action]
    fn enter_connected(&mut self, context: &mut Context) {
        self.rec.connected_at = Some(self.now);
        self.rec.served_by = self.rec.agent.clone();
        if !self.scenario.wait_for_user_confirm && self.scenario.wait_for_agent {
            // Nobody asked the customer, so tell them the agent is there now.
            self.agent_available(context);
        }
        self.offer_to_agent(context);
        self.agent_joins_chat(context);
        self.video_connected(context);
    }

    #[state(entry_action = "enter_completed")]
    fn completed(
        &mut self,
        context: &mut Context,
        reason: &mut CallbackReason,
        event: &Event,
    ) -> Outcome<State> {
        match event {
            // Polling after the end is normal; the rest is refused.
            Event::NotificationsRetrieved
            | Event::AgentNotificationsRetrieved
            | Event::TimerFired { .. } => Handled,
            // The survey comes after the call, often after the agent completed.
            Event::SurveyAnswered { .. } => {
                self.survey(context, event);
                Handled
            }
            _ => {
                context.refuse(format!(
                    "service is COMPLETED ({}); it accepts no `{}`",
                    reason.gms_name(),
                    event.name()
                ));
                Handled
            }
        }
    }

    #[action]
    fn enter_completed(&mut self, context: &mut Context, reason: &mut CallbackReason) {
        if *reason == CallbackReason::Cancelled && self.rec.connected_at.is_none() {
            if let Some(booking) = self.rec.booking.as_mut() {
                // A cancelled invite is a new version of the same event.
                booking.sequence += 1;
                context.effects.push(Effect::Appointment {
                    change: AppointmentChange::Cancelled,
                });
            }
        }
        self.end_room(context, RoomEnd::ServiceEnded);
        self.rec.reason = Some(*reason);
        self.rec.completed_at = Some(self.now);
        for kind in self.rec.timers.keys().copied().collect::<Vec<_>>() {
            self.disarm(context, kind);
        }
        if let Some(chat) = self.rec.chat.as_mut() {
            if chat.is_open() {
                chat.ended_at = Some(self.now);
            }
        }
        if let Some(connected_at) = self.rec.connected_at {
            let seconds = (self.now - connected_at).num_milliseconds().max(0) as f64 / 1000.0;
            context.effects.push(Effect::HandleSample {
                queue: self.rec.ticket.queue.clone(),
                seconds,
            });
        }
        self.release_agent(context);
        let id = self.rec.id.clone();
        let reason = reason.wire_name(self.rec.preview_rejects);
        self.notify_device(
            context,
            format!("service.completed.{id}"),
            json!({"_id": id, "_action": "completed", "_callback_state": "COMPLETED", "_callback_reason": reason}),
        );
    }
}

impl Service {
    /// Asks the customer to confirm, once an agent holds the service.
    fn start_user_confirm(&mut self, context: &mut Context) {
        self.rec.confirm_attempts += 1;
        let due = after(self.now, self.scenario.user_confirm_timeout);
        self.arm(context, TimerKind::UserConfirm, due);
        self.agent_available(context);
    }

    /// The agent turned the service down (or let its preview lapse): the
    /// router must not offer it to that agent again, even as its preferred one.
    fn decline(&mut self, agent: &str) {
        if !self.rec.ticket.declined.iter().any(|a| a == agent) {
            self.rec.ticket.declined.push(agent.to_owned());
        }
        if self.rec.ticket.preferred_agent.as_deref() == Some(agent) {
            self.rec.ticket.preferred_agent = None;
        }
    }

    /// A supervisor's move: the ticket's queue and/or preferred agent
    /// change, its priority and age (so its place) stay. False (and the
    /// event refused) when it names neither.
    fn move_ticket(
        &mut self,
        context: &mut Context,
        queue: &Option<String>,
        agent: &Option<String>,
    ) -> bool {
        if queue.is_none() && agent.is_none() {
            context.refuse(self.in_state("a move names a queue or an agent"));
            return false;
        }
        if let Some(queue) = queue {
            self.rec.ticket.queue = queue.clone();
            // The supervisor's queue replaces the scenario's targets: its
            // agents take it from now on.
            if self.rec.ticket.route.take().is_some() {
                self.disarm(context, TimerKind::TargetTimeout);
            }
        }
        if let Some(agent) = agent {
            self.rec.ticket.preferred_agent = Some(agent.clone());
        }
        true
    }

    fn arm_preferred(&mut self, context: &mut Context) {
        if self.rec.ticket.preferred_agent.is_some() {
            let due = after(self.now, self.scenario.preferred_agent_timeout);
            self.arm(context, TimerKind::PreferredAgent, due);
        }
    }

    fn arm(&mut self, context: &mut Context, kind: TimerKind, due: DateTime<Utc>) {
        let due = whole_millis_up(due);
        self.rec.timers.insert(kind, due);
        context.effects.push(Effect::TimerArmed { kind, due });
    }

    fn disarm(&mut self, context: &mut Context, kind: TimerKind) {
        if self.rec.timers.remove(&kind).is_some() {
            context.effects.push(Effect::TimerCancelled { kind });
        }
    }

    fn release_agent(&mut self, context: &mut Context) {
        if let Some(agent) = self.rec.agent.take() {
            context.effects.push(Effect::AgentReleased { agent });
        }
    }

    /// A refusal message that names the state, as every refusal does.
    fn in_state(&self, what: &str) -> String {
        format!("service is {}: {}", self.rec.state.gms_name(), what)
    }

    fn refusal(&self, event: &Event) -> String {
        let state = self.rec.state;
        let what = match event {
            Event::UserConfirmed => match state {
                ServiceState::Scheduled | ServiceState::WaitForAgent => {
                    "no agent is available yet; connect once the agent-available notification arrives".to_owned()
                }
                _ => format!("connect is not allowed in state {}", state.gms_name()),
            },
            Event::ChatStarted { .. } => {
                "the chat can start only after connect (or at once in a scenario with _wait_for_agent = false)"
                    .to_owned()
            }
            Event::ChatMessage { .. } | Event::ChatLeft { .. } => {
                "no chat is open for this service; start it with ixn/chat".to_owned()
            }
            Event::Complete => "only a connected service (PROCESSING) can be completed".to_owned(),
            Event::Reschedule { .. } => {
                "only a SCHEDULED service can be rescheduled; this one is already on its way to an agent".to_owned()
            }
            Event::AgentReserved { .. } => "the service is not waiting for an agent".to_owned(),
            Event::StartVideo { .. } => {
                "video starts from a live chat (PROCESSING) or while the service waits for an agent (QUEUED)".to_owned()
            }
            Event::OpenRoom { .. } => "a room opens only once an agent has the video leg".to_owned(),
            Event::ForceComplete => "only a connected service (PROCESSING) can be completed".to_owned(),
            Event::Moved { .. } => {
                "only a waiting service (SCHEDULED, QUEUED or ROUTING) can be moved; requeue it first"
                    .to_owned()
            }
            Event::Requeued => {
                "only a service with an agent (ROUTING or PROCESSING) can be requeued".to_owned()
            }
            Event::AgentAccepted { agent } | Event::AgentRejected { agent } => {
                format!("no preview of this service waits for agent {agent}'s answer")
            }
            Event::TimerFired { kind, .. } => format!("timer {} does not apply", kind.as_str()),
            other => format!("`{}` does not apply", other.name()),
        };
        format!("service is {}: {}", state.gms_name(), what)
    }
}

/// `at + d`, saturating: an admin's absurd timeout means "never", not a panic.
/// Timers are kept to the millisecond (stores index them in milliseconds,
/// and a timer fires only if its due time matches the record's exactly);
/// rounding up means a timer never fires before the time it stands for.
fn whole_millis_up(due: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::DurationRound;
    let ms = chrono::Duration::milliseconds(1);
    match due.duration_trunc(ms) {
        Ok(down) if down == due => due,
        Ok(down) => down.checked_add_signed(ms).unwrap_or(down),
        Err(_) => due,
    }
}

fn after(at: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn statig_state(rec: &ServiceRecord) -> State {
    match rec.state {
        ServiceState::Scheduled => State::scheduled(),
        ServiceState::WaitForAgent => State::wait_for_agent(),
        ServiceState::WaitForUserConfirm => State::wait_for_user_confirm(),
        ServiceState::Connected => State::connected(),
        ServiceState::Completed => {
            State::completed(rec.reason.unwrap_or(CallbackReason::Cancelled))
        }
    }
}

fn record_state(state: &State) -> (ServiceState, Option<CallbackReason>) {
    match state {
        State::Fresh {} | State::Scheduled {} => (ServiceState::Scheduled, None),
        State::WaitForAgent {} => (ServiceState::WaitForAgent, None),
        State::WaitForUserConfirm {} => (ServiceState::WaitForUserConfirm, None),
        State::Connected {} => (ServiceState::Connected, None),
        State::Completed { reason } => (ServiceState::Completed, Some(*reason)),
    }
}

/// The result of a transition: the new record (version bumped) and what to do.
#[derive(Debug, Clone)]
pub struct Applied {
    pub record: ServiceRecord,
    pub effects: Vec<Effect>,
}

/// Creates a service: leaves `fresh` for `scheduled` (running its entry
/// actions), and enters the queue at once when the desired time has come.
/// The queue ticket that routes by `routing`, holding its place from `since`.
pub(crate) fn ticket_for(routing: &RoutingData, since: DateTime<Utc>) -> QueueTicket {
    QueueTicket {
        queue: routing.queue.clone(),
        skills: routing.skills.clone(),
        priority: routing.priority,
        since,
        preferred_agent: routing.preferred_agent.clone(),
        declined: Vec::new(),
        route: None,
    }
}

pub fn create(new: NewService, scenario: &Arc<Scenario>, now: DateTime<Utc>) -> Applied {
    create_by(new, scenario, now, None)
}

/// [`create`], naming who asked for it in the record's history.
pub fn create_by(
    new: NewService,
    scenario: &Arc<Scenario>,
    now: DateTime<Utc>,
    by: Option<&str>,
) -> Applied {
    let desired_time = new.desired_time.unwrap_or(now);
    let since = desired_time.max(now);
    // A video leg brings its own routingData; else the scenario's target.
    let routing = match &new.video {
        Some(leg) => leg.routing.clone(),
        None => RoutingData::from_target(&scenario.target),
    };
    let mut ticket = ticket_for(&routing, since);
    if new.video.is_none() && !scenario.target.steps.is_empty() {
        ticket.route = Some(Box::new(Route::start(&scenario.target.steps)));
    }
    if new.preferred_agent.is_some() {
        ticket.preferred_agent = new.preferred_agent.clone();
    }
    let mut rec = ServiceRecord {
        schema: RECORD_SCHEMA_PLAIN,
        version: 0,
        id: new.id,
        scenario: scenario.name.clone(),
        state: ServiceState::Scheduled,
        reason: None,
        created_at: now,
        desired_time,
        expiration_time: after(desired_time, scenario.ttl),
        completed_at: None,
        customer_number: new.customer_number,
        device_notification_id: new.device_notification_id,
        device_os: new.device_os,
        user_data: new.user_data.into(),
        booking: new.booking.map(Box::new),
        ticket,
        video: new.video.map(Box::new),
        agent: None,
        served_by: None,
        connected_at: None,
        confirm_attempts: 0,
        preview_pending: false,
        preview_rejects: 0,
        timers: Default::default(),
        chat: None,
        outbox: Vec::new(),
        agent_outbox: Vec::new(),
        webhooks: Default::default(),
        seq: 0,
        history: Vec::new(),
    };
    rec.schema = rec.required_schema();
    let mut machine = Service {
        rec,
        scenario: scenario.clone(),
        now,
    }
    .uninitialized_state_machine()
    .init_with_context(&mut Context::default());
    let mut context = Context::default();
    machine.handle_with_context(&Event::Created, &mut context);
    let mut rec = take_record(&mut machine);
    rec.history.push(HistoryEntry {
        at: now,
        from: None,
        to: ServiceState::Scheduled,
        event: Event::Created.name().into(),
        reason: None,
        agent: None,
        by: by.map(str::to_owned),
    });
    let mut applied = Applied {
        record: rec,
        effects: context.effects,
    };
    if applied.record.booking.is_some() {
        applied.effects.push(Effect::Appointment {
            change: AppointmentChange::Booked,
        });
    }
    let entry = applied
        .record
        .booking
        .as_ref()
        .map_or(desired_time, |b| b.enter_queue_at);
    if entry <= now {
        // As armed (to the millisecond), so the record accepts it.
        let due = applied
            .record
            .timers
            .get(&TimerKind::DesiredTime)
            .copied()
            .unwrap_or(entry);
        let fired = Event::TimerFired {
            kind: TimerKind::DesiredTime,
            due,
        };
        // Entering the queue at once is part of the create: the same cause.
        let first = std::mem::take(&mut applied.record);
        let next = transition_owned(first, scenario, &fired, now, by)
            .expect("a new service accepts its own desired time");
        // The desired-time timer never outlives create: drop its arm/fire pair.
        applied.effects.retain(|e| {
            !matches!(
                e,
                Effect::TimerArmed {
                    kind: TimerKind::DesiredTime,
                    ..
                }
            )
        });
        applied.effects.extend(next.effects);
        applied.record = next.record;
    }
    owe_webhooks(None, &mut applied, scenario, None, now);
    applied.record.version = 1;
    tell_state(&mut applied);
    applied
}

/// The record out of a machine that is done with it, without a copy (a
/// record's clone was two of a create's four, about 1,800 instructions
/// each). The machine is left holding an empty record and is dropped.
fn take_record(machine: &mut InitializedStateMachine<Service>) -> ServiceRecord {
    // SAFETY: no memory safety is at stake; statig marks this unsafe because
    // it changes the machine's storage outside its handlers, and the
    // machine handles nothing more.
    std::mem::take(unsafe { &mut machine.inner_mut().rec })
}

/// Who caused an event that names itself: the router, or a timer.
fn own_cause(event: &Event) -> Option<String> {
    match event {
        Event::AgentReserved { .. } | Event::TargetSkipped { .. } => Some("router".to_owned()),
        Event::TimerFired { kind, .. } => Some(format!("timer {}", kind.as_str())),
        _ => None,
    }
}

/// Applies one event to a stored record: (record, event, now) → (record, effects).
pub fn apply(
    record: &ServiceRecord,
    scenario: &Arc<Scenario>,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<Applied, TransitionError> {
    apply_by(record, scenario, event, now, None)
}

/// [`apply`], naming who caused the event in the record's history. Without
/// a name, the router's and the timers' events name themselves.
pub fn apply_by(
    record: &ServiceRecord,
    scenario: &Arc<Scenario>,
    event: &Event,
    now: DateTime<Utc>,
    by: Option<&str>,
) -> Result<Applied, TransitionError> {
    let mut applied = transition(record, scenario, event, now, by)?;
    owe_webhooks(Some(record), &mut applied, scenario, Some(event), now);
    if applied.record.state != record.state {
        tell_state(&mut applied);
    }
    Ok(applied)
}

/// Writes the webhook events a change owes into the record (so they are
/// stored with it), arming the delivery timer.
fn owe_webhooks(
    before: Option<&ServiceRecord>,
    applied: &mut Applied,
    scenario: &Scenario,
    event: Option<&Event>,
    now: DateTime<Utc>,
) {
    if scenario.webhooks.is_empty()
        || matches!(
            event,
            Some(Event::WebhooksAttempted { .. } | Event::WebhooksRetried)
        )
    {
        return;
    }
    let kinds = crate::webhook::owed(before, &applied.record, event, &applied.effects);
    crate::webhook::queue(&mut applied.record, &scenario.webhooks, &kinds, now);
    // A state change may have cleared every timer (completion does): the
    // delivery timer of events still waiting stays as it was.
    let before_due = before.and_then(|b| b.timers.get(&TimerKind::Webhook).copied());
    let rec = &mut applied.record;
    if !rec.webhooks.pending.is_empty() {
        let due = match rec.timers.get(&TimerKind::Webhook) {
            Some(due) => *due,
            None => {
                let due = before_due.unwrap_or(now);
                rec.timers.insert(TimerKind::Webhook, due);
                due
            }
        };
        if before_due != Some(due) {
            applied.effects.push(Effect::TimerArmed {
                kind: TimerKind::Webhook,
                due,
            });
        }
    }
    applied.record.schema = applied.record.schema.max(applied.record.required_schema());
}

/// A webhook round's or retry's record, with the delivery timer it leaves
/// armed (if any) as its one effect, so the timer loop looks again.
fn webhooks_written(rec: ServiceRecord) -> Applied {
    let effects = rec
        .timers
        .get(&TimerKind::Webhook)
        .map(|due| Effect::TimerArmed {
            kind: TimerKind::Webhook,
            due: *due,
        })
        .into_iter()
        .collect();
    Applied {
        record: rec,
        effects,
    }
}

/// Appends the state push, last: the shell carries out the effects in
/// order, and the device hears of the new state after everything else.
fn tell_state(applied: &mut Applied) {
    if applied.record.state != ServiceState::Completed {
        applied.effects.push(Effect::StateNotice);
    }
}

/// [`apply`] without the state push: `create` runs it for a service whose
/// time has come, and pushes the state once, for the record it returns.
fn transition(
    record: &ServiceRecord,
    scenario: &Arc<Scenario>,
    event: &Event,
    now: DateTime<Utc>,
    by: Option<&str>,
) -> Result<Applied, TransitionError> {
    transition_owned(record.clone(), scenario, event, now, by)
}

/// [`transition`] of a record its caller is done with, so not copied: a
/// create's own second step (entering the queue), whose first record
/// nobody keeps. A copy of a waiting record was about 2,000 instructions
/// and a dozen allocations.
fn transition_owned(
    mut rec: ServiceRecord,
    scenario: &Arc<Scenario>,
    event: &Event,
    now: DateTime<Utc>,
    by: Option<&str>,
) -> Result<Applied, TransitionError> {
    let version = rec.version;
    match event {
        Event::TimerFired {
            kind: TimerKind::Webhook,
            ..
        } => {
            // The runtime delivers webhooks and reports with
            // WebhooksAttempted; the timer itself changes nothing here.
            return Err(TransitionError::NotAllowed {
                state: rec.state,
                event: event.name(),
                message: format!(
                    "a {} service does not act on its webhook timer: the runtime delivers the events",
                    rec.state.gms_name()
                ),
            });
        }
        Event::WebhooksAttempted { delivered, failed } => {
            let known = |id: &String| rec.webhooks.pending.iter().any(|e| &e.id == id);
            // A timer with nothing behind it is cleared, not left to fire again.
            let idle_timer =
                rec.webhooks.pending.is_empty() && rec.timers.contains_key(&TimerKind::Webhook);
            if !delivered.iter().any(known)
                && !failed.iter().any(|(id, _)| known(id))
                && !idle_timer
            {
                // Another round (another node's, after a lease ran out)
                // already took them: no write.
                return Err(TransitionError::Unchanged);
            }
            crate::webhook::attempted(&mut rec, delivered, failed, now);
            rec.version += 1;
            rec.schema = rec.schema.max(rec.required_schema());
            return Ok(webhooks_written(rec));
        }
        Event::WebhooksRetried => {
            if crate::webhook::retry_failed(&mut rec, now) == 0 {
                return Err(TransitionError::Unchanged);
            }
            rec.version += 1;
            return Ok(webhooks_written(rec));
        }
        Event::TimerFired { kind, due } => {
            if rec.timers.get(kind) != Some(due) {
                return Err(TransitionError::StaleTimer { kind: *kind });
            }
            rec.timers.remove(kind);
        }
        // Draining an outbox is bookkeeping, allowed in every state.
        Event::NotificationsRetrieved => {
            rec.outbox.clear();
            rec.version += 1;
            return Ok(Applied {
                record: rec,
                effects: Vec::new(),
            });
        }
        Event::AgentNotificationsRetrieved => {
            rec.agent_outbox.clear();
            rec.version += 1;
            return Ok(Applied {
                record: rec,
                effects: Vec::new(),
            });
        }
        Event::NotificationsPushed { device, agent } => {
            let (outbox, agent_outbox) = (rec.outbox.len(), rec.agent_outbox.len());
            rec.outbox.retain(|n| !device.contains(&n.id));
            rec.agent_outbox
                .retain(|n| n.id.is_empty() || !agent.contains(&n.id));
            if (outbox, agent_outbox) == (rec.outbox.len(), rec.agent_outbox.len()) {
                // Retrieved meanwhile, or pushed twice (two open tabs): no write.
                return Err(TransitionError::Unchanged);
            }
            rec.version += 1;
            return Ok(Applied {
                record: rec,
                effects: Vec::new(),
            });
        }
        _ => {}
    }
    let from = rec.state;
    let restored = statig_state(&rec);
    // `fresh` has no entry actions, so init() runs nothing; then the machine is
    // moved to the stored state by hand. Restoring must not re-run entry
    // actions: they notify the customer and arm timers, which happened once
    // already, when the state was first entered.
    let mut machine = Service {
        rec,
        scenario: scenario.clone(),
        now,
    }
    .uninitialized_state_machine()
    .init_with_context(&mut Context::default());
    // SAFETY: no memory safety is at stake; statig marks this unsafe because
    // it bypasses entry and exit actions, which is exactly what restoring needs.
    unsafe {
        *machine.state_mut() = restored;
    }
    let mut context = Context::default();
    machine.handle_with_context(event, &mut context);
    if let Some(message) = context.refused {
        return Err(TransitionError::NotAllowed {
            state: from,
            event: event.name(),
            message,
        });
    }
    let (to, reason) = record_state(machine.state());
    let mut rec = take_record(&mut machine);
    rec.state = to;
    rec.reason = reason;
    rec.version = version + 1;
    rec.schema = rec.schema.max(rec.required_schema());
    if to != from || event.always_in_history() {
        rec.history.push(HistoryEntry {
            at: now,
            from: Some(from),
            to,
            event: event.name().into(),
            reason,
            agent: rec.handling_agent().map(str::to_owned),
            by: by.map(str::to_owned).or_else(|| own_cause(event)),
        });
    }
    Ok(Applied {
        record: rec,
        effects: context.effects,
    })
}
