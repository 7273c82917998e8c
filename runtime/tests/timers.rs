//! Timers through the real shell (router + timer loop) on tokio's paused
//! clock: time jumps straight to the next due timer, so a 24 h TTL takes no
//! real time and nothing here sleeps for real.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use engine::machine::{Event, NewService};
use engine::record::{CallbackReason, ServiceState};
use engine::scenario::{Scenario, Scenarios};
use engine::store::memory::MemoryStore;
use engine::store::AgentProfile;
use engine::store::Store;
use engine::testing::ScenarioBuilder;
use runtime::clock::TokioClock;
use runtime::notices::Notifier;
use runtime::room_maker::RoomMaker;
use runtime::{Parts, Shell};
use tokio::sync::watch;

/// A scenario: a chat that fails after two missed confirmations, with
/// some keys replaced (or added).
fn scenario(overrides: &[(&str, &str)]) -> Scenario {
    ScenarioBuilder::new("t")
        .key("_ttl", r#""24h""#)
        .key("_user_confirm_timeout", r#""30s""#)
        .key("_on_user_confirm_timeout", r#""fail""#)
        .key("_max_user_confirm_attempts", "2")
        .key("_target", r#"{ queue = "support" }"#)
        .keys(overrides)
        .parse()
        .expect("test scenario")
}

struct Harness {
    shell: Arc<Shell>,
    /// The shell's store, for what a test sets up or looks at beside it.
    store: Arc<MemoryStore>,
    _stop: watch::Sender<bool>,
}

async fn start(s: Scenario) -> Harness {
    let clock = Arc::new(TokioClock::new(
        Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap(),
    ));
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let scenarios = Scenarios::new([s]);
    let rooms = RoomMaker::new(&scenarios, "http://127.0.0.1".into(), |_| None).unwrap();
    let http: Arc<dyn push::outbound::HttpPost> = Arc::new(push::outbound::NoHttp);
    let shell = Shell::new(Parts {
        store: store.clone(),
        scenarios,
        clock,
        limits: push::Limits::default(),
        relay: None,
        notifier: Arc::new(Notifier::new(None, http.clone()).unwrap()),
        rooms: Arc::new(rooms),
        http,
        webhook_secrets: Default::default(),
    });
    let (stop, stopped) = watch::channel(false);
    shell.spawn_background(stopped, None, None);
    Harness {
        shell,
        store,
        _stop: stop,
    }
}

impl Harness {
    async fn create(&self, desired_in: Option<Duration>) -> String {
        let scenario = self.shell.scenario("t").unwrap().clone();
        let desired_time =
            desired_in.map(|d| self.shell.now() + chrono::Duration::from_std(d).unwrap());
        let record = self
            .shell
            .create(
                &scenario,
                NewService {
                    id: uuid::Uuid::new_v4().to_string(),
                    customer_number: "4082652649".into(),
                    desired_time,
                    device_notification_id: None,
                    device_os: None,
                    user_data: Default::default(),
                    booking: None,
                    preferred_agent: None,
                    video: None,
                },
            )
            .await
            .unwrap();
        record.id.clone()
    }

    async fn agent(&self, id: &str) {
        self.agent_elsewhere(id).await;
        self.shell.wake_router();
    }

    /// An agent readied in the store without telling this node's router,
    /// as another node's request would.
    async fn agent_elsewhere(&self, id: &str) {
        let profile = AgentProfile {
            id: id.into(),
            name: id.into(),
            queues: ["support".to_owned()].into(),
            skills: Default::default(),
            max_concurrent: 1,
            email: None,
        };
        self.store.put_agent(profile).await.unwrap();
        self.store.set_agent_ready(id, true).await.unwrap();
    }

    async fn state(&self, id: &str) -> (ServiceState, Option<CallbackReason>) {
        let r = self.shell.get(id).await.unwrap();
        (r.state, r.reason)
    }

    /// Lets (paused) time pass; the timer loop and the router run meanwhile.
    async fn pass(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

const MS: Duration = Duration::from_millis(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Creates a service with an agent ready, lets `wait` pass, checks the outcome.
async fn check_confirm_timeout(
    overrides: &[(&str, &str)],
    wait: Duration,
    expected: (ServiceState, Option<CallbackReason>),
) {
    let h = start(scenario(overrides)).await;
    h.agent("alice").await;
    let id = h.create(None).await;
    h.pass(MS).await;
    assert_eq!(
        h.state(&id).await.0,
        ServiceState::WaitForUserConfirm,
        "{overrides:?}"
    );
    h.pass(wait).await;
    assert_eq!(h.state(&id).await, expected, "{overrides:?} after {wait:?}");
}

#[tokio::test(start_paused = true)]
async fn user_confirm_timeout_paths() {
    use CallbackReason::*;
    use ServiceState::*;
    // Just before the timeout nothing has happened yet.
    check_confirm_timeout(&[], secs(29), (WaitForUserConfirm, None)).await;
    check_confirm_timeout(&[], secs(31), (Completed, Some(FailUserNoConfirm))).await;
    check_confirm_timeout(
        &[("_on_user_confirm_timeout", "\"connect-anyway\"")],
        secs(31),
        (Connected, None),
    )
    .await;
    // Requeue: the only agent is offered again, and after two unconfirmed rounds it fails.
    check_confirm_timeout(
        &[("_on_user_confirm_timeout", "\"requeue\"")],
        secs(31),
        (WaitForUserConfirm, None),
    )
    .await;
    check_confirm_timeout(
        &[("_on_user_confirm_timeout", "\"requeue\"")],
        secs(61),
        (Completed, Some(FailUserNoConfirm)),
    )
    .await;
    check_confirm_timeout(
        &[
            ("_on_user_confirm_timeout", "\"requeue\""),
            ("_max_user_confirm_attempts", "3"),
        ],
        secs(89),
        (WaitForUserConfirm, None),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn requeued_service_keeps_its_place_and_frees_the_agent() {
    let h = start(scenario(&[("_on_user_confirm_timeout", "\"requeue\"")])).await;
    h.agent("alice").await;
    let first = h.create(None).await;
    h.pass(MS).await;
    let second = h.create(None).await;
    h.pass(MS).await;
    assert_eq!(h.state(&first).await.0, ServiceState::WaitForUserConfirm);
    assert_eq!(h.state(&second).await.0, ServiceState::WaitForAgent);
    // Alice goes away while the first customer does not answer.
    h.store.set_agent_ready("alice", false).await.unwrap();
    h.pass(secs(31)).await;
    assert_eq!(h.state(&first).await.0, ServiceState::WaitForAgent);
    let agent = h.store.agent("alice").await.unwrap().unwrap();
    assert!(
        agent.services.is_empty(),
        "the reservation is released: {agent:?}"
    );
    assert_eq!(
        h.store.position("support", &first).await.unwrap(),
        Some((1, 2))
    );
    assert_eq!(
        h.store.position("support", &second).await.unwrap(),
        Some((2, 2))
    );
}

#[tokio::test(start_paused = true)]
async fn find_agent_timeout_fails_with_target_not_found() {
    let h = start(scenario(&[("_find_agent_timeout", "\"10m\"")])).await;
    let id = h.create(None).await;
    h.pass(secs(599)).await;
    assert_eq!(h.state(&id).await, (ServiceState::WaitForAgent, None));
    h.pass(secs(2)).await;
    assert_eq!(
        h.state(&id).await,
        (
            ServiceState::Completed,
            Some(CallbackReason::FailTargetNotFound)
        )
    );
    assert_eq!(h.store.queue("support").await.unwrap(), vec![]);
}

#[tokio::test(start_paused = true)]
async fn ttl_after_desired_time_fails_with_timeout_ttl() {
    let h = start(scenario(&[])).await;
    let id = h.create(Some(secs(3600))).await;
    h.pass(secs(3599)).await;
    assert_eq!(h.state(&id).await.0, ServiceState::Scheduled);
    h.pass(secs(2)).await;
    assert_eq!(
        h.state(&id).await.0,
        ServiceState::WaitForAgent,
        "desired time reached"
    );
    // 24 h after the desired time, not 24 h after creation.
    h.pass(secs(24 * 3600 - 10)).await;
    assert_eq!(h.state(&id).await.0, ServiceState::WaitForAgent);
    h.pass(secs(20)).await;
    assert_eq!(
        h.state(&id).await,
        (
            ServiceState::Completed,
            Some(CallbackReason::FailTimeoutTtl)
        )
    );
    // The record stays readable a little while, then the store forgets it.
    h.pass(secs(3600)).await;
    assert!(matches!(
        h.shell.get(&id).await,
        Err(runtime::ShellError::UnknownService(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn timers_of_a_cancelled_service_never_fire() {
    let h = start(scenario(&[("_find_agent_timeout", "\"10m\"")])).await;
    let id = h.create(None).await;
    h.shell.transition(&id, &Event::Cancel).await.unwrap();
    h.pass(secs(48 * 3600)).await;
    let record = h.shell.get(&id).await;
    // Gone by now (past its TTL), or still showing the cancel: never a later reason.
    if let Ok(record) = record {
        assert_eq!(record.reason, Some(CallbackReason::Cancelled));
    }
    assert_eq!(h.store.next_timer().await.unwrap(), None);
}

/// With no agent free, the router pauses (a second) between passes:
/// services entering the queue meanwhile do not end the pause (one pass
/// for many creates), an agent's change on this node does, and while
/// services come a pass follows each pause, so an agent readied where this
/// router is not told (another node) is seen within a pause or two.
#[tokio::test(start_paused = true)]
async fn the_routers_pause_while_nobody_is_free() {
    use ServiceState::*;
    let h = start(scenario(&[])).await;
    // The first create wakes the router, which pauses: its pass at start
    // found nobody free.
    let first = h.create(None).await;
    h.pass(MS).await;
    h.agent_elsewhere("alice").await;
    h.pass(secs(1) / 2).await;
    let second = h.create(None).await;
    h.pass(secs(1) / 4).await;
    // 750 ms in: the pause still holds, the second create did not end it.
    assert_eq!(h.state(&first).await.0, WaitForAgent);
    h.pass(secs(1) / 2).await;
    // The pass after the pause saw alice and gave her the first service.
    assert_eq!(h.state(&first).await.0, WaitForUserConfirm);
    assert_eq!(h.state(&second).await.0, WaitForAgent);
    // Nobody is free again (alice holds one service at most); a service
    // that comes during the next pause waits for it...
    h.pass(secs(3)).await;
    let third = h.create(None).await;
    h.pass(MS).await;
    h.agent_elsewhere("bob").await;
    let fourth = h.create(None).await;
    h.pass(secs(1) / 2).await;
    assert_eq!(h.state(&second).await.0, WaitForAgent);
    // ...and bob is seen at the pass after it, as before.
    h.pass(secs(1)).await;
    assert_eq!(h.state(&second).await.0, WaitForUserConfirm);
    assert_eq!(
        (h.state(&third).await.0, h.state(&fourth).await.0),
        (WaitForAgent, WaitForAgent)
    );
    // An agent readied on this node ends the pause at once.
    h.pass(secs(3)).await;
    let fifth = h.create(None).await;
    h.pass(MS).await;
    h.agent("carol").await;
    h.pass(MS).await;
    assert_eq!(h.state(&third).await.0, WaitForUserConfirm);
    assert_eq!(
        (h.state(&fourth).await.0, h.state(&fifth).await.0),
        (WaitForAgent, WaitForAgent)
    );
}
