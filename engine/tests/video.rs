//! Video transitions of `engine::machine`: a chat escalating to video (same
//! agent, or routed by its routingData), rooms (ring, answer, join, leave,
//! signal, expire, end), preferred agents, booked video, the survey and the
//! record schema. Pure: no sockets, no sleeps, times as `secs(n)` after t0.
//!
//! On the harness of `engine::testing`:
//! - [`run`] walks a new record through steps (event, seconds after t0).
//! - [`check`] compares the final state/reason and the effect kinds of the last step.
//! - [`refused`] applies one more step and expects it refused.

use std::sync::Arc;

use serde_json::{json, Value};

use engine::event_table;
use engine::machine::{self, Effect, Event, NewService, TransitionError};
use engine::record::{
    CallbackReason, ChatEntryKind, Party, QueueTicket, ServiceRecord, ServiceState, TimerKind,
    RECORD_SCHEMA_PLAIN, RECORD_SCHEMA_VIDEO,
};
use engine::scenario::{MediaType, Scenario};
use engine::testing::{
    agent_notification, agent_url, apply_step, at, chat_left, chat_started, check_ignoring,
    customer_url, effect_kinds_ignoring, fire, internal_notification, new_service as svc,
    pushed_unknown, refused, reschedule_to, reserved, room, room_with, routing, run, run_table_at,
    say, secs, sorted, t0, then, typing, webhooks_unknown, Out, ScenarioBuilder, Step, CUSTOMER,
    ID, ROOM_TTL,
};
use engine::video::{
    ProviderConfig, Room, RoomEnd, RoutingData, SurveyAnswer, VideoLeg, VideoRoute,
};

use CallbackReason as R;
use Out::{Done, No, Same, Stale, To, Unchanged};
use ServiceState as S;

/// The chat's agent.
const A: &str = "agent-a";
/// Another agent of the video queue.
const B: &str = "agent-b";
/// A preferred (assigned) agent.
const P: &str = "agent-p";
const ROOM: &str = "KM3TQ7X";
const ROOM2: &str = "HJ4PRW9";
const CONVERSATION: &str = "conv-00017";

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

fn delay() -> Arc<Scenario> {
    ScenarioBuilder::chat_delay().build()
}

fn immediate() -> Arc<Scenario> {
    ScenarioBuilder::chat_immediate().build()
}

fn video_scn() -> Arc<Scenario> {
    ScenarioBuilder::video_call().build()
}

/// The two chat scenarios a video can escalate from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Chat {
    Delay,
    Immediate,
}

impl Chat {
    fn scn(self) -> Arc<Scenario> {
        match self {
            Chat::Delay => delay(),
            Chat::Immediate => immediate(),
        }
    }

    /// `_find_agent_timeout` in seconds.
    fn find_agent(self) -> i64 {
        match self {
            Chat::Delay => 7200,
            Chat::Immediate => 3600,
        }
    }
}

// ---------------------------------------------------------------------------
// Services, rooms, events
// ---------------------------------------------------------------------------

fn preferring(agent: &str) -> NewService {
    NewService {
        preferred_agent: Some(agent.to_owned()),
        ..svc()
    }
}

/// The ticket a video routed by `routing(preferred)` waits with.
fn video_ticket(since: i64, preferred: Option<&str>) -> QueueTicket {
    QueueTicket {
        queue: "video".to_owned(),
        skills: Some("video".to_owned()),
        priority: 7,
        since: secs(since),
        preferred_agent: preferred.map(str::to_owned),
        declined: Vec::new(),
        route: None,
    }
}

/// A video leg as the shell makes it for a booked video service.
fn leg(routing: RoutingData, rooms: Vec<Room>) -> VideoLeg {
    VideoLeg {
        requested_at: t0(),
        requested_by: Party::Client,
        scenario: "video-call".to_owned(),
        routing,
        conversation_id: None,
        agent: None,
        routed: None,
        connected_at: None,
        rooms,
        survey: None,
    }
}

fn video_routed(by: Party, agent_free: bool, room: Room, routing: RoutingData) -> Event {
    Event::StartVideo {
        by,
        routing,
        scenario: "video-call".to_owned(),
        conversation_id: Some(CONVERSATION.to_owned()),
        room: Box::new(room),
        agent_free,
    }
}

fn video(by: Party, agent_free: bool, room: Room) -> Event {
    video_routed(by, agent_free, room, routing(None))
}

fn joined(party: Party) -> Event {
    Event::RoomJoined { party }
}

fn room_left(party: Party) -> Event {
    Event::RoomLeft { party }
}

fn answered(by: Party, accept: bool) -> Event {
    Event::RoomAnswered { by, accept }
}

fn sdp() -> Value {
    json!({"type": "offer", "sdp": "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\n"})
}

fn signal(from: Party) -> Event {
    Event::RoomSignal {
        from,
        signal: sdp(),
    }
}

fn survey(score: u8, scale: u8) -> Event {
    Event::SurveyAnswered {
        question: "How was your call?".to_owned(),
        scale,
        score,
        comment: Some("clear picture".to_owned()),
    }
}

fn open_room(room: Room) -> Event {
    Event::OpenRoom { room }
}

// ---------------------------------------------------------------------------
// Walks
// ---------------------------------------------------------------------------

/// Every room end wakes the router (`RoomEnded`); that is checked once, in
/// `a_room_end_wakes_the_router_for_its_agent`, not in every table.
const UNCHECKED: &[&str] = &["RoomEnded"];

/// The last device notification with this tag prefix (`service.video`).
fn device_note<'a>(rec: &'a ServiceRecord, prefix: &str) -> &'a Value {
    let tag = format!("{prefix}.{ID}");
    &rec.outbox
        .iter()
        .rev()
        .find(|n| n.tag == tag)
        .unwrap_or_else(|| panic!("no {tag} in the outbox: {:?}", rec.outbox))
        .payload
}

/// The last agent notification with this tag prefix (`agent.video`), parsed.
fn agent_note(rec: &ServiceRecord, prefix: &str) -> Value {
    let tag = format!("{prefix}.{ID}");
    let n = rec
        .agent_outbox
        .iter()
        .rev()
        .find(|n| n.tag == tag)
        .unwrap_or_else(|| panic!("no {tag} in the agent outbox: {:?}", rec.agent_outbox));
    serde_json::from_str(&n.message).expect("agent notifications are JSON text")
}

/// The agent a `NotifyAgent` with this tag prefix was addressed to.
fn notified_agent(effects: &[Effect], prefix: &str) -> Option<String> {
    let tag = format!("{prefix}.{ID}");
    effects
        .iter()
        .find_map(|e| match e {
            Effect::NotifyAgent { agent, tag: t, .. } if *t == tag => Some(agent.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no NotifyAgent({prefix}) in {effects:?}"))
}

// ---------------------------------------------------------------------------
// Walks to a point
// ---------------------------------------------------------------------------

/// CONNECTED with agent A in the chat, by second 30.
fn chatting(c: Chat) -> Vec<Step> {
    match c {
        Chat::Delay => vec![
            at(10, reserved(A)),
            at(20, Event::UserConfirmed),
            at(30, chat_started()),
        ],
        Chat::Immediate => vec![at(5, chat_started()), at(10, reserved(A))],
    }
}

/// The customer asks for video at 40; A is free and takes it: room ROOM rings.
fn ringing(c: Chat) -> Vec<Step> {
    then(
        chatting(c),
        [at(40, video(Party::Client, true, room(ROOM, 40)))],
    )
}

/// Both sides joined: the call started at 60.
fn in_call(c: Chat) -> Vec<Step> {
    then(
        ringing(c),
        [at(50, joined(Party::Client)), at(60, joined(Party::Agent))],
    )
}

/// The customer left the started call at 100: the room ended.
fn after_call(c: Chat) -> Vec<Step> {
    then(in_call(c), [at(100, room_left(Party::Client))])
}

/// A is busy: the customer's video at 40 goes back to the queue.
fn requeued(c: Chat, preferred: Option<&str>) -> Vec<Step> {
    then(
        chatting(c),
        [at(
            40,
            video_routed(Party::Client, false, room(ROOM, 40), routing(preferred)),
        )],
    )
}

/// Chat-immediate, still queued, chatting; video asked for at 20.
fn queued_video(preferred: Option<&str>) -> Vec<Step> {
    vec![
        at(5, chat_started()),
        at(
            20,
            video_routed(Party::Client, false, room(ROOM, 20), routing(preferred)),
        ),
    ]
}

// ---------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------

#[test]
fn the_video_scenario_parses_with_its_video_table() {
    let scn = video_scn();
    assert_eq!(scn.media_type, MediaType::Video);
    let v = scn
        .video_config()
        .expect("a video scenario has a video config");
    assert_eq!(v.room_ttl, std::time::Duration::from_secs(600));
    assert_eq!(v.code_length, 7);
    assert_eq!(v.survey.scale, 5);
    assert_eq!(v.survey.question, "How was your call?");
    assert!(matches!(v.provider, ProviderConfig::Relay { .. }));
    assert!(v.is_code(ROOM) && v.is_code(ROOM2));
    assert_eq!(
        scn.preferred_agent_timeout,
        std::time::Duration::from_secs(60),
        "_preferred_agent_timeout defaults to 60s"
    );
    assert!(delay().video_config().is_none());
}

// ---------------------------------------------------------------------------
// StartVideo on a connected chat
// ---------------------------------------------------------------------------

#[test]
fn video_with_a_free_chat_agent_rings_the_same_agent_and_stays_connected() {
    for c in [Chat::Delay, Chat::Immediate] {
        for by in [Party::Client, Party::Agent] {
            let label = format!("{c:?} by {by:?}");
            let steps = then(chatting(c), [at(40, video(by, true, room(ROOM, 40)))]);
            let before = run(&c.scn(), svc(), &chatting(c)).record;
            let walk = check_ignoring(
                UNCHECKED,
                &label,
                &c.scn(),
                svc(),
                &steps,
                (S::Connected, None),
                &[
                    "TimerArmed(room_ttl)",
                    "NotifyDevice(service.video)",
                    "NotifyAgent(agent.video)",
                ],
            );
            let rec = &walk.record;
            let leg = walk.leg();
            assert_eq!(leg.agent.as_deref(), Some(A), "{label}: the leg's agent");
            assert_eq!(leg.routed, Some(VideoRoute::SameAgent), "{label}");
            assert_eq!(leg.requested_by, by, "{label}");
            assert_eq!(leg.requested_at, secs(40), "{label}");
            assert_eq!(leg.scenario, "video-call", "{label}");
            assert_eq!(leg.routing, routing(None), "{label}");
            assert_eq!(
                leg.conversation_id.as_deref(),
                Some(CONVERSATION),
                "{label}"
            );
            assert_eq!(leg.rooms.len(), 1, "{label}");
            let r = walk.room();
            assert_eq!(r.code, ROOM, "{label}");
            assert_eq!(r.ringing_at, Some(secs(40)), "{label}: the room rings");
            assert_eq!(r.status(), "ringing", "{label}");
            assert_eq!(
                rec.timers.get(&TimerKind::RoomTtl),
                Some(&r.expires_at),
                "{label}: room_ttl at the room's expiry"
            );
            assert!(walk.last().contains(&Effect::TimerArmed {
                kind: TimerKind::RoomTtl,
                due: secs(40 + ROOM_TTL)
            }));
            // The service itself does not move.
            assert_eq!(rec.agent.as_deref(), Some(A), "{label}");
            assert_eq!(rec.ticket, before.ticket, "{label}: the ticket is kept");
            assert_eq!(
                rec.chat.as_ref().unwrap().transcript,
                before.chat.as_ref().unwrap().transcript,
                "{label}: the chat goes on untouched"
            );
            assert!(rec.chat.as_ref().unwrap().agent_joined, "{label}");
            // Each side gets its own link.
            let device = device_note(rec, "service.video");
            assert_eq!(device["_meet_url"], json!(customer_url(ROOM)), "{label}");
            assert_eq!(device["_room_code"], json!(ROOM), "{label}");
            assert_eq!(device["_agent_id"], json!(A), "{label}");
            let agent = agent_note(rec, "agent.video");
            assert_eq!(agent["_meet_url"], json!(agent_url(ROOM)), "{label}");
            assert_eq!(agent["_room_code"], json!(ROOM), "{label}");
            assert_eq!(
                notified_agent(walk.last(), "agent.video").as_deref(),
                Some(A),
                "{label}"
            );
            assert_eq!(rec.room_agent(), Some(A), "{label}");
            assert_eq!(rec.room_code(), Some(ROOM), "{label}");
        }
    }
}

/// One case of a video the chat's agent cannot take.
struct Busy {
    chat: Chat,
    preferred: Option<&'static str>,
    /// The preferred agent's time runs out before anyone takes it.
    preference_expires: bool,
    taker: &'static str,
    routed: VideoRoute,
}

#[test]
fn video_with_a_busy_chat_agent_requeues_by_routing_data_and_the_next_agent_connects_at_once() {
    let cases = [
        Busy {
            chat: Chat::Delay,
            preferred: None,
            preference_expires: false,
            taker: B,
            routed: VideoRoute::Queue,
        },
        Busy {
            chat: Chat::Immediate,
            preferred: None,
            preference_expires: false,
            taker: B,
            routed: VideoRoute::Queue,
        },
        Busy {
            chat: Chat::Delay,
            preferred: Some(P),
            preference_expires: false,
            taker: P,
            routed: VideoRoute::PreferredAgent,
        },
        Busy {
            chat: Chat::Immediate,
            preferred: Some(B),
            preference_expires: false,
            taker: B,
            routed: VideoRoute::PreferredAgent,
        },
        Busy {
            chat: Chat::Delay,
            preferred: Some(P),
            preference_expires: true,
            taker: B,
            routed: VideoRoute::Queue,
        },
    ];
    for case in cases {
        let Busy {
            chat: c,
            preferred,
            preference_expires,
            taker,
            routed,
        } = case;
        let label = format!("{c:?}, preferred {preferred:?}, taken by {taker}");
        let scn = c.scn();

        // The request: back to the queue, A lets go.
        let steps = requeued(c, preferred);
        let mut want = vec![
            "TimerArmed(room_ttl)",
            "NotifyDevice(service.chat)",
            "AgentReleased",
            "NotifyDevice(service.video)",
            "EnteredQueue",
            "TimerArmed(find_agent)",
        ];
        if preferred.is_some() {
            want.push("TimerArmed(preferred_agent)");
        }
        let walk = check_ignoring(
            UNCHECKED,
            &format!("{label}: requeued"),
            &scn,
            svc(),
            &steps,
            (S::WaitForAgent, None),
            &want,
        );
        let rec = &walk.record;
        assert_eq!(
            rec.ticket,
            video_ticket(40, preferred),
            "{label}: the ticket is the routingData, since now"
        );
        assert!(rec.is_queued(), "{label}");
        assert_eq!(rec.agent, None, "{label}: A no longer holds it");
        assert!(walk.last().contains(&Effect::AgentReleased {
            agent: A.to_owned()
        }));
        assert!(walk.last().contains(&Effect::EnteredQueue {
            queue: "video".to_owned()
        }));
        let chat = rec.chat.as_ref().unwrap();
        let last = chat.transcript.last().unwrap();
        assert_eq!(
            (last.kind, last.party, last.nickname.as_str(), last.at),
            (ChatEntryKind::Left, Party::Agent, A, secs(40)),
            "{label}: A left the chat"
        );
        assert!(
            chat.is_open(),
            "{label}: the chat stays open for the customer"
        );
        assert!(!chat.agent_joined, "{label}");
        assert_eq!(walk.leg().agent, None, "{label}");
        assert_eq!(walk.room().code, ROOM, "{label}");
        assert!(walk.room().is_live(), "{label}");
        assert_eq!(
            rec.timers.get(&TimerKind::RoomTtl),
            Some(&secs(40 + ROOM_TTL)),
            "{label}"
        );
        assert_eq!(
            rec.timers.get(&TimerKind::FindAgent),
            Some(&secs(40 + c.find_agent())),
            "{label}"
        );
        assert_eq!(
            rec.timers.get(&TimerKind::PreferredAgent),
            preferred.map(|_| secs(40 + 60)).as_ref(),
            "{label}"
        );
        assert_eq!(rec.room_agent(), None, "{label}: nobody is in the room yet");

        // The next agent: straight to CONNECTED, no confirmation asked.
        let mut steps = steps;
        if preference_expires {
            steps.push(fire(TimerKind::PreferredAgent));
        }
        steps.push(at(110, reserved(taker)));
        let mut want = vec![
            "AgentReserved",
            "WaitSample",
            "LeftQueue",
            "TimerCancelled(find_agent)",
            "NotifyAgent(agent.offer)",
            "NotifyDevice(service.chat)",
            "NotifyDevice(service.video)",
            "NotifyAgent(agent.video)",
        ];
        if preferred.is_some() && !preference_expires {
            want.push("TimerCancelled(preferred_agent)");
        }
        let walk = check_ignoring(
            UNCHECKED,
            &format!("{label}: taken"),
            &scn,
            svc(),
            &steps,
            (S::Connected, None),
            &want,
        );
        let rec = &walk.record;
        assert_eq!(rec.agent.as_deref(), Some(taker), "{label}");
        assert_eq!(rec.served_by.as_deref(), Some(taker), "{label}");
        let leg = walk.leg();
        assert_eq!(leg.agent.as_deref(), Some(taker), "{label}");
        assert_eq!(leg.routed, Some(routed), "{label}");
        assert_eq!(leg.connected_at, Some(secs(110)), "{label}");
        assert_eq!(walk.room().ringing_at, Some(secs(110)), "{label}: it rings");
        assert!(walk.last().contains(&Effect::WaitSample {
            queue: "video".to_owned(),
            seconds: 70.0
        }));
        let chat = rec.chat.as_ref().unwrap();
        let last = chat.transcript.last().unwrap();
        assert_eq!(
            (last.kind, last.party, last.nickname.as_str()),
            (ChatEntryKind::Joined, Party::Agent, taker),
            "{label}: the new agent joins the chat"
        );
        assert!(chat.agent_joined, "{label}");
        assert_eq!(rec.confirm_attempts, u32::from(c == Chat::Delay), "{label}");
        assert_eq!(
            notified_agent(walk.last(), "agent.video").as_deref(),
            Some(taker),
            "{label}"
        );
        assert_eq!(
            agent_note(rec, "agent.video")["_meet_url"],
            json!(agent_url(ROOM)),
            "{label}"
        );
        assert_eq!(
            device_note(rec, "service.video")["_meet_url"],
            json!(customer_url(ROOM)),
            "{label}"
        );
        assert_eq!(rec.room_agent(), Some(taker), "{label}");
    }
}

#[test]
fn an_agent_cannot_start_video_when_busy_and_nobody_can_start_a_second_live_room() {
    // (label, chat, walk, the request, state, the live room the refusal names)
    type Case = (
        &'static str,
        Chat,
        Vec<Step>,
        Event,
        ServiceState,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "busy agent asks",
            Chat::Delay,
            chatting(Chat::Delay),
            video(Party::Agent, false, room(ROOM, 40)),
            S::Connected,
            None,
        ),
        (
            "busy agent asks (immediate)",
            Chat::Immediate,
            chatting(Chat::Immediate),
            video(Party::Agent, false, room(ROOM, 40)),
            S::Connected,
            None,
        ),
        (
            "customer again, agent free",
            Chat::Immediate,
            ringing(Chat::Immediate),
            video(Party::Client, true, room(ROOM2, 45)),
            S::Connected,
            Some(ROOM),
        ),
        (
            "customer again, agent busy",
            Chat::Immediate,
            ringing(Chat::Immediate),
            video(Party::Client, false, room(ROOM2, 45)),
            S::Connected,
            Some(ROOM),
        ),
        (
            "agent again",
            Chat::Delay,
            in_call(Chat::Delay),
            video(Party::Agent, true, room(ROOM2, 65)),
            S::Connected,
            Some(ROOM),
        ),
        (
            "again while requeued",
            Chat::Delay,
            requeued(Chat::Delay, None),
            video(Party::Client, false, room(ROOM2, 45)),
            S::WaitForAgent,
            Some(ROOM),
        ),
        (
            "again while queued",
            Chat::Immediate,
            queued_video(None),
            video(Party::Client, false, room(ROOM2, 45)),
            S::WaitForAgent,
            Some(ROOM),
        ),
    ];
    for (label, c, steps, event, state, names) in cases {
        let walk = run(&c.scn(), svc(), &steps);
        let (s, e, message) = refused(label, &walk.record, &c.scn(), &at(45, event));
        assert_eq!((s, e), (state, "video_requested"), "{label}");
        if let Some(code) = names {
            assert!(message.contains(code), "{label}: {message}");
        }
    }
}

#[test]
fn video_while_queued_keeps_the_place_and_retargets_the_ticket() {
    let scn = immediate();
    for preferred in [None, Some(P)] {
        let label = format!("preferred {preferred:?}");
        let mut want = vec![
            "TimerArmed(room_ttl)",
            "EnteredQueue",
            "NotifyDevice(service.video)",
        ];
        if preferred.is_some() {
            want.push("TimerArmed(preferred_agent)");
        }
        let walk = check_ignoring(
            UNCHECKED,
            &label,
            &scn,
            svc(),
            &queued_video(preferred),
            (S::WaitForAgent, None),
            &want,
        );
        let rec = &walk.record;
        assert_eq!(
            rec.ticket,
            video_ticket(0, preferred),
            "{label}: retargeted, since kept"
        );
        assert!(walk.last().contains(&Effect::EnteredQueue {
            queue: "video".to_owned()
        }));
        assert_eq!(
            rec.timers.get(&TimerKind::PreferredAgent),
            preferred.map(|_| secs(20 + 60)).as_ref(),
            "{label}"
        );
        assert_eq!(
            rec.timers.get(&TimerKind::RoomTtl),
            Some(&secs(20 + ROOM_TTL))
        );
        assert_eq!(
            rec.timers.get(&TimerKind::FindAgent),
            Some(&secs(3600)),
            "{label}: the find-agent wait is not restarted"
        );
        assert_eq!(walk.leg().agent, None, "{label}");
        assert!(rec.chat.as_ref().unwrap().is_open(), "{label}");

        // The chat goes on while waiting.
        let steps = then(
            queued_video(preferred),
            [at(
                25,
                Event::ChatMessage {
                    from: Party::Client,
                    text: "still there?".to_owned(),
                },
            )],
        );
        check_ignoring(
            UNCHECKED,
            &format!("{label}: chat"),
            &scn,
            svc(),
            &steps,
            (S::WaitForAgent, None),
            &["NotifyAgent(agent.chat)"],
        );

        // The agent that takes it connects the chat and rings the room.
        let taker = preferred.unwrap_or(B);
        let steps = then(queued_video(preferred), [at(30, reserved(taker))]);
        let mut want = vec![
            "AgentReserved",
            "WaitSample",
            "LeftQueue",
            "TimerCancelled(find_agent)",
            "NotifyAgent(agent.offer)",
            "NotifyDevice(service.chat)",
            "NotifyDevice(service.video)",
            "NotifyAgent(agent.video)",
        ];
        if preferred.is_some() {
            want.push("TimerCancelled(preferred_agent)");
        }
        let walk = check_ignoring(
            UNCHECKED,
            &format!("{label}: taken"),
            &scn,
            svc(),
            &steps,
            (S::Connected, None),
            &want,
        );
        assert_eq!(walk.leg().agent.as_deref(), Some(taker), "{label}");
        assert_eq!(
            walk.leg().routed,
            Some(if preferred.is_some() {
                VideoRoute::PreferredAgent
            } else {
                VideoRoute::Queue
            }),
            "{label}"
        );
        assert_eq!(walk.room().ringing_at, Some(secs(30)), "{label}");
    }

    // A preference the service had is replaced by the video's routing.
    let walk = run(&scn, preferring("agent-x"), &queued_video(None));
    assert_eq!(walk.record.ticket, video_ticket(0, None));
    assert!(!walk.record.timers.contains_key(&TimerKind::PreferredAgent));
    assert!(walk.last().contains(&Effect::TimerCancelled {
        kind: TimerKind::PreferredAgent
    }));
    let walk = run(&scn, preferring("agent-x"), &queued_video(Some(P)));
    assert_eq!(walk.record.ticket, video_ticket(0, Some(P)));
    assert_eq!(
        walk.record.timers.get(&TimerKind::PreferredAgent),
        Some(&secs(80))
    );
}

#[test]
fn video_is_refused_while_scheduled_or_waiting_for_the_customer_to_confirm() {
    let scn = delay();
    let cases: Vec<(&str, NewService, Vec<Step>, ServiceState)> = vec![
        (
            "scheduled",
            NewService {
                desired_time: Some(secs(3600)),
                ..svc()
            },
            vec![],
            S::Scheduled,
        ),
        (
            "waiting for confirm",
            svc(),
            vec![at(10, reserved(A))],
            S::WaitForUserConfirm,
        ),
    ];
    for (label, new, steps, state) in cases {
        let rec = run(&scn, new, &steps).record;
        for (by, free) in [
            (Party::Client, false),
            (Party::Client, true),
            (Party::Agent, true),
        ] {
            let (s, e, _) = refused(label, &rec, &scn, &at(20, video(by, free, room(ROOM, 20))));
            assert_eq!((s, e), (state, "video_requested"), "{label} by {by:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Preferred agents
// ---------------------------------------------------------------------------

#[test]
fn a_preferred_agent_holds_the_queue_until_its_timeout() {
    for (extra, timeout) in [(None, 60), (Some(r#""90s""#), 90)] {
        let label = format!("timeout {timeout}s");
        let scn = match extra {
            Some(value) => ScenarioBuilder::chat_delay().key("_preferred_agent_timeout", value),
            None => ScenarioBuilder::chat_delay(),
        }
        .build();
        let walk = check_ignoring(
            UNCHECKED,
            &label,
            &scn,
            preferring(P),
            &[],
            (S::WaitForAgent, None),
            &[
                "EnteredQueue",
                "TimerArmed(ttl)",
                "TimerArmed(find_agent)",
                "TimerArmed(preferred_agent)",
            ],
        );
        let rec = &walk.record;
        assert_eq!(rec.ticket.preferred_agent.as_deref(), Some(P), "{label}");
        assert_eq!(
            rec.timers.get(&TimerKind::PreferredAgent),
            Some(&secs(timeout)),
            "{label}"
        );

        // Somebody else is refused while the preference holds.
        let (s, e, message) = refused(&label, rec, &scn, &at(10, reserved(B)));
        assert_eq!((s, e), (S::WaitForAgent, "agent_reserved"), "{label}");
        assert!(message.contains(P), "{label}: {message}");
        let (_, _, _) = refused(&label, rec, &scn, &at(timeout - 1, reserved(B)));

        // The preferred agent may take it.
        let walk = run(&scn, preferring(P), &[at(10, reserved(P))]);
        assert_eq!(walk.record.state, S::WaitForUserConfirm, "{label}");
        assert_eq!(walk.record.agent.as_deref(), Some(P), "{label}");

        // Its time runs out: the queue may have it.
        let walk = check_ignoring(
            UNCHECKED,
            &format!("{label}: timeout"),
            &scn,
            preferring(P),
            &[fire(TimerKind::PreferredAgent)],
            (S::WaitForAgent, None),
            &["EnteredQueue"],
        );
        assert_eq!(walk.record.ticket.preferred_agent, None, "{label}");
        assert_eq!(walk.record.ticket.since, t0(), "{label}: the place is kept");
        assert!(!walk.record.timers.contains_key(&TimerKind::PreferredAgent));
        assert!(walk.last().contains(&Effect::EnteredQueue {
            queue: "support".to_owned()
        }));
        let walk = run(
            &scn,
            preferring(P),
            &[
                fire(TimerKind::PreferredAgent),
                at(timeout + 1, reserved(B)),
            ],
        );
        assert_eq!(walk.record.state, S::WaitForUserConfirm, "{label}");
        assert_eq!(walk.record.agent.as_deref(), Some(B), "{label}");
    }
}

#[test]
fn leaving_the_queue_disarms_the_preferred_agent_timer() {
    // (label, scenario, walk, state and reason, effects of the last step)
    type Case = (
        &'static str,
        Arc<Scenario>,
        Vec<Step>,
        (ServiceState, Option<R>),
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "reserved for the preferred agent",
            delay(),
            vec![at(10, reserved(P))],
            (S::WaitForUserConfirm, None),
            vec![
                "AgentReserved",
                "WaitSample",
                "LeftQueue",
                "TimerCancelled(find_agent)",
                "TimerCancelled(preferred_agent)",
                "TimerArmed(user_confirm)",
                "NotifyDevice(service.agentavailable)",
            ],
        ),
        (
            "cancelled",
            delay(),
            vec![at(10, Event::Cancel)],
            (S::Completed, Some(R::Cancelled)),
            vec![
                "LeftQueue",
                "TimerCancelled(find_agent)",
                "TimerCancelled(preferred_agent)",
                "TimerCancelled(ttl)",
                "NotifyDevice(service.completed)",
            ],
        ),
        (
            "no agent found",
            delay(),
            vec![fire(TimerKind::FindAgent)],
            (S::Completed, Some(R::FailTargetNotFound)),
            vec![
                "LeftQueue",
                "TimerCancelled(preferred_agent)",
                "TimerCancelled(ttl)",
                "NotifyDevice(service.completed)",
            ],
        ),
        (
            "customer left the queued chat",
            immediate(),
            vec![at(5, chat_started()), at(10, chat_left(Party::Client))],
            (S::Completed, Some(R::FailInteractionDeleted)),
            vec![
                "LeftQueue",
                "TimerCancelled(find_agent)",
                "TimerCancelled(preferred_agent)",
                "TimerCancelled(ttl)",
                "NotifyDevice(service.completed)",
            ],
        ),
    ];
    for (label, scn, steps, want, effects) in cases {
        let walk = check_ignoring(
            UNCHECKED,
            label,
            &scn,
            preferring(P),
            &steps,
            want,
            &effects,
        );
        assert!(
            !walk.record.timers.contains_key(&TimerKind::PreferredAgent),
            "{label}: {:?}",
            walk.record.timers
        );
    }
}

// ---------------------------------------------------------------------------
// Rooms: answer, join, leave, signal, expire
// ---------------------------------------------------------------------------

#[test]
fn a_ringing_room_is_answered_once_and_declining_ends_it() {
    let c = Chat::Immediate;
    let scn = c.scn();
    let notices = ["NotifyDevice(service.video)", "NotifyAgent(agent.video)"];

    // The customer asked, so the agent is rung (the caller answering is
    // refused: `only_the_rung_side_answers_the_ring`).
    #[allow(clippy::single_element_loop)] // one side may answer; kept as a table
    for by in [Party::Agent] {
        let label = format!("accepted by {by:?}");
        let walk = check_ignoring(
            UNCHECKED,
            &label,
            &scn,
            svc(),
            &then(ringing(c), [at(45, answered(by, true))]),
            (S::Connected, None),
            &notices,
        );
        let r = walk.room();
        assert_eq!(r.answered_by, Some(by), "{label}");
        assert_eq!(r.accepted_at, Some(secs(45)), "{label}");
        assert_eq!(r.declined_at, None, "{label}");
        assert!(r.is_live(), "{label}");
        assert_eq!(r.status(), "accepted", "{label}");
        assert!(walk.record.timers.contains_key(&TimerKind::RoomTtl));

        let label = format!("declined by {by:?}");
        let mut want = notices.to_vec();
        want.push("TimerCancelled(room_ttl)");
        let walk = check_ignoring(
            UNCHECKED,
            &label,
            &scn,
            svc(),
            &then(ringing(c), [at(45, answered(by, false))]),
            (S::Connected, None),
            &want,
        );
        let r = walk.room();
        assert_eq!(r.answered_by, Some(by), "{label}");
        assert_eq!(r.declined_at, Some(secs(45)), "{label}");
        assert_eq!(r.ended_at, Some(secs(45)), "{label}");
        assert_eq!(r.end_reason, Some(RoomEnd::Declined), "{label}");
        assert!(!walk.record.timers.contains_key(&TimerKind::RoomTtl));
        assert_eq!(walk.record.room_agent(), None, "{label}");
    }

    // Only a ringing, unanswered room.
    let cases: Vec<(&str, Vec<Step>, Event)> = vec![
        (
            "answered twice",
            then(ringing(c), [at(45, answered(Party::Agent, true))]),
            answered(Party::Agent, true),
        ),
        (
            "declined after accepting",
            then(ringing(c), [at(45, answered(Party::Agent, true))]),
            answered(Party::Client, false),
        ),
        (
            "answered after joining",
            then(ringing(c), [at(45, joined(Party::Agent))]),
            answered(Party::Client, true),
        ),
        (
            "answered after the start",
            in_call(c),
            answered(Party::Agent, true),
        ),
        (
            "answered after declining",
            then(ringing(c), [at(45, answered(Party::Agent, false))]),
            answered(Party::Agent, true),
        ),
        (
            "queued room never rang",
            queued_video(None),
            answered(Party::Client, true),
        ),
        ("no room at all", chatting(c), answered(Party::Agent, true)),
    ];
    for (label, steps, event) in cases {
        let rec = run(&scn, svc(), &steps).record;
        let (_, e, _) = refused(label, &rec, &scn, &at(70, event));
        assert!(e.starts_with("room_"), "{label}: {e}");
    }
}

#[test]
fn joining_records_participants_and_both_sides_start_the_call() {
    let c = Chat::Immediate;
    let scn = c.scn();
    let notices = ["NotifyDevice(service.video)", "NotifyAgent(agent.video)"];

    // The caller (the customer asked) joining does not answer its own ring.
    let walk = check_ignoring(
        UNCHECKED,
        "client joins",
        &scn,
        svc(),
        &then(ringing(c), [at(50, joined(Party::Client))]),
        (S::Connected, None),
        &notices,
    );
    let r = walk.room();
    assert_eq!(r.participants.len(), 1);
    let p = &r.participants[0];
    assert_eq!(
        (p.party, p.name.as_str(), p.joined_at, p.left_at),
        (Party::Client, "John", secs(50), None)
    );
    assert_eq!(r.answered_by, None);
    assert_eq!(r.accepted_at, None);
    assert_eq!(r.started_at, None);
    assert!(walk.record.timers.contains_key(&TimerKind::RoomTtl));

    // Both in: the call starts, the code no longer needs to expire.
    let mut want = notices.to_vec();
    want.push("TimerCancelled(room_ttl)");
    let walk = check_ignoring(
        UNCHECKED,
        "agent joins",
        &scn,
        svc(),
        &in_call(c),
        (S::Connected, None),
        &want,
    );
    let r = walk.room();
    assert_eq!(r.participants.len(), 2);
    let p = &r.participants[1];
    assert_eq!(
        (p.party, p.name.as_str(), p.joined_at),
        (Party::Agent, A, secs(60))
    );
    assert_eq!(r.started_at, Some(secs(60)));
    assert_eq!(
        r.answered_by,
        Some(Party::Agent),
        "the rung side's join answered"
    );
    assert_eq!(r.status(), "started");
    assert!(!walk.record.timers.contains_key(&TimerKind::RoomTtl));
    assert_eq!(
        device_note(&walk.record, "service.video")["_event"],
        "started"
    );

    // Agent first, then the customer.
    let walk = run(
        &scn,
        svc(),
        &then(
            ringing(c),
            [at(50, joined(Party::Agent)), at(55, joined(Party::Client))],
        ),
    );
    assert_eq!(walk.room().answered_by, Some(Party::Agent));
    assert_eq!(walk.room().started_at, Some(secs(55)));

    // Joining again (another tab) changes nothing.
    let rec = run(
        &scn,
        svc(),
        &then(ringing(c), [at(50, joined(Party::Client))]),
    )
    .record;
    let again = machine::apply(&rec, &scn, &joined(Party::Client), secs(52)).unwrap();
    assert_eq!(again.record.video, rec.video);
    assert!(again.effects.is_empty(), "{:?}", again.effects);
}

#[test]
fn joining_is_refused_without_a_leg_agent_and_after_an_unstarted_room_expired() {
    let scn = immediate();
    let expiry = 40 + ROOM_TTL;
    // The client may join a room that is still waiting for its agent.
    let walk = run(
        &scn,
        svc(),
        &then(queued_video(None), [at(25, joined(Party::Client))]),
    );
    assert!(walk.room().is_in(Party::Client));
    assert_eq!(walk.record.state, S::WaitForAgent);

    let cases: Vec<(&str, Vec<Step>, Step, &str)> = vec![
        (
            "agent without a leg agent",
            queued_video(None),
            at(25, joined(Party::Agent)),
            "agent",
        ),
        (
            "agent without a leg agent, after the client",
            then(queued_video(None), [at(25, joined(Party::Client))]),
            at(26, joined(Party::Agent)),
            "agent",
        ),
        (
            "client at the expiry",
            ringing(Chat::Immediate),
            at(expiry, joined(Party::Client)),
            ROOM,
        ),
        (
            "agent after the expiry",
            then(ringing(Chat::Immediate), [at(50, joined(Party::Client))]),
            at(expiry + 5, joined(Party::Agent)),
            ROOM,
        ),
        (
            "no live room",
            chatting(Chat::Immediate),
            at(50, joined(Party::Client)),
            "room",
        ),
        (
            "room ended",
            after_call(Chat::Immediate),
            at(110, joined(Party::Client)),
            "room",
        ),
    ];
    for (label, steps, step, names) in cases {
        let rec = run(&scn, svc(), &steps).record;
        let (_, e, message) = refused(label, &rec, &scn, &step);
        assert_eq!(e, "room_joined", "{label}");
        assert!(message.contains(names), "{label}: {message}");
    }

    // Just before the expiry is fine.
    let walk = run(
        &scn,
        svc(),
        &then(
            ringing(Chat::Immediate),
            [at(expiry - 1, joined(Party::Client))],
        ),
    );
    assert!(walk.room().is_in(Party::Client));
}

#[test]
fn leaving_a_started_call_ends_the_room_for_everyone_and_before_the_start_only_the_leaver_leaves() {
    let notices = ["NotifyDevice(service.video)", "NotifyAgent(agent.video)"];
    for c in [Chat::Delay, Chat::Immediate] {
        for party in [Party::Client, Party::Agent] {
            let label = format!("{c:?}: {party:?} leaves the call");
            let walk = check_ignoring(
                UNCHECKED,
                &label,
                &c.scn(),
                svc(),
                &then(in_call(c), [at(100, room_left(party))]),
                (S::Connected, None),
                &notices,
            );
            let r = walk.room();
            assert_eq!(r.ended_at, Some(secs(100)), "{label}");
            assert_eq!(r.end_reason, Some(RoomEnd::Left), "{label}");
            assert!(
                r.participants.iter().all(|p| p.left_at == Some(secs(100))),
                "{label}: {:?}",
                r.participants
            );
            assert_eq!(walk.record.room_agent(), None, "{label}");
            assert_eq!(walk.record.room_code(), Some(ROOM), "{label}");
            let device = device_note(&walk.record, "service.video");
            assert_eq!(device["_event"], "ended", "{label}");
        }
    }

    // Before the start: only the leaver's entry closes, the room stays.
    let c = Chat::Immediate;
    let walk = check_ignoring(
        UNCHECKED,
        "client leaves before the start",
        &c.scn(),
        svc(),
        &then(
            ringing(c),
            [
                at(50, joined(Party::Client)),
                at(55, room_left(Party::Client)),
            ],
        ),
        (S::Connected, None),
        &notices,
    );
    let r = walk.room();
    assert!(r.is_live());
    assert_eq!(r.end_reason, None);
    assert_eq!(r.participants.len(), 1);
    assert_eq!(r.participants[0].left_at, Some(secs(55)));
    assert!(!r.is_in(Party::Client));
    assert!(walk.record.timers.contains_key(&TimerKind::RoomTtl));
    // Rejoining is a new entry, and then the agent starts the call.
    let walk = run(
        &c.scn(),
        svc(),
        &then(
            ringing(c),
            [
                at(50, joined(Party::Client)),
                at(55, room_left(Party::Client)),
                at(56, joined(Party::Client)),
                at(57, joined(Party::Agent)),
            ],
        ),
    );
    assert_eq!(walk.room().participants.len(), 3);
    assert_eq!(walk.room().started_at, Some(secs(57)));

    // Only who is in can leave.
    let cases: Vec<(&str, Vec<Step>, Party)> = vec![
        ("agent never joined", ringing(c), Party::Agent),
        (
            "agent never joined, client in",
            then(ringing(c), [at(50, joined(Party::Client))]),
            Party::Agent,
        ),
        (
            "client already left",
            then(
                ringing(c),
                [
                    at(50, joined(Party::Client)),
                    at(55, room_left(Party::Client)),
                ],
            ),
            Party::Client,
        ),
    ];
    for (label, steps, party) in cases {
        let rec = run(&c.scn(), svc(), &steps).record;
        let (_, e, _) = refused(label, &rec, &c.scn(), &at(60, room_left(party)));
        assert_eq!(e, "room_left", "{label}");
    }
}

#[test]
fn signals_go_to_the_other_side_only_in_relay_rooms_after_joining_and_nothing_is_stored() {
    let c = Chat::Immediate;
    let scn = c.scn();
    let client_in = then(ringing(c), [at(50, joined(Party::Client))]);
    let template_call = then(
        chatting(c),
        [
            at(
                40,
                video(Party::Client, true, room_with(ROOM, "template", 40)),
            ),
            at(50, joined(Party::Client)),
            at(60, joined(Party::Agent)),
        ],
    );
    // (label, walk, from, the push or the refusal)
    let cases: Vec<(&str, Vec<Step>, Party, Option<&str>)> = vec![
        (
            "client in a call",
            in_call(c),
            Party::Client,
            Some("PushAgent(agent.video.signal)"),
        ),
        (
            "agent in a call",
            in_call(c),
            Party::Agent,
            Some("PushDevice(service.video.signal)"),
        ),
        (
            "client joined, agent not yet",
            client_in.clone(),
            Party::Client,
            Some("PushAgent(agent.video.signal)"),
        ),
        ("agent not joined", client_in, Party::Agent, None),
        ("client not joined", ringing(c), Party::Client, None),
        (
            "client left",
            then(
                ringing(c),
                [
                    at(50, joined(Party::Client)),
                    at(55, room_left(Party::Client)),
                ],
            ),
            Party::Client,
            None,
        ),
        (
            "template room, client",
            template_call.clone(),
            Party::Client,
            None,
        ),
        ("template room, agent", template_call, Party::Agent, None),
        ("no room", chatting(c), Party::Client, None),
    ];
    for (label, steps, from, push) in cases {
        let rec = run(&scn, svc(), &steps).record;
        let step = at(70, signal(from));
        match push {
            Some(push) => {
                let applied = apply_step(&rec, &scn, &step)
                    .unwrap_or_else(|e| panic!("{label}: refused: {e}"));
                assert_eq!(
                    effect_kinds_ignoring(&applied.effects, UNCHECKED),
                    sorted(&[push]),
                    "{label}"
                );
                let payload = match &applied.effects[0] {
                    Effect::PushAgent { agent, payload, .. } => {
                        assert_eq!(agent.as_deref(), Some(A), "{label}");
                        payload
                    }
                    Effect::PushDevice { payload, .. } => payload,
                    other => panic!("{label}: {other:?}"),
                };
                assert_eq!(payload["signal"], sdp(), "{label}");
                assert_eq!(payload["_room_code"], ROOM, "{label}");
                let mut after = applied.record.clone();
                after.version = rec.version;
                assert_eq!(after, rec, "{label}: nothing is stored");
            }
            None => {
                let (_, e, _) = refused(label, &rec, &scn, &step);
                assert_eq!(e, "room_signal", "{label}");
            }
        }
    }
}

#[test]
fn an_unstarted_room_expires_and_a_started_call_outlives_its_code() {
    let notices = ["NotifyDevice(service.video)", "NotifyAgent(agent.video)"];
    for c in [Chat::Delay, Chat::Immediate] {
        for steps in [
            ringing(c),
            then(ringing(c), [at(50, joined(Party::Client))]),
            then(ringing(c), [at(45, answered(Party::Agent, true))]),
        ] {
            let label = format!("{c:?} after {} steps", steps.len());
            let walk = check_ignoring(
                UNCHECKED,
                &label,
                &c.scn(),
                svc(),
                &then(steps, [fire(TimerKind::RoomTtl)]),
                (S::Connected, None),
                &notices,
            );
            let r = walk.room();
            assert_eq!(r.end_reason, Some(RoomEnd::Expired), "{label}");
            assert_eq!(r.ended_at, Some(secs(40 + ROOM_TTL)), "{label}");
            assert!(r.participants.iter().all(|p| p.left_at.is_some()));
            assert_eq!(walk.record.room_agent(), None, "{label}");
            assert_eq!(
                device_note(&walk.record, "service.video")["_event"],
                "ended"
            );
        }
    }

    // A started call: the timer is gone, so its old due time is stale ...
    let c = Chat::Immediate;
    let rec = run(&c.scn(), svc(), &in_call(c)).record;
    let expiry = secs(40 + ROOM_TTL);
    let fired = Event::TimerFired {
        kind: TimerKind::RoomTtl,
        due: expiry,
    };
    assert_eq!(
        machine::apply(&rec, &c.scn(), &fired, expiry).unwrap_err(),
        TransitionError::StaleTimer {
            kind: TimerKind::RoomTtl
        }
    );
    // ... and even when it was still armed, the call goes on.
    let mut armed = rec.clone();
    armed.timers.insert(TimerKind::RoomTtl, expiry);
    let applied = machine::apply(&armed, &c.scn(), &fired, expiry).unwrap();
    let r = applied.record.video.as_ref().unwrap().rooms.last().unwrap();
    assert!(r.is_live());
    assert_eq!(r.started_at, Some(secs(60)));
    assert_eq!(applied.record.room_agent(), Some(A));
    // A started call can be joined and left after the code's time.
    let walk = run(
        &c.scn(),
        svc(),
        &then(
            in_call(c),
            [at(40 + ROOM_TTL + 100, room_left(Party::Agent))],
        ),
    );
    assert_eq!(walk.room().end_reason, Some(RoomEnd::Left));
}

#[test]
fn room_events_work_in_every_active_state_and_not_after_completion() {
    // SCHEDULED: a video service created with its room.
    let scn = video_scn();
    let scheduled = NewService {
        desired_time: Some(secs(3600)),
        video: Some(leg(routing(None), vec![room(ROOM, 0)])),
        ..svc()
    };
    let walk = run(&scn, scheduled, &[at(10, joined(Party::Client))]);
    assert_eq!(walk.record.state, S::Scheduled);
    assert!(walk.room().is_in(Party::Client));
    let p = &walk.room().participants[0];
    assert_eq!(
        p.name, CUSTOMER,
        "without a chat the customer is its number"
    );

    // WAIT_FOR_AGENT.
    let scn = immediate();
    let walk = run(
        &scn,
        svc(),
        &then(queued_video(None), [at(25, joined(Party::Client))]),
    );
    assert_eq!(walk.record.state, S::WaitForAgent);
    assert!(walk.room().is_in(Party::Client));

    // WAIT_FOR_USER_CONFIRM (a leg put there by hand: the machine skips it for video).
    let scn = delay();
    let mut rec = run(&scn, svc(), &[at(10, reserved(A))]).record;
    assert_eq!(rec.state, S::WaitForUserConfirm);
    rec.video = Some(Box::new(leg(routing(None), vec![room(ROOM, 10)])));
    let applied = machine::apply(&rec, &scn, &joined(Party::Client), secs(20)).unwrap();
    assert_eq!(applied.record.state, S::WaitForUserConfirm);
    assert!(applied.record.video.as_ref().unwrap().rooms[0].is_in(Party::Client));

    // CONNECTED is covered above; COMPLETED refuses them all.
    let c = Chat::Immediate;
    let rec = run(
        &c.scn(),
        svc(),
        &then(in_call(c), [at(100, Event::ForceComplete)]),
    )
    .record;
    assert_eq!(rec.state, S::Completed);
    for event in [
        joined(Party::Client),
        room_left(Party::Agent),
        answered(Party::Agent, true),
        signal(Party::Client),
    ] {
        let label = format!("completed: {}", event.name());
        let (s, _, _) = refused(&label, &rec, &c.scn(), &at(110, event));
        assert_eq!(s, S::Completed, "{label}");
    }
}

// ---------------------------------------------------------------------------
// Ending: complete, force, cancel, TTL, the chat
// ---------------------------------------------------------------------------

#[test]
fn complete_is_refused_while_a_room_is_live_and_force_complete_ends_it() {
    for c in [Chat::Delay, Chat::Immediate] {
        for (what, steps) in [
            ("ringing", ringing(c)),
            ("in call", in_call(c)),
            (
                "client waiting",
                then(ringing(c), [at(50, joined(Party::Client))]),
            ),
        ] {
            let label = format!("{c:?}, {what}");
            let rec = run(&c.scn(), svc(), &steps).record;
            let (s, e, message) = refused(&label, &rec, &c.scn(), &at(100, Event::Complete));
            assert_eq!((s, e), (S::Connected, "complete"), "{label}");
            assert!(message.contains(ROOM), "{label}: {message}");

            let mut want = vec![
                "NotifyDevice(service.video)",
                "NotifyAgent(agent.video)",
                "TimerCancelled(ttl)",
                "HandleSample",
                "AgentReleased",
                "NotifyDevice(service.completed)",
            ];
            if what != "in call" {
                want.push("TimerCancelled(room_ttl)");
            }
            let walk = check_ignoring(
                UNCHECKED,
                &format!("{label}: forced"),
                &c.scn(),
                svc(),
                &then(steps, [at(100, Event::ForceComplete)]),
                (S::Completed, Some(R::AgentConnected)),
                &want,
            );
            let r = walk.room();
            assert_eq!(r.end_reason, Some(RoomEnd::Forced), "{label}");
            assert_eq!(r.ended_at, Some(secs(100)), "{label}");
            assert!(r.participants.iter().all(|p| p.left_at == Some(secs(100))));
            assert!(walk.record.timers.is_empty(), "{label}");
            assert_eq!(walk.record.served_by.as_deref(), Some(A), "{label}");
        }
        // Once the room ended, a plain complete works.
        let walk = run(
            &c.scn(),
            svc(),
            &then(after_call(c), [at(110, Event::Complete)]),
        );
        assert_eq!(
            (walk.record.state, walk.record.reason),
            (S::Completed, Some(R::AgentConnected))
        );
        assert_eq!(walk.room().end_reason, Some(RoomEnd::Left));
    }
}

#[test]
fn cancel_and_ttl_end_a_live_room_as_service_ended() {
    let cases: Vec<(&str, Chat, Vec<Step>)> = vec![
        ("ringing", Chat::Immediate, ringing(Chat::Immediate)),
        ("in call", Chat::Delay, in_call(Chat::Delay)),
        ("requeued", Chat::Delay, requeued(Chat::Delay, None)),
        ("queued", Chat::Immediate, queued_video(None)),
    ];
    for (what, c, steps) in cases {
        for (end, step, reason) in [
            ("cancel", at(300, Event::Cancel), R::Cancelled),
            ("ttl", fire(TimerKind::Ttl), R::FailTimeoutTtl),
        ] {
            let label = format!("{what}, {end}");
            let walk = run(&c.scn(), svc(), &then(steps.clone(), [step]));
            assert_eq!(
                (walk.record.state, walk.record.reason),
                (S::Completed, Some(reason)),
                "{label}"
            );
            let r = walk.room();
            assert_eq!(r.end_reason, Some(RoomEnd::ServiceEnded), "{label}");
            assert_eq!(r.ended_at, walk.record.completed_at, "{label}");
            assert!(r.participants.iter().all(|p| p.left_at.is_some()));
            assert!(walk.record.timers.is_empty(), "{label}");
            assert_eq!(walk.record.room_agent(), None, "{label}");
            assert!(
                effect_kinds_ignoring(walk.last(), UNCHECKED)
                    .contains(&"NotifyDevice(service.video)".to_owned()),
                "{label}: the device hears the room ended"
            );
        }
    }
}

#[test]
fn the_chat_can_end_while_the_video_goes_on() {
    for c in [Chat::Delay, Chat::Immediate] {
        for (by, tell) in [
            (Party::Client, "NotifyAgent(agent.chat)"),
            (Party::Agent, "NotifyDevice(service.chat)"),
        ] {
            for (what, steps) in [("ringing", ringing(c)), ("in call", in_call(c))] {
                let label = format!("{c:?}, {what}, {by:?} leaves the chat");
                let steps = then(steps, [at(80, chat_left(by))]);
                let walk = check_ignoring(
                    UNCHECKED,
                    &label,
                    &c.scn(),
                    svc(),
                    &steps,
                    (S::Connected, None),
                    &[tell],
                );
                let chat = walk.record.chat.as_ref().unwrap();
                assert_eq!(chat.ended_at, Some(secs(80)), "{label}");
                assert!(walk.room().is_live(), "{label}");
                assert_eq!(walk.record.agent.as_deref(), Some(A), "{label}");
                assert_eq!(walk.record.room_agent(), Some(A), "{label}");
            }
        }
        // The call ends later; the service still needs the agent's complete.
        let steps = then(
            in_call(c),
            [
                at(80, chat_left(Party::Client)),
                at(100, room_left(Party::Agent)),
            ],
        );
        let walk = run(&c.scn(), svc(), &steps);
        assert_eq!(walk.record.state, S::Connected);
        assert_eq!(walk.room().end_reason, Some(RoomEnd::Left));
        let walk = run(&c.scn(), svc(), &then(steps, [at(110, Event::Complete)]));
        assert_eq!(walk.record.reason, Some(R::AgentConnected));
    }
    // Without a live room, leaving the chat ends the service as before.
    let c = Chat::Immediate;
    let walk = run(
        &c.scn(),
        svc(),
        &then(after_call(c), [at(110, chat_left(Party::Client))]),
    );
    assert_eq!(
        (walk.record.state, walk.record.reason),
        (S::Completed, Some(R::AgentConnected))
    );
}

// ---------------------------------------------------------------------------
// room_agent, room_code, OpenRoom, booked video
// ---------------------------------------------------------------------------

#[test]
fn room_agent_is_the_leg_agent_only_while_its_room_is_live_and_room_code_is_the_last_room() {
    let c = Chat::Immediate;
    let scn = c.scn();
    // (after these steps, room_agent, room_code)
    type Row = (
        &'static str,
        Vec<Step>,
        Option<&'static str>,
        Option<&'static str>,
    );
    let table: Vec<Row> = vec![
        ("chatting", chatting(c), None, None),
        ("ringing", ringing(c), Some(A), Some(ROOM)),
        ("in call", in_call(c), Some(A), Some(ROOM)),
        ("after the call", after_call(c), None, Some(ROOM)),
        (
            "second room",
            then(after_call(c), [at(200, open_room(room(ROOM2, 200)))]),
            Some(A),
            Some(ROOM2),
        ),
        (
            "second room forced",
            then(
                after_call(c),
                [
                    at(200, open_room(room(ROOM2, 200))),
                    at(210, Event::ForceComplete),
                ],
            ),
            None,
            Some(ROOM2),
        ),
        ("requeued", requeued(Chat::Delay, None), None, Some(ROOM)),
        (
            "requeued then taken",
            then(requeued(Chat::Delay, None), [at(50, reserved(B))]),
            Some(B),
            Some(ROOM),
        ),
        (
            "declined",
            then(ringing(c), [at(45, answered(Party::Agent, false))]),
            None,
            Some(ROOM),
        ),
        (
            "cancelled while ringing",
            then(ringing(c), [at(45, Event::Cancel)]),
            None,
            Some(ROOM),
        ),
    ];
    for (label, steps, agent, code) in table {
        let scn = if label.starts_with("requeued") {
            delay()
        } else {
            scn.clone()
        };
        let rec = run(&scn, svc(), &steps).record;
        assert_eq!(rec.room_agent(), agent, "{label}: room_agent");
        assert_eq!(rec.room_code(), code, "{label}: room_code");
    }
    // A completed record holds no agent in a room, whatever its leg says.
    let mut rec = run(&scn, svc(), &ringing(c)).record;
    rec.state = S::Completed;
    assert_eq!(rec.room_agent(), None);
    assert_eq!(rec.room_code(), Some(ROOM));
}

#[test]
fn open_room_rings_a_new_room_for_a_leg_with_an_agent_and_no_live_room() {
    for c in [Chat::Delay, Chat::Immediate] {
        for (what, steps) in [
            ("after a call", after_call(c)),
            (
                "after a decline",
                then(ringing(c), [at(45, answered(Party::Agent, false))]),
            ),
            (
                "after it expired",
                then(ringing(c), [fire(TimerKind::RoomTtl)]),
            ),
        ] {
            let label = format!("{c:?}, {what}");
            let walk = check_ignoring(
                UNCHECKED,
                &label,
                &c.scn(),
                svc(),
                &then(steps, [at(700, open_room(room(ROOM2, 700)))]),
                (S::Connected, None),
                &[
                    "TimerArmed(room_ttl)",
                    "NotifyDevice(service.video)",
                    "NotifyAgent(agent.video)",
                ],
            );
            let leg = walk.leg();
            assert_eq!(leg.rooms.len(), 2, "{label}");
            assert_eq!(leg.rooms[0].code, ROOM, "{label}");
            let r = walk.room();
            assert_eq!(r.code, ROOM2, "{label}");
            assert_eq!(r.ringing_at, Some(secs(700)), "{label}");
            assert_eq!(
                walk.record.timers.get(&TimerKind::RoomTtl),
                Some(&secs(700 + ROOM_TTL)),
                "{label}"
            );
            assert_eq!(
                device_note(&walk.record, "service.video")["_meet_url"],
                json!(customer_url(ROOM2)),
                "{label}"
            );
            assert_eq!(
                agent_note(&walk.record, "agent.video")["_meet_url"],
                json!(agent_url(ROOM2)),
                "{label}"
            );
        }
    }

    // Refused otherwise.
    let mut no_agent = run(&immediate(), svc(), &after_call(Chat::Immediate)).record;
    no_agent.video.as_mut().unwrap().agent = None;
    let cases: Vec<(&str, Arc<Scenario>, ServiceRecord)> = vec![
        (
            "live room",
            immediate(),
            run(&immediate(), svc(), &ringing(Chat::Immediate)).record,
        ),
        (
            "no video leg",
            immediate(),
            run(&immediate(), svc(), &chatting(Chat::Immediate)).record,
        ),
        ("leg without an agent", immediate(), no_agent),
        (
            "queued",
            immediate(),
            run(
                &immediate(),
                svc(),
                &then(queued_video(None), [fire(TimerKind::RoomTtl)]),
            )
            .record,
        ),
        (
            "completed",
            immediate(),
            run(
                &immediate(),
                svc(),
                &then(after_call(Chat::Immediate), [at(110, Event::Complete)]),
            )
            .record,
        ),
    ];
    for (label, scn, rec) in cases {
        let (_, e, _) = refused(label, &rec, &scn, &at(700, open_room(room(ROOM2, 700))));
        assert_eq!(e, "room_opened", "{label}");
    }
}

#[test]
fn a_booked_video_service_asks_for_a_room_when_it_connects() {
    let scn = video_scn();
    let booked = || NewService {
        desired_time: Some(secs(3600)),
        video: Some(leg(routing(None), Vec::new())),
        ..svc()
    };
    let walk = run(&scn, booked(), &[fire(TimerKind::DesiredTime)]);
    assert_eq!(walk.record.state, S::WaitForAgent);
    assert_eq!(walk.record.ticket, video_ticket(3600, None));
    assert_eq!(walk.record.schema, RECORD_SCHEMA_VIDEO);

    let steps = [fire(TimerKind::DesiredTime), at(3700, reserved(B))];
    let walk = check_ignoring(
        UNCHECKED,
        "taken",
        &scn,
        booked(),
        &steps,
        (S::Connected, None),
        &[
            "AgentReserved",
            "WaitSample",
            "LeftQueue",
            "TimerCancelled(find_agent)",
            "NotifyDevice(service.agentavailable)",
            "NotifyAgent(agent.offer)",
            "OpenRoom",
        ],
    );
    let leg = walk.leg();
    assert_eq!(leg.agent.as_deref(), Some(B));
    assert_eq!(leg.routed, Some(VideoRoute::Queue));
    assert_eq!(leg.connected_at, Some(secs(3700)));
    assert!(leg.rooms.is_empty());
    assert_eq!(walk.record.room_agent(), None);
    assert_eq!(walk.record.room_code(), None);
    let offer = agent_note(&walk.record, "agent.offer");
    assert_eq!(offer["_media_type"], "video");

    // The shell makes the room: it rings.
    let steps = [
        fire(TimerKind::DesiredTime),
        at(3700, reserved(B)),
        at(3705, open_room(room(ROOM, 3705))),
    ];
    let walk = check_ignoring(
        UNCHECKED,
        "room opened",
        &scn,
        booked(),
        &steps,
        (S::Connected, None),
        &[
            "TimerArmed(room_ttl)",
            "NotifyDevice(service.video)",
            "NotifyAgent(agent.video)",
        ],
    );
    assert_eq!(walk.room().ringing_at, Some(secs(3705)));
    assert_eq!(walk.record.room_agent(), Some(B));
    assert_eq!(walk.record.room_code(), Some(ROOM));

    // A requeued chat video whose room expired in the queue asks for a new one.
    let c = Chat::Delay;
    let steps = then(requeued(c, None), [fire(TimerKind::RoomTtl)]);
    let walk = check_ignoring(
        UNCHECKED,
        "expired in the queue",
        &c.scn(),
        svc(),
        &steps,
        (S::WaitForAgent, None),
        &["NotifyDevice(service.video)"],
    );
    assert_eq!(walk.room().end_reason, Some(RoomEnd::Expired));
    check_ignoring(
        UNCHECKED,
        "taken after the expiry",
        &c.scn(),
        svc(),
        &then(steps, [at(700, reserved(B))]),
        (S::Connected, None),
        &[
            "AgentReserved",
            "WaitSample",
            "LeftQueue",
            "TimerCancelled(find_agent)",
            "NotifyAgent(agent.offer)",
            "NotifyDevice(service.chat)",
            "OpenRoom",
        ],
    );
}

// ---------------------------------------------------------------------------
// Survey
// ---------------------------------------------------------------------------

#[test]
fn the_survey_is_answered_once_after_a_call_with_a_score_in_its_scale() {
    let c = Chat::Immediate;
    let scn = c.scn();
    let completed_after_call = then(in_call(c), [at(100, Event::ForceComplete)]);
    // (label, steps, score, scale, state and reason afterwards)
    type Accepted = (&'static str, Vec<Step>, u8, u8, (ServiceState, Option<R>));
    let accepted: Vec<Accepted> = vec![
        ("after the call", after_call(c), 4, 5, (S::Connected, None)),
        ("lowest score", after_call(c), 1, 5, (S::Connected, None)),
        ("highest score", after_call(c), 5, 5, (S::Connected, None)),
        ("scale of ten", after_call(c), 10, 10, (S::Connected, None)),
        (
            "completed by force",
            completed_after_call.clone(),
            3,
            5,
            (S::Completed, Some(R::AgentConnected)),
        ),
        (
            "completed after leaving",
            then(after_call(c), [at(105, Event::Complete)]),
            2,
            5,
            (S::Completed, Some(R::AgentConnected)),
        ),
        (
            "cancelled during the call",
            then(in_call(c), [at(100, Event::Cancel)]),
            2,
            5,
            (S::Completed, Some(R::Cancelled)),
        ),
        (
            "second room ringing after a call",
            then(after_call(c), [at(105, open_room(room(ROOM2, 105)))]),
            4,
            5,
            (S::Connected, None),
        ),
    ];
    for (label, steps, score, scale, want) in accepted {
        let walk = check_ignoring(
            UNCHECKED,
            label,
            &scn,
            svc(),
            &then(steps, [at(120, survey(score, scale))]),
            want,
            &["NotifyAgent(agent.survey)"],
        );
        assert_eq!(
            walk.leg().survey,
            Some(SurveyAnswer {
                question: "How was your call?".to_owned(),
                score,
                scale,
                comment: Some("clear picture".to_owned()),
                at: secs(120),
            }),
            "{label}"
        );
        assert_eq!(
            notified_agent(walk.last(), "agent.survey").as_deref(),
            Some(A),
            "{label}"
        );
    }

    let refusals: Vec<(&str, Vec<Step>, u8, u8)> = vec![
        (
            "answered twice",
            then(after_call(c), [at(110, survey(4, 5))]),
            5,
            5,
        ),
        ("score zero", after_call(c), 0, 5),
        ("score above the scale", after_call(c), 6, 5),
        ("no video", chatting(c), 4, 5),
        ("ringing", ringing(c), 4, 5),
        ("in the call", in_call(c), 4, 5),
        (
            "declined, never started",
            then(ringing(c), [at(45, answered(Party::Agent, false))]),
            4,
            5,
        ),
        (
            "expired",
            then(ringing(c), [fire(TimerKind::RoomTtl)]),
            4,
            5,
        ),
        (
            "cancelled before the start",
            then(ringing(c), [at(45, Event::Cancel)]),
            4,
            5,
        ),
        (
            "completed without video",
            then(chatting(c), [at(45, Event::Complete)]),
            4,
            5,
        ),
        (
            "twice after completion",
            then(completed_after_call, [at(110, survey(4, 5))]),
            3,
            5,
        ),
    ];
    for (label, steps, score, scale) in refusals {
        let rec = run(&scn, svc(), &steps).record;
        let (_, e, _) = refused(label, &rec, &scn, &at(900, survey(score, scale)));
        assert_eq!(e, "survey_answered", "{label}");
    }
}

// ---------------------------------------------------------------------------
// Schema and create
// ---------------------------------------------------------------------------

#[test]
fn records_with_video_or_a_preferred_agent_are_written_as_schema_3() {
    assert_eq!(RECORD_SCHEMA_VIDEO, 3);
    let c = Chat::Immediate;
    let plain = run(&c.scn(), svc(), &chatting(c)).record;
    assert_eq!(
        plain.schema, RECORD_SCHEMA_PLAIN,
        "a plain chat stays readable"
    );

    let cases: Vec<(&str, Arc<Scenario>, NewService, Vec<Step>)> = vec![
        ("same agent", c.scn(), svc(), ringing(c)),
        ("requeued", delay(), svc(), requeued(Chat::Delay, None)),
        ("queued", c.scn(), svc(), queued_video(None)),
        ("after the call", c.scn(), svc(), after_call(c)),
        ("preferred at create", delay(), preferring(P), vec![]),
        (
            "preferred at create, scheduled",
            delay(),
            NewService {
                desired_time: Some(secs(3600)),
                ..preferring(P)
            },
            vec![],
        ),
        (
            "video at create",
            video_scn(),
            NewService {
                video: Some(leg(routing(None), Vec::new())),
                ..svc()
            },
            vec![],
        ),
        (
            "completed video",
            c.scn(),
            svc(),
            then(in_call(c), [at(100, Event::ForceComplete)]),
        ),
    ];
    for (label, scn, new, steps) in cases {
        let walk = run(&scn, new, &steps);
        assert_eq!(walk.record.schema, RECORD_SCHEMA_VIDEO, "{label}");
        let decoded = ServiceRecord::decode(&walk.record.encode()).unwrap();
        assert_eq!(decoded, walk.record, "{label}: round trip");
    }
}

#[test]
fn creating_a_video_service_with_a_live_room_arms_its_ttl_and_routes_by_its_routing_data() {
    let scn = video_scn();
    let with_room = |desired: Option<i64>, preferred: Option<&str>| NewService {
        desired_time: desired.map(secs),
        video: Some(leg(routing(preferred), vec![room(ROOM, 0)])),
        ..svc()
    };

    let walk = check_ignoring(
        UNCHECKED,
        "now",
        &scn,
        with_room(None, None),
        &[],
        (S::WaitForAgent, None),
        &[
            "EnteredQueue",
            "TimerArmed(ttl)",
            "TimerArmed(find_agent)",
            "TimerArmed(room_ttl)",
        ],
    );
    let rec = &walk.record;
    assert_eq!(rec.ticket, video_ticket(0, None), "routed by the leg");
    assert_eq!(rec.timers.get(&TimerKind::RoomTtl), Some(&secs(ROOM_TTL)));
    assert_eq!(rec.schema, RECORD_SCHEMA_VIDEO);
    assert!(walk.created.contains(&Effect::EnteredQueue {
        queue: "video".to_owned()
    }));

    let walk = check_ignoring(
        UNCHECKED,
        "now, preferred",
        &scn,
        with_room(None, Some(P)),
        &[],
        (S::WaitForAgent, None),
        &[
            "EnteredQueue",
            "TimerArmed(ttl)",
            "TimerArmed(find_agent)",
            "TimerArmed(room_ttl)",
            "TimerArmed(preferred_agent)",
        ],
    );
    assert_eq!(walk.record.ticket, video_ticket(0, Some(P)));
    assert_eq!(
        walk.record.timers.get(&TimerKind::PreferredAgent),
        Some(&secs(60))
    );

    let walk = check_ignoring(
        UNCHECKED,
        "scheduled",
        &scn,
        with_room(Some(3600), None),
        &[],
        (S::Scheduled, None),
        &[
            "TimerArmed(desired_time)",
            "TimerArmed(ttl)",
            "TimerArmed(room_ttl)",
        ],
    );
    assert_eq!(walk.record.ticket, video_ticket(3600, None));
    assert_eq!(
        walk.record.timers.get(&TimerKind::RoomTtl),
        Some(&secs(ROOM_TTL))
    );

    // NewService.preferred_agent wins over the leg's.
    let walk = run(
        &scn,
        NewService {
            preferred_agent: Some("agent-x".to_owned()),
            ..with_room(None, Some(P))
        },
        &[],
    );
    assert_eq!(
        walk.record.ticket.preferred_agent.as_deref(),
        Some("agent-x")
    );

    // The preferred agent takes it: the room rings, no new room is asked for.
    let walk = check_ignoring(
        UNCHECKED,
        "taken by the preferred agent",
        &scn,
        with_room(None, Some(P)),
        &[at(30, reserved(P))],
        (S::Connected, None),
        &[
            "AgentReserved",
            "WaitSample",
            "LeftQueue",
            "TimerCancelled(find_agent)",
            "TimerCancelled(preferred_agent)",
            "NotifyDevice(service.agentavailable)",
            "NotifyAgent(agent.offer)",
            "NotifyDevice(service.video)",
            "NotifyAgent(agent.video)",
        ],
    );
    assert_eq!(walk.leg().routed, Some(VideoRoute::PreferredAgent));
    assert_eq!(walk.room().ringing_at, Some(secs(30)));
    assert_eq!(walk.record.room_agent(), Some(P));

    // Its room expires before anyone takes it.
    let walk = check_ignoring(
        UNCHECKED,
        "expired before an agent",
        &scn,
        with_room(None, None),
        &[fire(TimerKind::RoomTtl)],
        (S::WaitForAgent, None),
        &["NotifyDevice(service.video)"],
    );
    assert_eq!(walk.room().end_reason, Some(RoomEnd::Expired));
    assert_eq!(walk.room().ended_at, Some(secs(ROOM_TTL)));
}

/// A room that ends (declined, left, expired, forced) tells the shell, so
/// the router may give its agent the next video at once.
#[test]
fn a_room_end_wakes_the_router_for_its_agent() {
    let c = Chat::Immediate;
    let scn = c.scn();
    let walk = run(
        &scn,
        svc(),
        &then(ringing(c), [at(50, answered(Party::Agent, false))]),
    );
    assert!(
        walk.last().iter().any(|e| matches!(
            e,
            Effect::RoomEnded { agent: Some(a) } if a == "agent-a"
        )),
        "{:?}",
        walk.last()
    );
}

/// Only the side being rung answers: the customer who asked cannot accept
/// its own call.
#[test]
fn only_the_rung_side_answers_the_ring() {
    let c = Chat::Immediate;
    let scn = c.scn();
    let rec = run(&scn, svc(), &ringing(c)).record;
    let (_, _, message) = refused(
        "caller accepts",
        &rec,
        &scn,
        &at(50, answered(Party::Client, true)),
    );
    assert!(message.contains("only the agent answers"), "{message}");
}

/// A template room made before its agent was known names nobody: when an
/// agent takes the service, the shell is asked for that agent's link
/// (`LinkAgent`), and the room rings once it is in (`AgentLinked`). A relay
/// room, whose links name nobody, rings at once.
#[test]
fn a_template_room_rings_once_the_link_names_the_agent_who_took_it() {
    let scn = video_scn();
    let with_room = |provider: &str| NewService {
        video: Some(leg(routing(None), vec![room_with(ROOM, provider, 0)])),
        ..svc()
    };
    let walk = run(&scn, with_room("template"), &[at(10, reserved(A))]);
    assert!(
        walk.last().contains(&Effect::LinkAgent),
        "{:?}",
        walk.last()
    );
    assert_eq!(
        walk.room().ringing_at,
        None,
        "not yet: the link names nobody"
    );

    let linked = |agent: &str| Event::AgentLinked {
        agent: agent.to_owned(),
        url: format!("https://meet.example/{ROOM}?jwt=for-{agent}"),
        token: format!("token-{agent}"),
    };
    let (_, event, _) = refused(
        "another agent's link",
        &walk.record,
        &scn,
        &at(11, linked("b")),
    );
    assert_eq!(event, "agent_linked");
    let walk = run(
        &scn,
        with_room("template"),
        &[at(10, reserved(A)), at(11, linked(A))],
    );
    let r = walk.room();
    assert_eq!(r.ringing_at, Some(secs(11)));
    assert_eq!(r.named_agent.as_deref(), Some(A));
    assert_eq!(
        r.agent_url,
        format!("https://meet.example/{ROOM}?jwt=for-{A}")
    );
    assert_eq!(r.agent_token, format!("token-{A}"));
    assert!(effect_kinds_ignoring(walk.last(), UNCHECKED)
        .contains(&"NotifyAgent(agent.video)".to_owned()));

    let walk = run(&scn, with_room("relay"), &[at(10, reserved(A))]);
    assert!(!walk.last().contains(&Effect::LinkAgent));
    assert_eq!(walk.room().ringing_at, Some(secs(10)));
}

// ---------------------------------------------------------------------------
// The (state, event) table with a video leg
// ---------------------------------------------------------------------------

/// The first room's agent link, made for `agent`.
fn linked(agent: &str) -> Event {
    Event::AgentLinked {
        agent: agent.to_owned(),
        url: agent_url(ROOM),
        token: format!("agent-{ROOM}"),
    }
}

/// Every event (and timer kind) in the states a video leg adds to a chat-delay
/// service, at second 300 (the first room's code is good until 640). Like the
/// tables of `transitions.rs`, a new event does not compile without its line.
#[test]
fn state_event_table_with_a_video_leg() {
    let scn = delay();
    let rec = |steps: Vec<Step>| run(&scn, svc(), &steps).record;
    let done = then(after_call(Chat::Delay), [at(150, Event::Complete)]);
    let rows = [
        ("ringing", rec(ringing(Chat::Delay))),
        ("in call", rec(in_call(Chat::Delay))),
        ("after call", rec(after_call(Chat::Delay))),
        ("requeued", rec(requeued(Chat::Delay, None))),
        ("requeued for P", rec(requeued(Chat::Delay, Some(P)))),
        ("done after call", rec(done)),
    ];
    let now = 300;
    let (ttl, cxl, ac) = (
        Done(R::FailTimeoutTtl),
        Done(R::Cancelled),
        Done(R::AgentConnected),
    );
    let (connected, tnf) = (To(S::Connected), Done(R::FailTargetNotFound));
    use TimerKind as T;
    let lines = event_table! {
        //                                                    RINGING IN_CALL AFTER REQUEUED REQ_P DONE
        Event::Created => Event::Created,                     [No,    No,    No,    No,    No,    No   ];
        Event::TimerFired { kind: T::DesiredTime, .. } => T::DesiredTime, [Stale, Stale, Stale, Stale, Stale, Stale];
        // Re-armed when the video went back to the queue.
        Event::TimerFired { kind: T::FindAgent, .. } => T::FindAgent, [Stale, Stale, Stale, tnf, tnf, Stale];
        Event::TimerFired { kind: T::UserConfirm, .. } => T::UserConfirm, [Stale, Stale, Stale, Stale, Stale, Stale];
        Event::TimerFired { kind: T::Ttl, .. } => T::Ttl,     [ttl,   ttl,   ttl,   ttl,   ttl,   Stale];
        Event::TimerFired { kind: T::Reminder, .. } => T::Reminder, [Stale, Stale, Stale, Stale, Stale, Stale];
        // A started call outlives its code.
        Event::TimerFired { kind: T::RoomTtl, .. } => T::RoomTtl, [Same, Stale, Stale, Same, Same, Stale];
        Event::TimerFired { kind: T::PreferredAgent, .. } => T::PreferredAgent, [Stale, Stale, Stale, Stale, Same, Stale];
        // Without `_agent_preview` no preview is ever offered or answered.
        Event::TimerFired { kind: T::AgentPreview, .. } => T::AgentPreview, [Stale, Stale, Stale, Stale, Stale, Stale];
        Event::AgentAccepted { .. } => Event::AgentAccepted { agent: "agent-1".into() }, [No, No, No, No, No, No];
        Event::AgentRejected { .. } => Event::AgentRejected { agent: "agent-1".into() }, [No, No, No, No, No, No];
        Event::TimerFired { kind: T::TargetTimeout, .. } => T::TargetTimeout, [Stale, Stale, Stale, Stale, Stale, Stale];
        Event::TargetSkipped { .. } => Event::TargetSkipped { step: 0 }, [No, No, No, No, No, No];
        // Only P may take the service until its timeout.
        Event::AgentReserved { .. } => reserved(B),           [No,    No,    No,    connected, No, No ];
        Event::UserConfirmed => Event::UserConfirmed,         [Same,  Same,  Same,  No,    No,    No   ];
        Event::ChatStarted { .. } => chat_started(),          [No,    No,    No,    No,    No,    No   ];
        // The chat goes on while the video waits; its agent no longer serves it.
        Event::ChatMessage { .. } => say(Party::Client, "hi"), [Same, Same,  Same,  Same,  Same,  No   ];
        Event::ChatMessage { .. } => say(Party::Agent, "hi"), [Same,  Same,  Same,  No,    No,    No   ];
        // The chat ends; the service completes only when no room is live.
        Event::ChatLeft { .. } => chat_left(Party::Client),   [Same,  Same,  ac,    Same,  Same,  No   ];
        Event::ChatLeft { .. } => chat_left(Party::Agent),    [Same,  Same,  ac,    No,    No,    No   ];
        Event::ChatTyping { .. } => typing(Party::Client),    [Same,  Same,  Same,  Same,  Same,  No   ];
        Event::ChatTyping { .. } => typing(Party::Agent),     [Same,  Same,  Same,  No,    No,    No   ];
        // Not while a room is live: force it.
        Event::Complete => Event::Complete,                   [No,    No,    ac,    No,    No,    No   ];
        Event::ForceComplete => Event::ForceComplete,         [ac,    ac,    ac,    No,    No,    No   ];
        Event::Cancel => Event::Cancel,                       [cxl,   cxl,   cxl,   cxl,   cxl,   No   ];
        Event::InternalNotification { .. } => internal_notification(),     [Same,  Same,  Same,  Same,  Same,  No   ];
        Event::AgentNotification { .. } => agent_notification(), [Same, Same, Same, Same,  Same,  No   ];
        Event::NotificationsRetrieved => Event::NotificationsRetrieved, [Same, Same, Same, Same, Same, Same];
        Event::AgentNotificationsRetrieved => Event::AgentNotificationsRetrieved, [Same, Same, Same, Same, Same, Same];
        Event::NotificationsPushed { .. } => pushed_unknown(), [Unchanged, Unchanged, Unchanged, Unchanged, Unchanged, Unchanged];
        Event::WebhooksAttempted { .. } => webhooks_unknown(), [Unchanged, Unchanged, Unchanged, Unchanged, Unchanged, Unchanged];
        Event::WebhooksRetried => Event::WebhooksRetried, [Unchanged, Unchanged, Unchanged, Unchanged, Unchanged, Unchanged];
        // The runtime delivers webhooks; the machine only hears the outcome.
        Event::TimerFired { kind: T::Webhook, .. } => T::Webhook, [No, No, No, No, No, No];
        Event::Reschedule { .. } => reschedule_to(9_000),     [No,    No,    No,    No,    No,    No   ];
        // One live room at a time; after the call, a new one.
        Event::StartVideo { .. } => video(Party::Client, true, room(ROOM2, now)), [No, No, Same, No, No, No];
        Event::StartVideo { .. } => video(Party::Agent, true, room(ROOM2, now)), [No, No, Same, No, No, No];
        Event::OpenRoom { .. } => open_room(room(ROOM2, now)), [No,   No,    Same,  No,    No,    No   ];
        Event::AgentLinked { .. } => linked(A),               [Same,  Same,  No,    No,    No,    No   ];
        Event::RoomAnswered { accept: true, .. } => answered(Party::Agent, true), [Same, No, No, No, No, No];
        Event::RoomAnswered { accept: false, .. } => answered(Party::Agent, false), [Same, No, No, No, No, No];
        // The customer may wait in the room for the agent the queue finds.
        Event::RoomJoined { .. } => joined(Party::Client),    [Same,  Same,  No,    Same,  Same,  No   ];
        Event::RoomJoined { .. } => joined(Party::Agent),     [Same,  Same,  No,    No,    No,    No   ];
        Event::RoomLeft { .. } => room_left(Party::Client),   [No,    Same,  No,    No,    No,    No   ];
        Event::RoomSignal { .. } => signal(Party::Client),    [No,    Same,  No,    No,    No,    No   ];
        // Once a call took place, even after completion.
        Event::SurveyAnswered { .. } => survey(4, 5),         [No,    No,    Same,  No,    No,    Same ];
        // Waiting for the video's agent it may move; with an agent, not.
        Event::Moved { .. } => Event::Moved { queue: Some("billing".into()), agent: None }, [No, No, No, Same, Same, No];
        // Not while the room is live; after the call it waits for another agent.
        Event::Requeued => Event::Requeued,                   [No,    No,    To(S::WaitForAgent), No, No, No];
    };
    let failures = run_table_at(now, &scn, &rows, &lines);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
