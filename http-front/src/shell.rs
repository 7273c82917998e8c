//! The async shell around the pure engine.
//!
//! Every change to a service goes through [`Shell::transition`]: read the
//! record, apply the event with `engine::machine::apply`, write it back with
//! compare-and-set (retrying on a concurrent write), then carry out the
//! effects. Two background tasks drive the rest:
//!
//! - the router wakes when a service enters a queue or an agent gets room,
//!   and reserves agents for waiting services;
//! - the timer loop sleeps until the store's next due timer (or until a new,
//!   earlier one is armed) and fires it through the same `transition`.
//!
//! Both stop on the one shutdown signal.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use engine::clock::Clock;

use crate::appointments::Notifier;
use crate::video::RoomMaker;
use engine::machine::{self, Applied, Effect, Event, NewService, TransitionError};
use engine::record::Party;
use engine::record::ServiceRecord;
use engine::routing;
use engine::scenario::{Scenario, Scenarios};
use engine::stats::SampleKind;
use engine::store::{Store, StoreError};
use engine::video::{RoutingData, VideoConfig};
use push::httpcb::{HttpCallbacks, Outcome, Policy};
use push::{Audience, Delivery, Fanout, Pushed, Registry, Relay};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, info, warn};

/// How often a transition is retried when another writer got there first.
const CAS_RETRIES: usize = 16;

/// Backstop for the router: a pass runs at least this often, even if a wake-up was missed.
const ROUTER_BACKSTOP: Duration = Duration::from_secs(5);

/// How long a claimed timer is hidden from the other nodes. If this node
/// dies before firing it, another node fires it when the lease ends.
const TIMER_LEASE: chrono::Duration = chrono::Duration::seconds(10);

/// How many due timers one node fires at once.
const TIMER_CONCURRENCY: usize = 16;

/// Longest the timer loop sleeps without looking at the store: a backstop
/// for a wake-up lost while the wake channel was reconnecting.
const TIMER_BACKSTOP: Duration = Duration::from_secs(60);

/// How often records past their TTL are swept out of the embedded store.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("service `{0}` does not exist")]
    UnknownService(String),
    #[error("scenario `{0}` does not exist")]
    UnknownScenario(String),
    #[error(transparent)]
    NotAllowed(#[from] TransitionError),
    #[error("service `{0}` is being changed by too many requests at once; retry")]
    Contended(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ShellError {
    fn into_store_error(self) -> StoreError {
        match self {
            ShellError::Store(e) => e,
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

pub struct Shell {
    pub store: Arc<dyn Store>,
    pub scenarios: Scenarios,
    pub clock: Arc<dyn Clock>,
    /// This node's push clients, and the way to every node's.
    pub fanout: Arc<Fanout>,
    httpcb: HttpCallbacks,
    /// What the push transports handed over; taken by the background task.
    pushed: std::sync::Mutex<Option<mpsc::Receiver<Pushed>>>,
    route_wake: Notify,
    timer_wake: Notify,
    /// Appointment e-mails and SMS.
    notifier: Arc<Notifier>,
    /// Makes video rooms (codes, tokens, links).
    pub rooms: Arc<RoomMaker>,
    /// Services whose video leg needs a room (`Effect::OpenRoom`); the
    /// background task opens them, so a transition never waits on another.
    open_room_tx: mpsc::UnboundedSender<String>,
    open_room_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

/// How many fresh codes a room gets before giving up (a code is taken only
/// if another stored service holds it: 25^7 codes make one retry rare).
const ROOM_CODE_ATTEMPTS: usize = 5;

/// HTTP callbacks in flight at once, over every scenario.
const HTTPCB_IN_FLIGHT: usize = 256;

/// Pushed notifications taken out of the outboxes in one go.
const PUSHED_BATCH: usize = 256;

impl Shell {
    /// `relay` carries deliveries to the other nodes (None: this is the only one);
    /// `notifier` sends appointment e-mails and SMS; `rooms` makes video rooms.
    pub fn new(
        store: Arc<dyn Store>,
        scenarios: Scenarios,
        clock: Arc<dyn Clock>,
        limits: push::Limits,
        relay: Option<Arc<dyn Relay>>,
        notifier: Arc<Notifier>,
        rooms: Arc<RoomMaker>,
    ) -> Arc<Shell> {
        let (registry, pushed) = Registry::new(limits);
        let (open_room_tx, open_room_rx) = mpsc::unbounded_channel();
        Arc::new(Shell {
            store,
            scenarios,
            clock,
            fanout: Fanout::new(registry, relay),
            httpcb: HttpCallbacks::new(HTTPCB_IN_FLIGHT),
            pushed: std::sync::Mutex::new(Some(pushed)),
            route_wake: Notify::new(),
            timer_wake: Notify::new(),
            notifier,
            rooms,
            open_room_tx,
            open_room_rx: std::sync::Mutex::new(Some(open_room_rx)),
        })
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.fanout.registry
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn scenario(&self, name: &str) -> Result<&Arc<Scenario>, ShellError> {
        self.scenarios
            .get(name)
            .ok_or_else(|| ShellError::UnknownScenario(name.to_owned()))
    }

    pub async fn get(&self, id: &str) -> Result<ServiceRecord, ShellError> {
        self.store
            .get(id)
            .await?
            .ok_or_else(|| ShellError::UnknownService(id.to_owned()))
    }

    /// Creates and stores a service, then carries out its first effects.
    pub async fn create(
        &self,
        scenario: &Arc<Scenario>,
        new: NewService,
    ) -> Result<ServiceRecord, ShellError> {
        let applied = machine::create(new, scenario, self.now());
        self.store.put(&applied.record, None).await?;
        info!(service_id = %applied.record.id, scenario = %scenario.name, state = ?applied.record.state, "Service created.");
        self.carry_out(&applied.record, &applied.effects).await;
        self.tell_state(&applied.record);
        Ok(applied.record)
    }

    /// Applies `event` to a service: one read, one compare-and-set write, retried on conflict.
    pub async fn transition(&self, id: &str, event: &Event) -> Result<ServiceRecord, ShellError> {
        self.transition_from(id, event)
            .await
            .map(|(_, after)| after)
    }

    /// Like [`Shell::transition`], and also gives the record the event was applied to.
    pub async fn transition_from(
        &self,
        id: &str,
        event: &Event,
    ) -> Result<(ServiceRecord, ServiceRecord), ShellError> {
        self.transition_built(id, None, |_| Cow::Borrowed(event))
            .await
    }

    /// Like [`Shell::transition`] on a record the caller has just read (the
    /// room API finds the service by its room code): no second read unless
    /// another writer got there first.
    pub async fn transition_on(
        &self,
        record: ServiceRecord,
        event: &Event,
    ) -> Result<ServiceRecord, ShellError> {
        let id = record.id.clone();
        self.transition_built(&id, Some(record), |_| Cow::Borrowed(event))
            .await
            .map(|(_, after)| after)
    }

    /// Applies the event `make` builds from the record as read (a room is
    /// made for the record it goes into). `read` is a record the caller
    /// already holds: the first attempt uses it instead of reading again;
    /// a conflict reads afresh and builds again.
    async fn transition_built<'e>(
        &self,
        id: &str,
        mut read: Option<ServiceRecord>,
        make: impl Fn(&ServiceRecord) -> Cow<'e, Event>,
    ) -> Result<(ServiceRecord, ServiceRecord), ShellError> {
        for _ in 0..CAS_RETRIES {
            let record = match read.take() {
                Some(record) => record,
                None => self.get(id).await?,
            };
            let scenario = self.scenario(&record.scenario)?.clone();
            let event = make(&record);
            let event = event.as_ref();
            let Applied {
                record: next,
                effects,
            } = machine::apply(&record, &scenario, event, self.now())?;
            match self.store.put(&next, Some(record.version)).await {
                Ok(()) => {
                    self.carry_out(&next, &effects).await;
                    if next.state != record.state {
                        info!(service_id = %id, from = ?record.state, to = ?next.state, event = event.name(), "Service changed state.");
                        self.tell_state(&next);
                    }
                    return Ok((record, next));
                }
                Err(StoreError::Conflict(_)) => {
                    debug!(service_id = %id, "Concurrent write; retrying.");
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ShellError::Contended(id.to_owned()))
    }

    async fn carry_out(&self, record: &ServiceRecord, effects: &[Effect]) {
        for effect in effects {
            match effect {
                Effect::EnteredQueue { .. }
                | Effect::AgentReleased { .. }
                | Effect::RoomEnded { .. } => self.route_wake.notify_one(),
                Effect::TimerArmed { .. } => self.timer_wake.notify_one(),
                Effect::WaitSample { queue, seconds } => {
                    self.sample(queue, SampleKind::Wait, *seconds).await
                }
                Effect::HandleSample { queue, seconds } => {
                    self.sample(queue, SampleKind::Handle, *seconds).await
                }
                Effect::NotifyDevice { id, tag } => {
                    if let Some(n) = record.outbox.iter().find(|n| &n.id == id) {
                        self.to_device(record, tag, n.payload.clone(), Some(id.clone()));
                    }
                }
                Effect::NotifyAgent { agent, id, tag } => {
                    let kept = record.agent_outbox.iter().rev().find(|n| &n.id == id);
                    if let (Some(agent), Some(n)) = (agent, kept) {
                        let payload = serde_json::json!({"message": n.message, "tag": n.tag});
                        self.to_agent(record, agent, tag, payload, Some(id.clone()));
                    }
                }
                Effect::PushDevice { tag, payload } => {
                    self.to_device(record, tag, payload.clone(), None);
                }
                Effect::PushAgent {
                    agent: Some(agent),
                    tag,
                    payload,
                } => self.to_agent(record, agent, tag, payload.clone(), None),
                Effect::PushAgent { agent: None, .. } => {}
                Effect::Appointment { change } => self.appointment(record, change).await,
                Effect::OpenRoom | Effect::LinkAgent => {
                    let _ = self.open_room_tx.send(record.id.clone());
                }
                Effect::LeftQueue { .. }
                | Effect::AgentReserved { .. }
                | Effect::TimerCancelled { .. } => {}
            }
        }
    }

    /// Tells the customer and the agents about a booked appointment, as the
    /// scenario's `_schedule.notifications` say. Sent in the background:
    /// SMTP must not hold up the request. A node that dies between the write
    /// and the send loses that message (see ARCHITECTURE, "Bookings").
    async fn appointment(&self, record: &ServiceRecord, change: &machine::AppointmentChange) {
        use crate::appointments::{AppointmentNotice, NoticeKind, SmsTarget};
        use machine::AppointmentChange as C;
        let (Some(booking), Some(schedule)) = (
            record.booking.as_ref(),
            self.scenarios
                .get(&record.scenario)
                .and_then(|s| s.schedule.as_ref()),
        ) else {
            return;
        };
        let n = &schedule.notifications;
        let field = |name: &str| {
            let value = if name == "_customer_number" {
                Some(record.customer_number.clone())
            } else {
                record.user_data.get(name).cloned()
            };
            value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
        };
        let kind = match change {
            C::Booked => NoticeKind::Booked,
            C::Rescheduled { previous_start } => NoticeKind::Rescheduled {
                previous_start: *previous_start,
            },
            C::Cancelled => NoticeKind::Cancelled,
            C::Reminder => NoticeKind::Reminder,
        };
        let reminder = kind == NoticeKind::Reminder;
        let customer_email = if (reminder && n.reminder_email) || (!reminder && n.customer_email) {
            field(&n.email_field)
        } else {
            None
        };
        let agent_emails = if n.agent_email && !reminder {
            match self.store.agents().await {
                Ok(agents) => agents
                    .into_iter()
                    .filter(|a| a.profile.queues.contains(&record.ticket.queue))
                    .filter_map(|a| a.profile.email)
                    .collect(),
                Err(e) => {
                    warn!(service_id = %record.id, error = %e, "Agents for the invite could not be read.");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let sms = match (&n.sms_url, reminder && n.reminder_sms) {
            (Some(url), true) => field(&n.phone_field).map(|to| SmsTarget {
                url: url.clone(),
                to,
            }),
            _ => None,
        };
        if customer_email.is_none() && agent_emails.is_empty() && sms.is_none() {
            return;
        }
        let timezone = booking.timezone.parse().unwrap_or(schedule.timezone);
        self.notifier.spawn(AppointmentNotice {
            kind,
            service_id: record.id.clone(),
            title: schedule.title.clone(),
            start: booking.slot,
            end: booking.slot_end,
            timezone,
            sequence: booking.sequence,
            join_url: booking.join_url.clone(),
            customer_name: field(&n.name_field),
            customer_email,
            agent_emails,
            sms,
        });
    }

    /// Sends a notification to the device that owns the service: by HTTP
    /// POST for `_device_os=httpcb`, else to its push clients on any node.
    /// `kept` names the outbox notification it carries.
    fn to_device(
        &self,
        record: &ServiceRecord,
        tag: &str,
        data: serde_json::Value,
        kept: Option<String>,
    ) {
        let Some(device) = record.device_notification_id.clone() else {
            return;
        };
        let delivery = Delivery {
            service_id: record.id.clone(),
            audience: Audience::Device { device },
            tag: tag.to_owned(),
            data,
            notification: kept,
        };
        if record.device_os.as_deref() != Some(push::httpcb::DEVICE_OS) {
            self.fanout.deliver(delivery);
            return;
        }
        let Some(policy) = self.scenarios.get(&record.scenario).and_then(|s| {
            Some(Policy {
                url: s.httpcb_url.clone()?,
                attempts: s.httpcb_attempts,
                backoff: s.httpcb_backoff,
                timeout: s.httpcb_timeout,
            })
        }) else {
            return;
        };
        let httpcb = self.httpcb.clone();
        let registry = self.registry().clone();
        tokio::spawn(async move {
            if let Outcome::Delivered { .. } = httpcb.post(&policy, &delivery).await {
                registry.acknowledge(&delivery);
            }
        });
    }

    fn to_agent(
        &self,
        record: &ServiceRecord,
        agent: &str,
        tag: &str,
        data: serde_json::Value,
        kept: Option<String>,
    ) {
        self.fanout.deliver(Delivery {
            service_id: record.id.clone(),
            audience: Audience::Agent {
                agent: agent.to_owned(),
            },
            tag: tag.to_owned(),
            data,
            notification: kept,
        });
    }

    /// Tells the device the service's new state (and thereby that it owns it).
    fn tell_state(&self, record: &ServiceRecord) {
        if let Some((tag, payload)) = machine::state_notice(record) {
            self.to_device(record, &tag, payload, None);
        }
    }

    /// Applies an event whose only outcome is what it tells (typing): the
    /// record is read and checked, nothing is written.
    pub async fn signal(&self, id: &str, event: &Event) -> Result<(), ShellError> {
        let record = self.get(id).await?;
        self.signal_on(&record, event).await
    }

    /// [`Shell::signal`] on a record the caller has just read.
    pub async fn signal_on(&self, record: &ServiceRecord, event: &Event) -> Result<(), ShellError> {
        let scenario = self.scenario(&record.scenario)?.clone();
        let applied = machine::apply(record, &scenario, event, self.now())?;
        self.carry_out(record, &applied.effects).await;
        Ok(())
    }

    /// Takes what the push clients received out of the outboxes, a batch
    /// at a time, one write per service.
    async fn pushed_task(
        self: Arc<Self>,
        mut pushed: mpsc::Receiver<Pushed>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut batch = Vec::with_capacity(PUSHED_BATCH);
        loop {
            tokio::select! {
                n = pushed.recv_many(&mut batch, PUSHED_BATCH) => if n == 0 { return },
                _ = shutdown.changed() => return,
            }
            let mut by_service: std::collections::BTreeMap<String, (Vec<String>, Vec<String>)> =
                Default::default();
            for p in batch.drain(..) {
                let entry = by_service.entry(p.service_id).or_default();
                if p.to_agent {
                    entry.1.push(p.notification);
                } else {
                    entry.0.push(p.notification);
                }
            }
            for (id, (device, agent)) in by_service {
                let event = Event::NotificationsPushed { device, agent };
                match self.transition(&id, &event).await {
                    Ok(_) => debug!(service_id = %id, "Pushed notifications left the outbox."),
                    // Retrieved meanwhile, or the service is gone: nothing to do.
                    Err(ShellError::NotAllowed(_)) | Err(ShellError::UnknownService(_)) => {}
                    Err(e) => {
                        warn!(service_id = %id, error = %e, "Pushed notifications stay in the outbox.")
                    }
                }
            }
        }
    }

    /// Opens the rooms that transitions asked for, one service at a time.
    async fn open_room_task(
        self: Arc<Self>,
        mut ids: mpsc::UnboundedReceiver<String>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let id = tokio::select! {
                id = ids.recv() => match id { Some(id) => id, None => return },
                _ = shutdown.changed() => return,
            };
            match self.prepare_room(&id).await {
                Ok(record) => {
                    let code = record.room_code().unwrap_or_default().to_owned();
                    info!(service_id = %id, room = %code, "Video room ready for its agent.");
                }
                // Opened meanwhile (the agent asked), or the service ended.
                Err(ShellError::NotAllowed(_)) | Err(ShellError::UnknownService(_)) => {}
                Err(e) => warn!(service_id = %id, error = %e, "Video room not opened."),
            }
        }
    }

    /// The `[_video]` config a service's rooms are made with: its leg's
    /// scenario's, else its own scenario's, else the defaults.
    pub fn video_config(&self, record: &ServiceRecord) -> Cow<'_, VideoConfig> {
        let from = |name: &str| self.scenarios.get(name).and_then(|s| s.video_config());
        record
            .video
            .as_ref()
            .and_then(|v| from(&v.scenario))
            .or_else(|| from(&record.scenario))
            .unwrap_or_default()
    }

    /// Who the room's links name: the customer's chat nickname or number, and the agent.
    fn room_names(record: &ServiceRecord) -> (String, Option<String>) {
        let customer = record
            .chat
            .as_ref()
            .map(|c| c.nickname.clone())
            .or_else(|| record.user_data.get("name").cloned())
            .unwrap_or_else(|| record.customer_number.clone());
        let agent = record
            .video
            .as_ref()
            .and_then(|v| v.agent.clone())
            .or_else(|| record.agent.clone());
        (customer, agent)
    }

    /// Readies the room of a leg whose agent just connected: a new room when
    /// it has none live (`Effect::OpenRoom`), else that agent's link in the
    /// live one (`Effect::LinkAgent`).
    async fn prepare_room(&self, id: &str) -> Result<ServiceRecord, ShellError> {
        let record = self.get(id).await?;
        let agent = record.video.as_ref().and_then(|v| v.agent.clone());
        let Some((agent, room)) = agent.zip(record.live_room().cloned()) else {
            return self.open_room(id).await;
        };
        if !room.needs_agent_link(&agent) {
            return Ok(record);
        }
        let config = self.video_config(&record).into_owned();
        let made = self.transition_built(id, Some(record), |_| {
            let (url, token) = self.rooms.agent_link(
                &config,
                &room.code,
                Some(&agent),
                self.now(),
                room.expires_at,
            );
            Cow::Owned(Event::AgentLinked {
                agent: agent.clone(),
                url,
                token,
            })
        });
        made.await.map(|(_, after)| after)
    }

    /// Opens a room for a service's video leg that has an agent and no live
    /// room (a booked appointment was taken, or the agent calls again).
    pub async fn open_room(&self, id: &str) -> Result<ServiceRecord, ShellError> {
        let mut last = None;
        for _ in 0..ROOM_CODE_ATTEMPTS {
            let made = self.transition_built(id, None, |record| {
                let (customer, agent) = Self::room_names(record);
                let config = self.video_config(record);
                let room = self
                    .rooms
                    .make(&config, &customer, agent.as_deref(), self.now());
                Cow::Owned(Event::OpenRoom { room })
            });
            match made.await {
                Err(ShellError::Store(e @ StoreError::RoomTaken { .. })) => last = Some(e),
                other => return other.map(|(_, after)| after),
            }
        }
        Err(last.map_or_else(|| ShellError::Contended(id.to_owned()), ShellError::from))
    }

    /// Starts video on `record` (as the caller read it): the room is made
    /// here, the machine decides whether the chat's agent takes it or it is
    /// routed by `routing`.
    pub async fn start_video(
        &self,
        record: ServiceRecord,
        by: Party,
        video: &Scenario,
        routing: RoutingData,
        conversation_id: Option<String>,
    ) -> Result<ServiceRecord, ShellError> {
        let config = video.video_config().unwrap_or_default();
        let id = record.id.clone();
        let id = id.as_str();
        let mut read = Some(record);
        let mut last = None;
        for _ in 0..ROOM_CODE_ATTEMPTS {
            let record = match read.take() {
                Some(record) => record,
                None => self.get(id).await?,
            };
            // The chat's agent can take the video unless it is in another room.
            let agent_free = match &record.agent {
                Some(agent) => match self.store.agent(agent).await? {
                    Some(a) => a.room.as_deref().is_none_or(|r| r == id),
                    None => false,
                },
                None => false,
            };
            let made = self.transition_built(id, Some(record), |record| {
                let (customer, agent) = Self::room_names(record);
                let agent = agent.filter(|_| agent_free);
                let room = self
                    .rooms
                    .make(&config, &customer, agent.as_deref(), self.now());
                Cow::Owned(Event::StartVideo {
                    by,
                    routing: routing.clone(),
                    scenario: video.name.clone(),
                    conversation_id: conversation_id.clone(),
                    room: Box::new(room),
                    agent_free,
                })
            });
            match made.await {
                // A taken code gets a new one; an agent that entered another
                // room meanwhile is seen as busy on the next read.
                Err(ShellError::Store(
                    e @ (StoreError::RoomTaken { .. } | StoreError::AgentInRoom { .. }),
                )) => last = Some(e),
                other => return other.map(|(_, after)| after),
            }
        }
        Err(last.map_or_else(|| ShellError::Contended(id.to_owned()), ShellError::from))
    }

    async fn sample(&self, queue: &str, kind: SampleKind, seconds: f64) {
        // A lost sample only makes the EWT a little less precise.
        if let Err(e) = self.store.add_sample(queue, kind, seconds).await {
            warn!(queue, error = %e, "Queue sample not stored.");
        }
    }

    /// Asks the router to run a pass soon (an agent became ready, for example).
    pub fn wake_router(&self) {
        self.route_wake.notify_one();
    }

    /// One routing pass: plan reservations, then make each through the machine.
    pub async fn route_once(&self) -> Result<usize, ShellError> {
        // Agents first: with nobody free there is nothing to plan, and the
        // queues (the bulk of the reading) need not be read at all.
        let agents = self.store.agents().await?;
        let open: std::collections::BTreeSet<&str> = agents
            .iter()
            .filter(|a| a.ready && a.has_room())
            .flat_map(|a| a.profile.queues.iter().map(String::as_str))
            .collect();
        if open.is_empty() {
            return Ok(0);
        }
        let mut queues = Vec::new();
        for name in self.store.queues().await? {
            if open.contains(name.as_str()) {
                let entries = self.store.queue(&name).await?;
                queues.push((name, entries));
            }
        }
        if queues.is_empty() {
            return Ok(0);
        }
        let mut reserved = 0;
        for assignment in routing::plan(&queues, &agents) {
            let event = Event::AgentReserved {
                agent: assignment.agent.clone(),
            };
            match self.transition(&assignment.service, &event).await {
                Ok(_) => {
                    reserved += 1;
                    info!(service_id = %assignment.service, agent_id = %assignment.agent, "Agent reserved.");
                }
                // The plan was made from a snapshot; losing a race is expected.
                Err(ShellError::NotAllowed(_))
                | Err(ShellError::UnknownService(_))
                | Err(ShellError::Store(StoreError::AgentUnavailable { .. }))
                | Err(ShellError::Store(StoreError::AgentInRoom { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(reserved)
    }

    /// Fires every timer that is due now, several at a time (a backlog after
    /// an outage must not be worked off one round trip after another).
    pub async fn fire_due_timers(&self) -> Result<usize, ShellError> {
        use futures_util::stream::{self, StreamExt};
        let mut fired = 0;
        loop {
            let due = self
                .store
                .claim_due_timers(self.now(), TIMER_LEASE, 256)
                .await?;
            if due.is_empty() {
                return Ok(fired);
            }
            let results: Vec<Result<bool, ShellError>> = stream::iter(due)
                .map(|timer| async move {
                    let event = Event::TimerFired {
                        kind: timer.kind,
                        due: timer.due,
                    };
                    match self.transition(&timer.id, &event).await {
                        Ok(_) => Ok(true),
                        // Re-armed, cancelled or expired meanwhile: nothing to do.
                        Err(ShellError::NotAllowed(_)) | Err(ShellError::UnknownService(_)) => {
                            Ok(false)
                        }
                        Err(e) => Err(e),
                    }
                })
                .buffer_unordered(TIMER_CONCURRENCY)
                .collect()
                .await;
            let before = fired;
            for result in results {
                // A timer that failed stays claimed; it comes due again after the lease.
                fired += usize::from(result?);
            }
            if fired == before {
                // Nothing in this batch could fire; asking again would spin.
                return Ok(fired);
            }
        }
    }

    /// Starts the router, the timer loop and the sweeper; they end when `shutdown` flips.
    /// `timer_wakeups` is pinged when another node armed a timer.
    pub fn spawn_background(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
        timer_wakeups: Option<watch::Receiver<()>>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![
            tokio::spawn(self.clone().router_task(shutdown.clone())),
            tokio::spawn(self.clone().timer_task(shutdown.clone(), timer_wakeups)),
            tokio::spawn(self.clone().sweeper_task(shutdown.clone())),
            tokio::spawn(self.registry().clone().sweeper()),
            tokio::spawn(crate::positions::positions_task(
                self.clone(),
                shutdown.clone(),
            )),
        ];
        let open_rooms = self
            .open_room_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(open_rooms) = open_rooms {
            tasks.push(tokio::spawn(
                self.clone().open_room_task(open_rooms, shutdown.clone()),
            ));
        }
        let pushed = self.pushed.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(pushed) = pushed {
            tasks.push(tokio::spawn(self.clone().pushed_task(pushed, shutdown)));
        }
        tasks
    }

    async fn router_task(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.route_once().await {
                warn!(error = %e, "Routing pass failed.");
            }
            tokio::select! {
                _ = self.route_wake.notified() => {}
                _ = tokio::time::sleep(ROUTER_BACKSTOP) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn timer_task(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
        mut wakeups: Option<watch::Receiver<()>>,
    ) {
        let mut failing = false;
        loop {
            let result = self.fire_due_timers().await;
            // Sleep until the next due timer; a newly armed earlier one (here,
            // or on another node through `wakeups`) wakes us.
            let next = match result {
                Ok(_) => self.store.next_timer().await,
                Err(e) => Err(e.into_store_error()),
            };
            let sleep_for = match next {
                Ok(next) => {
                    if std::mem::take(&mut failing) {
                        info!("Timers are firing again.");
                    }
                    next.map_or(TIMER_BACKSTOP, |due| {
                        (due - self.now()).to_std().unwrap_or(Duration::ZERO)
                    })
                    .min(TIMER_BACKSTOP)
                }
                Err(e) => {
                    // One warning per outage, not one per retry.
                    if !std::mem::replace(&mut failing, true) {
                        warn!(error = %e, "Timers cannot be read; retrying every second.");
                    }
                    Duration::from_secs(1)
                }
            };
            let other_node = async {
                match wakeups.as_mut() {
                    Some(rx) => {
                        if rx.changed().await.is_err() {
                            std::future::pending::<()>().await
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.timer_wake.notified() => {}
                _ = other_node => {}
                _ = tokio::time::sleep(sleep_for) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn sweeper_task(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            match self.store.purge_expired(self.now()).await {
                Ok(0) => {}
                Ok(n) => info!(purged = n, "Expired services removed."),
                Err(e) => warn!(error = %e, "Sweeping expired services failed."),
            }
        }
    }
}

/// A clock that follows tokio's time, so `tokio::time::pause()` in tests
/// moves the engine's "now" together with the timers.
pub struct TokioClock {
    base_utc: DateTime<Utc>,
    base: tokio::time::Instant,
}

impl TokioClock {
    pub fn new(base_utc: DateTime<Utc>) -> Self {
        TokioClock {
            base_utc,
            base: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.base;
        self.base_utc + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero())
    }
}
