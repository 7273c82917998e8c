//! Test support for the engine and the crates above it (feature `testing`).
//!
//! One harness instead of the walk helpers each test file used to copy:
//!
//! - Time: every test starts at [`t0`]; [`secs`]`(n)` is n seconds later.
//! - Scenarios: [`ScenarioBuilder`] writes the TOML an admin would
//!   (`chat_delay()`, `chat_immediate()`, `video_call()`, or `new(name)`),
//!   with keys and tables changed, and parses it with the real parser.
//! - Walks: a service is created at t0 and taken through [`Step`]s
//!   ([`at`] a second, or [`fire`] an armed timer) by [`run`]; [`check`]
//!   compares where it ended and the effects of the last step, as compact
//!   kinds ([`effect_kind`]); [`check_ignoring`] leaves some kinds out.
//! - The state × event table: [`event_table!`](crate::event_table) lists one
//!   line per event (and per timer kind) with its outcome in each row state;
//!   an event without a line does not compile ([`run_table`] runs it).
//!
//! Nothing here is used by the engine itself: it is compiled only for tests.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::machine::{self, Applied, Effect, Event, NewService, TransitionError};
use crate::record::{CallbackReason, Party, ServiceRecord, ServiceState, TimerKind};
use crate::scenario::{Scenario, ScenarioError};
use crate::video::{ProviderConfig, Room, RoomLink, RoutingData, VideoConfig, VideoLeg};

/// The service id of GMS's own example.
pub const ID: &str = "369-166652d2-aed6-443c-9781-6bdff370f9a9";
/// The customer number of GMS's own example.
pub const CUSTOMER: &str = "4082652649";
/// The device notification id of a comet device.
pub const DEVICE: &str = "b16416334828b1d26ef14f329628b55b5a8c631d8928a371a5584722dd7fb673";
/// Seconds a test room's code lasts ([`room`]).
pub const ROOM_TTL: i64 = 600;

/// The moment every walk starts: services are created then.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap()
}

/// `n` seconds after [`t0`] (before it when negative).
pub fn secs(n: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(n)
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// A scenario file: top-level `key = value` lines in order, then tables.
///
/// Values are TOML text (`.key("_ttl", "60")`, `.key("_on_user_confirm_timeout",
/// r#""fail""#)`). A table's body may hold its sub-tables
/// (`.video("room_ttl = \"1h\"\n\n[_video.provider]\nkind = \"relay\"")`).
#[derive(Debug, Clone)]
pub struct ScenarioBuilder {
    keys: Vec<(String, String)>,
    tables: Vec<(String, String)>,
    /// TOML written after everything else (arrays of tables: `[[_webhook]]`).
    raw: Vec<String>,
}

impl ScenarioBuilder {
    /// The least a chat scenario needs: queue `support`, waits for an agent
    /// and for the customer to confirm, kept a day.
    pub fn new(name: &str) -> ScenarioBuilder {
        ScenarioBuilder {
            keys: Vec::new(),
            tables: Vec::new(),
            raw: Vec::new(),
        }
        .name(name)
        .key("_media_type", r#""chat""#)
        .key("_wait_for_agent", "true")
        .key("_wait_for_user_confirm", "true")
        .key("_ttl", "86400")
        .key("_target", r#"{ queue = "support", priority = 0 }"#)
    }

    /// GMS "Chat Delayed", as in scenarios/chat-delay.toml (without its texts).
    pub fn chat_delay() -> ScenarioBuilder {
        ScenarioBuilder::new("chat-delay")
            .key("_ttl", "86400")
            .key("_user_confirm_timeout", r#""60s""#)
            .key("_on_user_confirm_timeout", r#""requeue""#)
            .key("_max_user_confirm_attempts", "3")
            .key("_find_agent_timeout", r#""2h""#)
            // Keys keep their place when set again: `_target` after the timeouts,
            // as the shipped file has it.
            .unset("_target")
            .key("_target", r#"{ queue = "support", priority = 0 }"#)
            .key("_mandatory_fields", r#"["_customer_number"]"#)
            .key("_chat_parameters", r#"{ subject = "None" }"#)
    }

    /// GMS "Chat Immediate", as in scenarios/chat-immediate.toml (without its
    /// texts and mandatory fields).
    pub fn chat_immediate() -> ScenarioBuilder {
        ScenarioBuilder::new("chat-immediate")
            .key("_wait_for_agent", "false")
            .key("_wait_for_user_confirm", "false")
            .key("_ttl", r#""24h""#)
            .key("_find_agent_timeout", r#""1h""#)
            .unset("_target")
            .key("_target", r#"{ queue = "support", priority = 0 }"#)
    }

    /// A video scenario (queue `video`), what a chat escalates to and what
    /// video calls are booked with: relay rooms of 7 characters good for ten
    /// minutes, and a survey out of 5.
    pub fn video_call() -> ScenarioBuilder {
        ScenarioBuilder::new("video-call")
            .key("_media_type", r#""video""#)
            .key("_wait_for_user_confirm", "false")
            .key("_ttl", r#""2h""#)
            .key("_find_agent_timeout", r#""30m""#)
            .unset("_target")
            .key("_target", r#"{ queue = "video", priority = 5 }"#)
            .video(
                "code_length = 7\nroom_ttl = \"10m\"\n\n\
                 [_video.provider]\nkind = \"relay\"\n\n\
                 [_video.survey]\nquestion = \"How was your call?\"\nscale = 5",
            )
    }

    /// Renames the scenario (and its file).
    pub fn name(self, name: &str) -> ScenarioBuilder {
        self.key("name", &format!("{name:?}"))
    }

    /// Sets a top-level key (in its place when it is there, else last);
    /// `value` is TOML text.
    pub fn key(mut self, key: &str, value: &str) -> ScenarioBuilder {
        match self.keys.iter_mut().find(|(k, _)| k == key) {
            Some(line) => line.1 = value.to_owned(),
            None => self.keys.push((key.to_owned(), value.to_owned())),
        }
        self
    }

    /// Sets each `(key, value)` in turn, as [`key`](Self::key).
    pub fn keys(self, keys: &[(&str, &str)]) -> ScenarioBuilder {
        keys.iter().fold(self, |b, (k, v)| b.key(k, v))
    }

    /// Removes a top-level key.
    pub fn unset(mut self, key: &str) -> ScenarioBuilder {
        self.keys.retain(|(k, _)| k != key);
        self
    }

    /// Sets table `[name]` to `body` (TOML text), replacing it when it is there.
    pub fn table(mut self, name: &str, body: &str) -> ScenarioBuilder {
        match self.tables.iter_mut().find(|(t, _)| t == name) {
            Some(table) => table.1 = body.to_owned(),
            None => self.tables.push((name.to_owned(), body.to_owned())),
        }
        self
    }

    /// Appends TOML as it is, after the keys and tables: for arrays of
    /// tables such as `[[_webhook]]`.
    pub fn raw(mut self, toml: &str) -> ScenarioBuilder {
        self.raw.push(toml.to_owned());
        self
    }

    /// Sets `[_video]`.
    pub fn video(self, body: &str) -> ScenarioBuilder {
        self.table("_video", body)
    }

    /// Removes table `[name]`.
    pub fn unset_table(mut self, name: &str) -> ScenarioBuilder {
        self.tables.retain(|(t, _)| t != name);
        self
    }

    /// Sets `[_schedule]`.
    pub fn schedule(self, body: &str) -> ScenarioBuilder {
        self.table("_schedule", body)
    }

    /// Sets `[_schedule]` to `keys` (`timezone`, `slot`, ...), open
    /// 00:00-24:00 every day ([`open_every_day`]) with `seats` seats a slot,
    /// then `tables` (more `[_schedule.*]` sub-tables, or nothing).
    pub fn always_open(self, keys: &str, seats: u32, tables: &str) -> ScenarioBuilder {
        self.schedule(&format!(
            "{}\n\n[_schedule.hours]\n{}\n[_schedule.capacity]\ndefault = {seats}\n\n{}",
            keys.trim_end(),
            open_every_day(),
            tables.trim()
        ))
    }

    /// The scenario's `name`, as set.
    pub fn scenario_name(&self) -> String {
        let value = self
            .keys
            .iter()
            .find(|(k, _)| k == "name")
            .map(|(_, v)| v.as_str())
            .unwrap_or("\"scenario\"");
        value.trim_matches('"').to_owned()
    }

    /// The file the scenario is written to: `<name>.toml`.
    pub fn file_name(&self) -> String {
        format!("{}.toml", self.scenario_name())
    }

    /// The file's text.
    pub fn toml(&self) -> String {
        let mut text: String = self
            .keys
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        for (name, body) in &self.tables {
            text.push_str(&format!("\n[{name}]\n{}\n", body.trim_end()));
        }
        for raw in &self.raw {
            text.push_str(&format!("\n{}\n", raw.trim_end()));
        }
        text
    }

    /// Parses the text with the real parser; errors name `test.toml`.
    pub fn parse(&self) -> Result<Scenario, ScenarioError> {
        Scenario::from_toml(Path::new("test.toml"), &self.toml())
    }

    /// The parsed scenario; panics with the text when it does not parse.
    pub fn build(&self) -> Arc<Scenario> {
        Arc::new(
            self.parse()
                .unwrap_or_else(|e| panic!("scenario does not parse: {e}\n{}", self.toml())),
        )
    }

    /// Writes the file into `dir` (as [`file_name`](Self::file_name)); returns its path.
    pub fn write_to(&self, dir: &Path) -> PathBuf {
        let path = dir.join(self.file_name());
        std::fs::write(&path, self.toml())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

/// The `[_schedule.hours]` lines of a schedule open all day, every day.
pub fn open_every_day() -> String {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| format!("{d} = [\"00:00-24:00\"]\n"))
        .collect()
}

// ---------------------------------------------------------------------------
// Services and events
// ---------------------------------------------------------------------------

/// GMS's example service, asked for now (no desired time), from a comet device.
pub fn new_service() -> NewService {
    NewService {
        id: ID.to_owned(),
        customer_number: CUSTOMER.to_owned(),
        desired_time: None,
        device_notification_id: Some(DEVICE.to_owned()),
        device_os: Some("comet".to_owned()),
        user_data: BTreeMap::from([("usr_customer_name".to_owned(), "Bob Markel".to_owned())]),
        booking: None,
        preferred_agent: None,
        video: None,
    }
}

pub fn reserved(agent: &str) -> Event {
    Event::AgentReserved {
        agent: agent.to_owned(),
    }
}

/// John starts the chat, with no chat parameters.
pub fn chat_started() -> Event {
    chat_started_with(&[])
}

/// John starts the chat with these chat parameters.
pub fn chat_started_with(parameters: &[(&str, &str)]) -> Event {
    Event::ChatStarted {
        nickname: "John".to_owned(),
        subject: "testing".to_owned(),
        parameters: parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

pub fn say(from: Party, text: &str) -> Event {
    Event::ChatMessage {
        from,
        text: text.to_owned(),
    }
}

pub fn chat_left(by: Party) -> Event {
    Event::ChatLeft { by }
}

pub fn typing(by: Party) -> Event {
    Event::ChatTyping { by, typing: true }
}

/// A reschedule without a booking (a scenario without `[_schedule]`).
pub fn reschedule_to(s: i64) -> Event {
    Event::Reschedule {
        desired_time: secs(s),
        booking: None,
        changes: Default::default(),
    }
}

/// The agent desktop's notification to the device.
pub fn internal_notification() -> Event {
    Event::InternalNotification {
        display: "Message to be displayed to user".to_owned(),
        application: "MESSAGE_FOR_MOBILE_APP_INTERNAL_USE".to_owned(),
    }
}

/// The device's notification to the agent desktop.
pub fn agent_notification() -> Event {
    Event::AgentNotification {
        display: "Message to be displayed to agent".to_owned(),
        application: "MESSAGE_FOR_AGENT_DESKTOP_INTERNAL_USE".to_owned(),
    }
}

/// Pushed notifications that no outbox holds.
pub fn pushed_unknown() -> Event {
    Event::NotificationsPushed {
        device: vec!["n-unknown".to_owned()],
        agent: vec!["a-unknown".to_owned()],
    }
}

/// A webhook round about events the record does not hold.
pub fn webhooks_unknown() -> Event {
    Event::WebhooksAttempted {
        delivered: vec!["msg_unknown_1".to_owned()],
        failed: vec![("msg_unknown_2".to_owned(), "refused".to_owned())],
    }
}

pub fn customer_url(code: &str) -> String {
    format!("https://callbackd.example/room/{code}?token=cust-{code}")
}

pub fn agent_url(code: &str) -> String {
    format!("https://callbackd.example/room/{code}?token=agent-{code}")
}

/// A fresh room of this provider opened at second `opened`, its code good
/// for [`ROOM_TTL`].
pub fn room_with(code: &str, provider: &str, opened: i64) -> Room {
    let provider = match provider {
        "relay" => ProviderConfig::default(),
        "template" => ProviderConfig::Template {
            url: "https://meet.example/{room}".to_owned(),
            jwt: None,
        },
        other => panic!("no provider {other:?}: relay or template"),
    };
    let config = VideoConfig {
        provider,
        room_ttl: std::time::Duration::from_secs(ROOM_TTL as u64),
        ..VideoConfig::default()
    };
    let link = |url: String, token: String| RoomLink { url, token };
    Room::new(
        &config,
        code.to_owned(),
        secs(opened),
        link(customer_url(code), format!("cust-{code}")),
        link(agent_url(code), format!("agent-{code}")),
        None,
    )
}

/// A fresh relay room opened at second `opened`.
pub fn room(code: &str, opened: i64) -> Room {
    room_with(code, "relay", opened)
}

/// The routing data of a video: queue `video`, skill `video`, priority 7.
pub fn routing(preferred: Option<&str>) -> RoutingData {
    RoutingData {
        queue: "video".to_owned(),
        skills: Some("video".to_owned()),
        priority: 7,
        attributes: BTreeMap::from([("lang".to_owned(), "en".to_owned())]),
        preferred_agent: preferred.map(str::to_owned),
    }
}

// ---------------------------------------------------------------------------
// Walks
// ---------------------------------------------------------------------------

/// One step of a walk.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a test table: size does not matter
pub enum Step {
    /// This event, this many seconds after t0.
    At(i64, Event),
    /// The record's armed timer of this kind fires, at its due time.
    Fire(TimerKind),
}

pub fn at(s: i64, event: Event) -> Step {
    Step::At(s, event)
}

pub fn fire(kind: TimerKind) -> Step {
    Step::Fire(kind)
}

/// `a` then `b`.
pub fn then(mut a: Vec<Step>, b: impl IntoIterator<Item = Step>) -> Vec<Step> {
    a.extend(b);
    a
}

/// The event a step is and when it happens; a fired timer must be armed.
pub fn resolve(rec: &ServiceRecord, step: &Step) -> (Event, DateTime<Utc>) {
    match step {
        Step::At(s, event) => (event.clone(), secs(*s)),
        Step::Fire(kind) => {
            let due = *rec.timers.get(kind).unwrap_or_else(|| {
                panic!(
                    "timer {kind:?} is not armed in {:?}: {:?}",
                    rec.state, rec.timers
                )
            });
            (Event::TimerFired { kind: *kind, due }, due)
        }
    }
}

/// Applies one step to a record.
pub fn apply_step(
    rec: &ServiceRecord,
    scn: &Arc<Scenario>,
    step: &Step,
) -> Result<Applied, TransitionError> {
    let (event, now) = resolve(rec, step);
    machine::apply(rec, scn, &event, now)
}

/// Applies one step and keeps only the record; a refusal panics.
pub fn step_to(rec: &ServiceRecord, scn: &Arc<Scenario>, step: &Step) -> ServiceRecord {
    apply_step(rec, scn, step)
        .unwrap_or_else(|e| panic!("{step:?} refused in {:?}: {e}", rec.state))
        .record
}

/// A service walked through its steps.
#[derive(Debug)]
pub struct Walk {
    pub record: ServiceRecord,
    /// Effects of create.
    pub created: Vec<Effect>,
    /// Effects of each step.
    pub steps: Vec<Vec<Effect>>,
}

impl Walk {
    /// The effects of the last step (of create when there was none).
    pub fn last(&self) -> &[Effect] {
        self.steps.last().unwrap_or(&self.created)
    }

    pub fn leg(&self) -> &VideoLeg {
        self.record
            .video
            .as_ref()
            .expect("the record has a video leg")
    }

    /// The leg's last room.
    pub fn room(&self) -> &Room {
        self.leg().rooms.last().expect("the leg has a room")
    }
}

/// Creates the service at t0 and applies every step; a refused step panics.
pub fn run(scn: &Arc<Scenario>, new: NewService, steps: &[Step]) -> Walk {
    let created = machine::create(new, scn, t0());
    let mut walk = Walk {
        record: created.record,
        created: created.effects,
        steps: Vec::new(),
    };
    for (i, step) in steps.iter().enumerate() {
        let applied = apply_step(&walk.record, scn, step).unwrap_or_else(|e| {
            panic!("step {i} {step:?} refused in {:?}: {e}", walk.record.state)
        });
        walk.record = applied.record;
        walk.steps.push(applied.effects);
    }
    walk
}

/// Walks `steps` and checks the final state, reason and the effects of the
/// last step (as a multiset of compact kinds, see [`effect_kind`]).
pub fn check(
    label: &str,
    scn: &Arc<Scenario>,
    new: NewService,
    steps: &[Step],
    want: (ServiceState, Option<CallbackReason>),
    effects: &[&str],
) -> Walk {
    check_ignoring(&[], label, scn, new, steps, want, effects)
}

/// [`check`], leaving the effect kinds in `ignore` out of the comparison
/// (a kind a test file checks once, not in every walk).
pub fn check_ignoring(
    ignore: &[&str],
    label: &str,
    scn: &Arc<Scenario>,
    new: NewService,
    steps: &[Step],
    want: (ServiceState, Option<CallbackReason>),
    effects: &[&str],
) -> Walk {
    let walk = run(scn, new, steps);
    assert_eq!(
        (walk.record.state, walk.record.reason),
        want,
        "{label}: final state"
    );
    assert_eq!(
        effect_kinds_ignoring(walk.last(), ignore),
        sorted(effects),
        "{label}: effects of the last step ({:?})",
        walk.last()
    );
    walk
}

/// The refusal of a `NotAllowed` result: (state, event, message).
pub fn not_allowed(
    result: Result<Applied, TransitionError>,
) -> (ServiceState, &'static str, String) {
    match result {
        Err(TransitionError::NotAllowed {
            state,
            event,
            message,
        }) => (state, event, message),
        other => panic!("expected NotAllowed, got {other:?}"),
    }
}

/// Applies `step` to `rec` and expects it refused: (state, event, message).
pub fn refused(
    label: &str,
    rec: &ServiceRecord,
    scn: &Arc<Scenario>,
    step: &Step,
) -> (ServiceState, &'static str, String) {
    match apply_step(rec, scn, step) {
        Err(TransitionError::NotAllowed {
            state,
            event,
            message,
        }) => (state, event, message),
        Ok(applied) => panic!(
            "{label}: {step:?} was accepted in {:?}; effects {:?}",
            rec.state,
            effect_kinds(&applied.effects)
        ),
        Err(other) => panic!("{label}: expected NotAllowed, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Effects
// ---------------------------------------------------------------------------

/// A compact name for an effect: its kind, plus the timer kind or the tag
/// without the service id (`NotifyDevice(service.completed)`).
pub fn effect_kind(effect: &Effect) -> String {
    let tag_kind = |tag: &str| {
        tag.strip_suffix(&format!(".{ID}"))
            .unwrap_or(tag)
            .to_owned()
    };
    match effect {
        Effect::EnteredQueue { .. } => "EnteredQueue".into(),
        Effect::LeftQueue { .. } => "LeftQueue".into(),
        Effect::AgentReserved { .. } => "AgentReserved".into(),
        Effect::AgentReleased { .. } => "AgentReleased".into(),
        Effect::NotifyDevice { tag, .. } => format!("NotifyDevice({})", tag_kind(tag)),
        Effect::NotifyAgent { tag, .. } => format!("NotifyAgent({})", tag_kind(tag)),
        Effect::TimerArmed { kind, .. } => format!("TimerArmed({})", kind.as_str()),
        Effect::TimerCancelled { kind } => format!("TimerCancelled({})", kind.as_str()),
        Effect::WaitSample { .. } => "WaitSample".into(),
        Effect::HandleSample { .. } => "HandleSample".into(),
        Effect::PushDevice { tag, .. } => format!("PushDevice({})", tag_kind(tag)),
        Effect::PushAgent { tag, .. } => format!("PushAgent({})", tag_kind(tag)),
        Effect::Appointment { change } => format!("Appointment({change:?})"),
        Effect::OpenRoom => "OpenRoom".into(),
        Effect::LinkAgent => "LinkAgent".into(),
        Effect::RoomEnded { .. } => "RoomEnded".into(),
        Effect::AgentNotReady { .. } => "AgentNotReady".into(),
        Effect::StateNotice => "StateNotice".into(),
    }
}

/// The compact kinds of these effects, sorted (a multiset).
pub fn effect_kinds(effects: &[Effect]) -> Vec<String> {
    effect_kinds_ignoring(effects, &[])
}

/// [`effect_kinds`] without the kinds in `ignore`. The state push that
/// ends every change of state is never listed: it is checked once, in the
/// `state_notices_*` and `*_pushes_the_state*` tests, not in every table.
pub fn effect_kinds_ignoring(effects: &[Effect], ignore: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = effects
        .iter()
        .map(effect_kind)
        .filter(|k| k != "StateNotice" && !ignore.contains(&k.as_str()))
        .collect();
    k.sort();
    k
}

/// Expected kinds, sorted to compare with [`effect_kinds`].
pub fn sorted(expected: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

// ---------------------------------------------------------------------------
// The state × event table
// ---------------------------------------------------------------------------

/// The outcome of one event in one state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Out {
    /// Accepted; the state does not change.
    Same,
    /// Accepted; the service moves to this state.
    To(ServiceState),
    /// Accepted; the service completes with this reason.
    Done(CallbackReason),
    /// Refused with `NotAllowed`.
    No,
    /// Refused with `StaleTimer` (the timer is not armed in this state).
    Stale,
    /// Refused with `Unchanged` (nothing to write).
    Unchanged,
}

/// What a table line applies: an event, or a timer of the record firing
/// (at its due time when the record holds it, else as a stale timer).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a test table: size does not matter
pub enum Probe {
    Send(Event),
    Fire(TimerKind),
}

impl From<Event> for Probe {
    fn from(event: Event) -> Probe {
        Probe::Send(event)
    }
}

impl From<TimerKind> for Probe {
    fn from(kind: TimerKind) -> Probe {
        Probe::Fire(kind)
    }
}

/// One line of a state × event table; built by [`event_table!`](crate::event_table).
pub struct TableLine<const N: usize> {
    /// The probe as written.
    pub label: &'static str,
    pub probe: Probe,
    /// The outcome in each row.
    pub outs: [Out; N],
    /// Whether an event is the line's pattern: the probe must be.
    pub matches: fn(&Event) -> bool,
}

/// The lines of a state × event table, one `pattern => probe, [outcomes];`
/// each, over `Event`:
///
/// ```ignore
/// let lines = engine::event_table! {
///     Event::Created => Event::Created, [No, No];
///     Event::TimerFired { kind: TimerKind::Ttl, .. } => TimerKind::Ttl, [ttl, Stale];
///     // ...
/// };
/// ```
///
/// The patterns are matched exhaustively, without a wildcard: an `Event`
/// variant (or a `TimerKind`, through `TimerFired`'s `kind`) that no line
/// covers fails to compile, and [`run_table`] checks each probe is the event
/// its pattern names, so the new line really applies it. A pattern may take
/// several lines (the client's message and the agent's).
#[macro_export]
macro_rules! event_table {
    ($($pat:pat => $probe:expr, [$($out:expr),* $(,)?];)*) => {{
        // Never called: it is the exhaustiveness check.
        #[allow(unreachable_patterns)]
        let _every_event_has_a_line = |event: &$crate::machine::Event| match event {
            $($pat => (),)*
        };
        vec![$($crate::testing::TableLine {
            label: stringify!($probe),
            probe: $crate::testing::Probe::from($probe),
            outs: [$($out),*],
            matches: |event: &$crate::machine::Event| matches!(event, $pat),
        }),*]
    }};
}

/// Applies every line to every row (`rows[r]` is a record and its label;
/// `line.outs[r]` the outcome there) at t0 + 50,000 s. Returns every
/// mismatch and every panic, so one run shows the whole table.
pub fn run_table<const N: usize>(
    scn: &Arc<Scenario>,
    rows: &[(&str, ServiceRecord); N],
    lines: &[TableLine<N>],
) -> Vec<String> {
    run_table_at(50_000, scn, rows, lines)
}

/// [`run_table`] at t0 + `at` seconds (while the rows' rooms are still open).
pub fn run_table_at<const N: usize>(
    at: i64,
    scn: &Arc<Scenario>,
    rows: &[(&str, ServiceRecord); N],
    lines: &[TableLine<N>],
) -> Vec<String> {
    let now = secs(at);
    let mut failures = Vec::new();
    for line in lines {
        for ((row, rec), want) in rows.iter().zip(line.outs) {
            let where_ = format!("{} in {row}", line.label);
            let (event, when) = match &line.probe {
                Probe::Send(e) => (e.clone(), now),
                Probe::Fire(kind) => {
                    let due = rec.timers.get(kind).copied().unwrap_or(now);
                    (Event::TimerFired { kind: *kind, due }, due)
                }
            };
            if !(line.matches)(&event) {
                failures.push(format!("{where_}: the probe is not the line's pattern"));
                continue;
            }
            let result = catch_unwind(AssertUnwindSafe(|| machine::apply(rec, scn, &event, when)));
            let Ok(result) = result else {
                failures.push(format!("{where_}: PANIC"));
                continue;
            };
            if let Err(why) = check_outcome(rec, &event, &result, want) {
                failures.push(format!("{where_}: expected {want:?}, {why}"));
            }
        }
    }
    failures
}

/// Whether `result` is `want`; an accepted event also grows the version by
/// one and the history by its state change.
pub fn check_outcome(
    rec: &ServiceRecord,
    event: &Event,
    result: &Result<Applied, TransitionError>,
    want: Out,
) -> Result<(), String> {
    match (result, want) {
        (Err(TransitionError::StaleTimer { .. }), Out::Stale) => Ok(()),
        (Err(TransitionError::Unchanged), Out::Unchanged) => Ok(()),
        (
            Err(TransitionError::NotAllowed {
                state,
                event: name,
                message,
            }),
            Out::No,
        ) => {
            let display = result.as_ref().unwrap_err().to_string();
            if *state != rec.state {
                Err(format!("NotAllowed names state {state:?}"))
            } else if *name != event.name() {
                Err(format!("NotAllowed names event {name}"))
            } else if !message.contains(rec.state.gms_name())
                || !display.contains(rec.state.gms_name())
            {
                Err(format!(
                    "message does not name {}: {message}",
                    rec.state.gms_name()
                ))
            } else {
                Ok(())
            }
        }
        (Ok(applied), Out::Same | Out::To(_) | Out::Done(_)) => {
            let got = &applied.record;
            if got.version != rec.version + 1 {
                return Err(format!("version {} after {}", got.version, rec.version));
            }
            let ok = match want {
                Out::Same => got.state == rec.state && got.reason == rec.reason,
                Out::To(state) => got.state == state && got.reason.is_none(),
                Out::Done(reason) => {
                    got.state == ServiceState::Completed && got.reason == Some(reason)
                }
                _ => unreachable!(),
            };
            if !ok {
                return Err(format!("got {:?} {:?}", got.state, got.reason));
            }
            let grew = got.history.len() - rec.history.len();
            let changed = got.state != rec.state || event.always_in_history();
            if grew != usize::from(changed) {
                return Err(format!("history grew by {grew} (state changed: {changed})"));
            }
            if changed {
                let h = got.history.last().unwrap();
                if h.from != Some(rec.state) || h.to != got.state || h.event != event.name() {
                    return Err(format!("bad history entry {h:?}"));
                }
            }
            Ok(())
        }
        (Ok(applied), _) => Err(format!(
            "got accepted: {:?} {:?}",
            applied.record.state, applied.record.reason
        )),
        (Err(e), _) => Err(format!("got {e:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_writes_what_the_old_test_texts_said() {
        assert_eq!(
            ScenarioBuilder::chat_immediate().toml(),
            "name = \"chat-immediate\"\n_media_type = \"chat\"\n_wait_for_agent = false\n\
             _wait_for_user_confirm = false\n_ttl = \"24h\"\n_find_agent_timeout = \"1h\"\n\
             _target = { queue = \"support\", priority = 0 }\n"
        );
        for b in [
            ScenarioBuilder::new("x"),
            ScenarioBuilder::chat_delay(),
            ScenarioBuilder::chat_immediate(),
            ScenarioBuilder::video_call(),
        ] {
            let scn = b.build();
            assert_eq!(b.file_name(), format!("{}.toml", scn.name));
        }
        let scn = ScenarioBuilder::video_call().build();
        assert!(scn.video_config().is_some());
        let booked = ScenarioBuilder::video_call()
            .unset_table("_video")
            .always_open("timezone = \"UTC\"\nslot = \"5m\"", 2, "")
            .build();
        assert!(booked.video.is_none());
        assert!(booked.schedule.is_some());
    }
}
