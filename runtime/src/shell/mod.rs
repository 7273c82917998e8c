//! The async shell around the pure engine.
//!
//! Every change to a service goes through [`Shell::transition`]: read the
//! record, apply the event with `engine::machine::apply`, write it back with
//! compare-and-set (retrying on a concurrent write), then carry out the
//! effects. Background tasks drive the rest, one file each:
//!
//! - [`router`](self::router): wakes when a service enters a queue or an
//!   agent gets room, and reserves agents for waiting services;
//! - [`timers`](self::timers): sleeps until the store's next due timer (or
//!   until a new, earlier one is armed) and fires it through the same
//!   `transition`; sweeps expired records;
//! - [`delivery`](self::delivery): sends notifications to devices and agent
//!   desktops, and takes what was pushed out of the outboxes;
//! - [`rooms`](self::rooms): makes and opens video rooms;
//! - [`appointments`](self::appointments): turns appointment effects into
//!   notices (ICS, e-mail, SMS).
//!
//! All of them stop on the one shutdown signal.

mod appointments;
mod delivery;
mod keys;
mod queries;
mod rooms;
mod router;
mod throttle;
mod timers;
mod webhooks;

pub use webhooks::{signature, Attempt, WebhookSecrets};

pub use throttle::{create_guard, CreateRequest, IDEMPOTENCY_KEEP, IDEMPOTENCY_LEASE};

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use engine::clock::Clock;
use engine::machine::{self, Applied, Effect, Event, NewService, TransitionError};
use engine::record::{ServiceRecord, ServiceState};
use engine::scenario::{Scenario, Scenarios};
use engine::stats::SampleKind;
use engine::store::{Store, StoreError};
use push::httpcb::HttpCallbacks;
use push::outbound::HttpPost;
use push::{Fanout, Pushed, Registry, Relay};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, info, warn};

use crate::notices::Notifier;
use crate::room_maker::RoomMaker;

/// How often a transition is retried when another writer got there first.
const CAS_RETRIES: usize = 16;

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
    /// A throttle of the scenario is used up; `what` names it.
    #[error("{what}")]
    Throttled {
        what: String,
        retry_after: std::time::Duration,
    },
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

/// What a [`Shell`] is built from.
pub struct Parts {
    pub store: Arc<dyn Store>,
    pub scenarios: Scenarios,
    pub clock: Arc<dyn Clock>,
    /// Bounds of the push side (clients, queues, timeouts).
    pub limits: push::Limits,
    /// Carries deliveries to the other nodes (None: this is the only one).
    pub relay: Option<Arc<dyn Relay>>,
    /// Sends appointment e-mails and SMS.
    pub notifier: Arc<Notifier>,
    /// Makes video rooms.
    pub rooms: Arc<RoomMaker>,
    /// Posts httpcb notifications and webhooks. It must not follow redirects.
    pub http: Arc<dyn HttpPost>,
    /// The keys that sign each scenario's webhooks.
    pub webhook_secrets: WebhookSecrets,
}

/// The runtime of one node: it owns the store, the scenarios and the push
/// side, and is the only way to change a service.
pub struct Shell {
    store: Arc<dyn Store>,
    scenarios: Scenarios,
    clock: Arc<dyn Clock>,
    /// This node's push clients, and the way to every node's.
    fanout: Arc<Fanout>,
    httpcb: HttpCallbacks,
    /// What the push transports handed over; taken by the background task.
    pushed: std::sync::Mutex<Option<mpsc::Receiver<Pushed>>>,
    route_wake: Notify,
    /// An agent may have room it had not (ready, released, out of a room):
    /// the router must not wait out its idle pause.
    agents_changed: std::sync::atomic::AtomicBool,
    /// Wakes the router out of its idle pause, which only an agent's change
    /// ends early: services entering a queue meanwhile notify `route_wake`
    /// alone, which then holds one permit for the pass after the pause,
    /// rather than waking the router for nothing on every create.
    agent_wake: Notify,
    /// The last routing pass found no agent free, so a service entering a
    /// queue changes nothing until an agent does (see `router_task`).
    nobody_free: std::sync::atomic::AtomicBool,
    timer_wake: Notify,
    /// When the timer loop sleeps until (ms since the epoch), or
    /// `i64::MIN` while it is awake: a timer armed for later needs no
    /// wake-up.
    timer_sleeps_until: std::sync::atomic::AtomicI64,
    /// Appointment e-mails and SMS.
    notifier: Arc<Notifier>,
    /// Makes video rooms (codes, tokens, links).
    rooms: Arc<RoomMaker>,
    /// Services whose video leg needs a room (`Effect::OpenRoom`); the
    /// background task opens them, so a transition never waits on another.
    open_room_tx: mpsc::UnboundedSender<String>,
    open_room_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    http: Arc<dyn HttpPost>,
    webhook_secrets: WebhookSecrets,
}

impl Shell {
    pub fn new(parts: Parts) -> Arc<Shell> {
        let Parts {
            store,
            scenarios,
            clock,
            limits,
            relay,
            notifier,
            rooms,
            http,
            webhook_secrets,
        } = parts;
        let (registry, pushed) = Registry::new(limits);
        let (open_room_tx, open_room_rx) = mpsc::unbounded_channel();
        Arc::new(Shell {
            store: Arc::new(crate::metered_store::MeteredStore(store)),
            scenarios,
            clock,
            fanout: Fanout::new(registry, relay),
            httpcb: HttpCallbacks::new(http.clone(), delivery::HTTPCB_IN_FLIGHT),
            pushed: std::sync::Mutex::new(Some(pushed)),
            route_wake: Notify::new(),
            agents_changed: std::sync::atomic::AtomicBool::new(false),
            agent_wake: Notify::new(),
            nobody_free: std::sync::atomic::AtomicBool::new(false),
            timer_wake: Notify::new(),
            timer_sleeps_until: std::sync::atomic::AtomicI64::new(i64::MIN),
            notifier,
            rooms,
            open_room_tx,
            open_room_rx: std::sync::Mutex::new(Some(open_room_rx)),
            http,
            webhook_secrets,
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
    ) -> Result<Arc<ServiceRecord>, ShellError> {
        let cause = crate::cause::current();
        let machine::Applied {
            mut record,
            effects,
        } = machine::create_by(new, scenario, self.now(), cause.as_deref());
        // Shared with the store: the embedded store keeps this very record
        // rather than a copy of it, so without the room its lists grew.
        record.shrink_to_fit();
        let record = Arc::new(record);
        // The scenario's in-queue check and cap are counted in the write.
        self.store
            .put_new_shared(&record, &create_guard(scenario))
            .await?;
        // Counted in the metrics; a line per create would be most of the log.
        debug!(service_id = %record.id, scenario = %scenario.name, state = ?record.state, "Service created.");
        crate::metrics::kept::counter(
            crate::metrics::SERVICES_CREATED,
            &[("scenario", &scenario.name)],
        )
        .increment(1);
        self.carry_out(&record, &effects).await;
        self.to_supervisors(&record);
        Ok(record)
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
            } = machine::apply_by(
                &record,
                &scenario,
                event,
                self.now(),
                crate::cause::current().as_deref(),
            )?;
            match self.store.put(&next, Some(record.version)).await {
                Ok(()) => {
                    self.carry_out(&next, &effects).await;
                    if next.agent != record.agent && !next.preview_pending {
                        if let Some(agent) = &next.agent {
                            // The desk learns of the reservation at once (a
                            // preview has its own offer; GMS's offer itself
                            // comes when the customer is there).
                            // In the agent channel's shape: the message as
                            // JSON text, and its tag.
                            let tag = format!("agent.reserved.{id}");
                            let message = serde_json::json!({
                                "_id": id,
                                "_action": "reserved",
                                "_service_name": next.scenario,
                                "_callback_state": next.state.gms_name(),
                                "_customer_number": next.customer_number,
                            });
                            self.to_agent(
                                &next,
                                agent,
                                &tag,
                                serde_json::json!({"message": message.to_string(), "tag": tag}),
                                None,
                            );
                        }
                    }
                    if next.state != record.state
                        || next.agent != record.agent
                        || next.ticket.queue != record.ticket.queue
                        || next.desired_time != record.desired_time
                    {
                        self.to_supervisors(&next);
                    }
                    match event {
                        Event::AgentRejected { .. } => {
                            crate::metrics::offer_answered(&next.scenario, "rejected")
                        }
                        Event::AgentAccepted { .. } => {
                            crate::metrics::offer_answered(&next.scenario, "accepted")
                        }
                        Event::TimerFired {
                            kind: engine::record::TimerKind::AgentPreview,
                            ..
                        } => crate::metrics::offer_answered(&next.scenario, "timed_out"),
                        _ => {}
                    }
                    if next.state != record.state {
                        debug!(service_id = %id, from = ?record.state, to = ?next.state, event = event.name(), "Service changed state.");
                        crate::metrics::transition(&next.scenario, record.state, next.state);
                        if let (ServiceState::Completed, Some(reason)) = (next.state, next.reason) {
                            metrics::counter!(crate::metrics::SERVICES_COMPLETED, "scenario" => next.scenario.clone(), "reason" => reason.gms_name())
                                .increment(1);
                        }
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
                Effect::EnteredQueue { .. } => self.route_wake.notify_one(),
                Effect::AgentReleased { .. } | Effect::RoomEnded { .. } => self.wake_router(),
                Effect::TimerArmed { due, .. } => {
                    use std::sync::atomic::Ordering;
                    // The loop looks at the store before it sleeps; only a
                    // timer due before it wakes needs to wake it.
                    let until = self.timer_sleeps_until.load(Ordering::SeqCst);
                    if due.timestamp_millis() < until || until == i64::MIN {
                        self.timer_wake.notify_one();
                    }
                }
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
                // The state push is not kept either: the state can be read again.
                Effect::PushDevice { tag, payload } => {
                    self.to_device(record, tag, payload.clone(), None);
                }
                Effect::StateNotice => self.state_to_device(record),
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
                Effect::AgentReserved { .. } => {
                    metrics::counter!(crate::metrics::AGENT_OFFERS, "scenario" => record.scenario.clone())
                        .increment(1);
                }
                Effect::AgentNotReady { agent } => {
                    // The record is written: a store failure here leaves the
                    // agent ready, which the router's exclusion already covers
                    // for this service; the supervisor sees the warning.
                    match self.store.set_agent_ready(agent, false).await {
                        Ok(_) => {
                            info!(service_id = %record.id, agent_id = %agent, "Agent set not ready: its preview timed out.")
                        }
                        Err(e) => {
                            warn!(service_id = %record.id, agent_id = %agent, error = %e, "Could not set the agent not ready after its preview timed out.")
                        }
                    }
                }
                Effect::LeftQueue { .. } | Effect::TimerCancelled { .. } => {}
            }
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

    async fn sample(&self, queue: &str, kind: SampleKind, seconds: f64) {
        // A lost sample only makes the EWT a little less precise.
        if let Err(e) = self.store.add_sample(queue, kind, seconds).await {
            warn!(queue, error = %e, "Queue sample not stored.");
        }
    }

    /// Starts the router, the timer loop, the sweepers, positions, room
    /// opening and outbox clean-up; they end when `shutdown` flips.
    /// `timer_wakeups` is pinged when another node armed a timer; `relayed`
    /// brings the other nodes' deliveries (None: this is the only node).
    pub fn spawn_background(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
        timer_wakeups: Option<watch::Receiver<()>>,
        relayed: Option<push::fanout::Inbound>,
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
        if let Some(relayed) = relayed {
            tasks.push(tokio::spawn(
                self.clone().relayed_task(relayed, shutdown.clone()),
            ));
        }
        let pushed = self.pushed.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(pushed) = pushed {
            tasks.push(tokio::spawn(self.clone().pushed_task(pushed, shutdown)));
        }
        tasks
    }
}
