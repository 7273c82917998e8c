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

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use statig::blocking::*;

use crate::record::*;
use crate::scenario::{OnUserConfirmTimeout, Scenario};

/// What can happen to a service.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The service was created (internal: leaves the `fresh` pseudo-state).
    Created,
    /// A timer of the record fell due. [`apply`] checks it is still armed.
    TimerFired { kind: TimerKind, due: DateTime<Utc> },
    /// The router reserved this agent for the service.
    AgentReserved { agent: String },
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
    ChatMessage { from: Party, text: String },
    /// One side left the chat.
    ChatLeft { by: Party },
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
    /// One side of the chat started or stopped typing. Nothing is stored:
    /// the other side is told, if it listens.
    ChatTyping { by: Party, typing: bool },
    /// The customer moved a scheduled service to another time; `booking` is
    /// the new slot (its seat is checked by the store), none in a scenario
    /// without a schedule.
    Reschedule {
        desired_time: DateTime<Utc>,
        booking: Option<Booking>,
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
            Event::ChatTyping { .. } => "chat_typing",
            Event::Reschedule { .. } => "reschedule",
        }
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
            } => {
                self.reschedule(context, *desired_time, booking.clone());
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
                if self.scenario.wait_for_user_confirm {
                    Transition(State::wait_for_user_confirm())
                } else {
                    Transition(State::connected())
                }
            }
            Event::TimerFired {
                kind: TimerKind::FindAgent,
                ..
            } => Transition(State::completed(CallbackReason::FailTargetNotFound)),
            // Chat-immediate: the customer chats while waiting for an agent.
            Event::ChatStarted { .. } | Event::ChatMessage { .. } | Event::ChatTyping { .. }
                if !self.scenario.wait_for_agent =>
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
    }

    #[action]
    fn leave_queue(&mut self, context: &mut Context) {
        let queue = self.rec.ticket.queue.clone();
        context.effects.push(Effect::LeftQueue { queue });
        self.disarm(context, TimerKind::FindAgent);
    }

    #[state(
        superstate = "active",
        entry_action = "ask_user_confirm",
        exit_action = "stop_user_confirm"
    )]
    fn wait_for_user_confirm(&mut self, context: &mut Context, event: &Event) -> Outcome<State> {
        match event {
            Event::UserConfirmed => Transition(State::connected()),
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
        self.rec.confirm_attempts += 1;
        let due = after(self.now, self.scenario.user_confirm_timeout);
        self.arm(context, TimerKind::UserConfirm, due);
        self.agent_available(context);
    }

    #[action]
    fn stop_user_confirm(&mut self, context: &mut Context) {
        self.disarm(context, TimerKind::UserConfirm);
    }

    #[state(superstate = "active", entry_action = "enter_connected")]
    fn connected(&mut self, context: &mut Context, event: &Event) -> Outcome<State> {
        match event {
            // A retried connect gets the dialog again rather than an error.
            Event::UserConfirmed => Handled,
            Event::ChatStarted { .. } | Event::ChatMessage { .. } | Event::ChatTyping { .. } => {
                self.chat_event(context, event)
            }
            Event::ChatLeft { .. } if self.rec.chat.is_some() => {
                self.chat_event(context, event);
                Transition(State::completed(CallbackReason::AgentConnected))
            }
            Event::Complete => Transition(State::completed(CallbackReason::AgentConnected)),
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
    }

    #[state(entry_action = "enter_completed")]
    fn completed(
        context: &mut Context,
        reason: &mut CallbackReason,
        event: &Event,
    ) -> Outcome<State> {
        match event {
            // Polling after the end is normal; the rest is refused.
            Event::NotificationsRetrieved
            | Event::AgentNotificationsRetrieved
            | Event::TimerFired { .. } => Handled,
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
        let reason = reason.gms_name();
        self.notify_device(
            context,
            format!("service.completed.{id}"),
            json!({"_id": id, "_action": "completed", "_callback_state": "COMPLETED", "_callback_reason": reason}),
        );
    }
}

impl Service {
    /// Arms what `scheduled` waits for: entering the queue (at the desired
    /// time, or at the booked slot less its buffer) and the reminder.
    fn arm_schedule(&mut self, context: &mut Context) {
        let entry = self
            .rec
            .booking
            .as_ref()
            .map_or(self.rec.desired_time, |b| b.enter_queue_at);
        self.arm(context, TimerKind::DesiredTime, entry);
        self.disarm(context, TimerKind::Reminder);
        let reminder = self.rec.booking.as_ref().and_then(|b| b.reminder_at);
        if let Some(at) = reminder.filter(|at| *at > self.now) {
            self.arm(context, TimerKind::Reminder, at);
        }
    }

    fn reschedule(
        &mut self,
        context: &mut Context,
        desired_time: DateTime<Utc>,
        booking: Option<Booking>,
    ) {
        let previous = self
            .rec
            .booking
            .as_ref()
            .map_or(self.rec.desired_time, |b| b.slot);
        let sequence = self.rec.booking.as_ref().map_or(0, |b| b.sequence + 1);
        self.rec.desired_time = desired_time;
        self.rec.expiration_time = after(desired_time, self.scenario.ttl);
        // The place in the queue is the new time's, as at creation.
        self.rec.ticket.since = desired_time.max(self.now);
        self.rec.booking = booking.map(|b| Booking { sequence, ..b });
        if self.rec.booking.is_some() {
            self.rec.schema = self.rec.schema.max(RECORD_SCHEMA);
        }
        let expires = self.rec.expiration_time;
        self.arm(context, TimerKind::Ttl, expires);
        self.arm_schedule(context);
        if self.rec.booking.is_some() {
            context.effects.push(Effect::Appointment {
                change: AppointmentChange::Rescheduled {
                    previous_start: previous,
                },
            });
        }
    }

    /// The reminder: an e-mail or SMS by the shell, and a notification in
    /// the device's outbox for an app that listens.
    fn remind(&mut self, context: &mut Context) {
        let id = self.rec.id.clone();
        let booking = self.rec.booking.clone();
        let start = booking.as_ref().map_or(self.rec.desired_time, |b| b.slot);
        let join_url = booking.and_then(|b| b.join_url);
        self.notify_device(
            context,
            format!("service.reminder.{id}"),
            json!({"_id": id, "_action": "reminder", "_desired_time": start, "_join_url": join_url}),
        );
        context.effects.push(Effect::Appointment {
            change: AppointmentChange::Reminder,
        });
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

    fn notification_id(&mut self) -> String {
        // Unique within the service and stable in the record; the service id is unguessable.
        let seq = self.rec.next_seq();
        format!("{}-{:04}", self.rec.id, seq)
    }

    fn notify_device(&mut self, context: &mut Context, tag: String, payload: serde_json::Value) {
        self.notify_device_with(context, tag, |_| payload);
    }

    /// Adds a device notification whose payload may carry its own id.
    fn notify_device_with(
        &mut self,
        context: &mut Context,
        tag: String,
        payload: impl FnOnce(&str) -> serde_json::Value,
    ) {
        let id = self.notification_id();
        self.rec.push_outbox(DeviceNotification {
            id: id.clone(),
            tag: tag.clone(),
            payload: payload(&id),
            at: self.now,
        });
        context.effects.push(Effect::NotifyDevice { id, tag });
    }

    fn notify_agent(&mut self, context: &mut Context, tag: String, message: serde_json::Value) {
        let id = self.notification_id();
        self.rec.push_agent_outbox(AgentNotification {
            id: id.clone(),
            message: message.to_string(),
            tag: tag.clone(),
            at: self.now,
        });
        let agent = self.rec.handling_agent().map(str::to_owned);
        context.effects.push(Effect::NotifyAgent { agent, id, tag });
    }

    /// The seed's agent-available push.
    fn agent_available(&mut self, context: &mut Context) {
        let id = self.rec.id.clone();
        let tag = format!("service.agentavailable.{id}");
        self.notify_device_with(context, tag.clone(), |notification_id| {
            json!({
                "id": notification_id,
                "message": {
                    "_action": "get-dialog-user-confirmation-provide_code-false",
                    "_id": id,
                },
                "tag": tag,
            })
        });
    }

    fn internal_notification(&mut self, context: &mut Context, display: &str, application: &str) {
        let id = self.rec.id.clone();
        self.notify_device(
            context,
            format!("service.internal.{id}"),
            json!({"_internal_message": application, "_id": id, "_display_message": display}),
        );
    }

    fn agent_notification(&mut self, context: &mut Context, display: &str, application: &str) {
        let id = self.rec.id.clone();
        self.notify_agent(
            context,
            format!("agent.message.{id}"),
            json!({"_id": id, "_internal_message": application, "_display_message": display}),
        );
    }

    fn offer_to_agent(&mut self, context: &mut Context) {
        let id = self.rec.id.clone();
        let message = json!({
            "_id": id,
            "_action": "offer",
            "_service_name": self.rec.scenario,
            "_customer_number": self.rec.customer_number,
            "_media_type": self.scenario.media_type,
            "user_data": self.rec.user_data,
        });
        self.notify_agent(context, format!("agent.offer.{id}"), message);
    }

    /// Appends a chat event to the transcript and tells the other side.
    fn chat_event(&mut self, context: &mut Context, event: &Event) -> Outcome<State> {
        let now = self.now;
        let agent_name = self.rec.handling_agent().unwrap_or_default().to_owned();
        match event {
            Event::ChatStarted {
                nickname,
                subject,
                parameters,
            } => {
                if self.rec.chat.is_some() {
                    context.refuse(
                        self.in_state("the chat has already been started for this service"),
                    );
                    return Handled;
                }
                let mut chat = Chat {
                    started_at: now,
                    ended_at: None,
                    nickname: nickname.clone(),
                    subject: subject.clone(),
                    parameters: parameters.clone(),
                    transcript: Vec::new(),
                    agent_joined: false,
                };
                chat.push(
                    ChatEntryKind::Joined,
                    Party::Client,
                    nickname,
                    "has joined the session",
                    now,
                );
                self.rec.chat = Some(chat);
                if self.agent_is_connected() {
                    let id = self.rec.id.clone();
                    let body = chat_body(
                        &id,
                        1,
                        ChatEntryKind::Joined,
                        Party::Client,
                        nickname,
                        "has joined the session",
                    );
                    self.notify_agent(context, format!("agent.chat.{id}"), body);
                }
                self.agent_joins_chat(context);
            }
            Event::ChatMessage { from, text } => {
                let Some(chat) = self.rec.chat.as_mut().filter(|c| c.is_open()) else {
                    context.refuse(
                        self.in_state("no chat is open for this service; start it with ixn/chat"),
                    );
                    return Handled;
                };
                if *from == Party::Agent && !chat.agent_joined {
                    context.refuse(self.in_state("the agent has not joined this chat"));
                    return Handled;
                }
                let nickname = match from {
                    Party::Client => chat.nickname.clone(),
                    Party::Agent => agent_name,
                    Party::External => "system".to_owned(),
                };
                let index = chat.push(ChatEntryKind::Text, *from, &nickname, text, now);
                let id = self.rec.id.clone();
                let body = chat_body(&id, index, ChatEntryKind::Text, *from, &nickname, text);
                if *from == Party::Client {
                    self.notify_agent(context, format!("agent.chat.{id}"), body);
                } else {
                    self.notify_device(context, format!("service.chat.{id}"), body);
                }
            }
            Event::ChatLeft { by } => {
                let Some(chat) = self.rec.chat.as_mut().filter(|c| c.is_open()) else {
                    context.refuse(self.in_state("no chat is open for this service"));
                    return Handled;
                };
                let nickname = match by {
                    Party::Client => chat.nickname.clone(),
                    _ => agent_name,
                };
                let index = chat.push(
                    ChatEntryKind::Left,
                    *by,
                    &nickname,
                    "has left the session",
                    now,
                );
                chat.ended_at = Some(now);
                let agent_joined = chat.agent_joined;
                let id = self.rec.id.clone();
                let body = chat_body(
                    &id,
                    index,
                    ChatEntryKind::Left,
                    *by,
                    &nickname,
                    "has left the session",
                );
                match by {
                    // The agent hears of it only if it was in the chat.
                    Party::Client if agent_joined => {
                        self.notify_agent(context, format!("agent.chat.{id}"), body)
                    }
                    Party::Client => {}
                    _ => self.notify_device(context, format!("service.chat.{id}"), body),
                }
            }
            Event::ChatTyping { by, typing } => {
                let Some(chat) = self.rec.chat.as_ref().filter(|c| c.is_open()) else {
                    context.refuse(self.in_state("no chat is open for this service"));
                    return Handled;
                };
                if *by == Party::Agent && !chat.agent_joined {
                    context.refuse(self.in_state("the agent has not joined this chat"));
                    return Handled;
                }
                let id = self.rec.id.clone();
                let (kind, text) = if *typing {
                    ("Notice.TypingStarted", "is typing")
                } else {
                    ("Notice.TypingStopped", "stopped typing")
                };
                let nickname = match by {
                    Party::Client => chat.nickname.clone(),
                    _ => agent_name,
                };
                let body = json!({"_id": id, "type": kind, "from": by, "nickname": nickname, "text": text});
                match by {
                    Party::Client => context.effects.push(Effect::PushAgent {
                        agent: self.rec.handling_agent().map(str::to_owned),
                        tag: format!("agent.chat.typing.{id}"),
                        payload: body,
                    }),
                    _ => context.effects.push(Effect::PushDevice {
                        tag: format!("service.chat.typing.{id}"),
                        payload: body,
                    }),
                }
            }
            _ => {}
        }
        Handled
    }

    /// Whether the machine is in (or entering) `connected`: the record's
    /// `state` field is only updated after dispatch, so ask what entering
    /// `connected` sets instead.
    fn agent_is_connected(&self) -> bool {
        self.rec.agent.is_some() && self.rec.connected_at.is_some()
    }

    /// The reserved agent joins once both it and the chat are there.
    fn agent_joins_chat(&mut self, context: &mut Context) {
        if self.agent_is_connected() {
            let agent = self.rec.agent.clone();
            let now = self.now;
            if let (Some(agent), Some(chat)) = (agent, self.rec.chat.as_mut()) {
                if chat.is_open() && !chat.agent_joined {
                    chat.agent_joined = true;
                    let index = chat.push(
                        ChatEntryKind::Joined,
                        Party::Agent,
                        &agent,
                        "has joined the session",
                        now,
                    );
                    let id = self.rec.id.clone();
                    let body = chat_body(
                        &id,
                        index,
                        ChatEntryKind::Joined,
                        Party::Agent,
                        &agent,
                        "has joined the session",
                    );
                    self.notify_device(context, format!("service.chat.{id}"), body);
                }
            }
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
            Event::TimerFired { kind, .. } => format!("timer {} does not apply", kind.as_str()),
            other => format!("`{}` does not apply", other.name()),
        };
        format!("service is {}: {}", state.gms_name(), what)
    }
}

/// A chat notification: what was said or what happened, with its place in the transcript.
fn chat_body(
    id: &str,
    index: u32,
    kind: ChatEntryKind,
    from: Party,
    nickname: &str,
    text: &str,
) -> serde_json::Value {
    json!({"_id": id, "index": index, "type": kind, "from": from, "nickname": nickname, "text": text})
}

/// The push that tells the device its service changed state: pushed after
/// every state change but the last (completion has its own notification in
/// the outbox). Not kept: the state can always be read again.
pub fn state_notice(rec: &ServiceRecord) -> Option<(String, serde_json::Value)> {
    if rec.state == ServiceState::Completed {
        return None;
    }
    let id = &rec.id;
    let tag = format!("service.state.{id}");
    let payload = json!({
        "id": format!("{id}-v{}", rec.version),
        "message": {
            "_id": id,
            "_action": "state",
            "_callback_state": rec.state.gms_name(),
            "_agent_id": rec.agent,
        },
        "tag": tag,
    });
    Some((tag, payload))
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
pub fn create(new: NewService, scenario: &Arc<Scenario>, now: DateTime<Utc>) -> Applied {
    let desired_time = new.desired_time.unwrap_or(now);
    let rec = ServiceRecord {
        schema: if new.booking.is_some() {
            RECORD_SCHEMA
        } else {
            RECORD_SCHEMA_PLAIN
        },
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
        user_data: new.user_data,
        booking: new.booking,
        ticket: QueueTicket {
            queue: scenario.target.queue.clone(),
            skills: scenario
                .target
                .skills
                .as_ref()
                .map(|s| s.as_str().to_owned()),
            priority: scenario.target.priority,
            since: desired_time.max(now),
        },
        agent: None,
        served_by: None,
        connected_at: None,
        confirm_attempts: 0,
        timers: Default::default(),
        chat: None,
        outbox: Vec::new(),
        agent_outbox: Vec::new(),
        seq: 0,
        history: Vec::new(),
    };
    let mut machine = Service {
        rec,
        scenario: scenario.clone(),
        now,
    }
    .uninitialized_state_machine()
    .init_with_context(&mut Context::default());
    let mut context = Context::default();
    machine.handle_with_context(&Event::Created, &mut context);
    let mut rec = machine.inner().rec.clone();
    rec.history.push(HistoryEntry {
        at: now,
        from: None,
        to: ServiceState::Scheduled,
        event: Event::Created.name().to_owned(),
        reason: None,
        agent: None,
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
        let next = apply(&applied.record, scenario, &fired, now)
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
    applied.record.version = 1;
    applied
}

/// Applies one event to a stored record: (record, event, now) → (record, effects).
pub fn apply(
    record: &ServiceRecord,
    scenario: &Arc<Scenario>,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<Applied, TransitionError> {
    let mut rec = record.clone();
    match event {
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
    let mut rec = machine.inner().rec.clone();
    rec.state = to;
    rec.reason = reason;
    rec.version = record.version + 1;
    if to != from {
        rec.history.push(HistoryEntry {
            at: now,
            from: Some(from),
            to,
            event: event.name().to_owned(),
            reason,
            agent: rec.handling_agent().map(str::to_owned),
        });
    }
    Ok(Applied {
        record: rec,
        effects: context.effects,
    })
}
