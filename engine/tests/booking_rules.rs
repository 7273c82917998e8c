//! The rules that moved out of the HTTP handlers into the engine, data-driven:
//! booking a slot (`Schedule::book`), routing data from a target
//! (`RoutingData::from_target`), a room's constructor (`Room::new`) and the
//! choice of video scenario (`Scenarios::video_for`).

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use engine::machine::{create, NewService};
use engine::record::{Party, ServiceRecord};
use engine::scenario::{Scenario, Scenarios, VideoScenarioError, DEFAULT_VIDEO_SCENARIO};
use engine::schedule::{utc_time, BookingRefused, Schedule, Tz};
use engine::video::{ProviderConfig, Room, RoomLink, RoutingData, VideoConfig, VideoLeg};

fn at(t: &str) -> DateTime<Utc> {
    t.parse()
        .unwrap_or_else(|e| panic!("`{t}` is not an instant: {e}"))
}

/// The least a scenario file says, with this media and target.
fn minimal(name: &str, media: &str, target: &str) -> String {
    format!(
        "name = \"{name}\"\n_media_type = \"{media}\"\n_wait_for_agent = true\n\
         _wait_for_user_confirm = false\n_ttl = \"2h\"\n_target = {target}\n"
    )
}

fn scenario(text: &str) -> Arc<Scenario> {
    Arc::new(
        Scenario::from_toml(Path::new("test.toml"), text)
            .unwrap_or_else(|e| panic!("scenario does not parse: {e}\n{text}")),
    )
}

// ---------------------------------------------------------------- Schedule::book

/// London, 30-minute slots 09:00-12:00 on weekdays, booked 1 h to 7 days ahead.
fn london() -> Schedule {
    let body = r#"
        timezone = "Europe/London"
        slot = "30m"
        min_notice = "1h"
        horizon = "7d"
        join_url = "{base_url}/video/{service_id}"
        [buffers]
        enter_queue = "2m"
        [hours]
        mon = ["09:00-12:00"]
        tue = ["09:00-12:00"]
        wed = ["09:00-12:00"]
        thu = ["09:00-12:00"]
        fri = ["09:00-12:00"]
        [capacity]
        default = 2
        [notifications]
        reminder = "15m"
    "#;
    let s: Schedule = toml::from_str(body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    s.validate().unwrap_or_else(|e| panic!("{e:?}\n{body}"));
    s
}

/// Booking `t` at `now` in `zone` gives the slot starting at `expected`, or the refusal.
fn check_book(now: &str, t: &str, zone: &str, expected: Result<&str, BookingRefused>) {
    let zone: Tz = zone.parse().unwrap();
    let got = london()
        .book(at(t), at(now), zone, "svc-1", "https://cb.example/")
        .map(|b| utc_time(b.slot));
    assert_eq!(got, expected.map(str::to_owned), "book {t} at {now}");
}

#[test]
fn booking_takes_the_slot_holding_the_time_within_notice_and_horizon() {
    use BookingRefused::*;
    // Monday 2026-11-23; London is on UTC in November.
    let monday = "2026-11-23T08:00:00Z";
    let cases = [
        // (now, desired time, the slot booked or the refusal)
        // A time inside a slot books that slot, from its start.
        (
            monday,
            "2026-11-23T10:00:00Z",
            Ok("2026-11-23T10:00:00.000Z"),
        ),
        (
            monday,
            "2026-11-23T10:17:00Z",
            Ok("2026-11-23T10:00:00.000Z"),
        ),
        (
            monday,
            "2026-11-23T10:29:59Z",
            Ok("2026-11-23T10:00:00.000Z"),
        ),
        (
            monday,
            "2026-11-23T11:30:00Z",
            Ok("2026-11-23T11:30:00.000Z"),
        ),
        // Closed: before opening, at closing, at night, on a Saturday.
        (monday, "2026-11-23T08:59:59Z", Err(Closed)),
        (monday, "2026-11-23T12:00:00Z", Err(Closed)),
        (monday, "2026-11-23T23:00:00Z", Err(Closed)),
        (monday, "2026-11-28T10:00:00Z", Err(Closed)),
        // The notice is 1 h: a slot starting exactly then is bookable...
        (
            monday,
            "2026-11-23T09:00:00Z",
            Ok("2026-11-23T09:00:00.000Z"),
        ),
        // ...one starting earlier is too soon, even for a time later in it.
        ("2026-11-23T08:30:00Z", "2026-11-23T09:10:00Z", Err(TooSoon)),
        (
            "2026-11-23T08:30:00Z",
            "2026-11-23T09:30:00Z",
            Ok("2026-11-23T09:30:00.000Z"),
        ),
        // A time in the past is too soon, not closed, when a slot held it.
        (monday, "2026-11-20T10:00:00Z", Err(TooSoon)),
        // The horizon is 7 days: its last start is bookable, the next slot is too far.
        (
            "2026-11-16T09:00:00Z",
            "2026-11-23T09:00:00Z",
            Ok("2026-11-23T09:00:00.000Z"),
        ),
        ("2026-11-16T09:00:00Z", "2026-11-23T09:30:00Z", Err(TooFar)),
        (monday, "2026-12-01T10:00:00Z", Err(TooFar)),
        // Closed wins over too far: no slot holds the time at all.
        (monday, "2026-12-05T10:00:00Z", Err(Closed)),
    ];
    for (now, t, expected) in cases {
        check_book(now, t, "Europe/London", expected);
    }
}

#[test]
fn a_booking_carries_the_slot_its_queue_entry_reminder_link_and_the_customers_zone() {
    let paris: Tz = "Europe/Paris".parse().unwrap();
    let b = london()
        .book(
            at("2026-11-23T10:17:00Z"),
            at("2026-11-23T08:00:00Z"),
            paris,
            "svc-1",
            "https://cb.example/",
        )
        .expect("an open slot");
    let shown = [
        utc_time(b.slot),
        utc_time(b.slot_end),
        b.seats.to_string(),
        b.sequence.to_string(),
        utc_time(b.enter_queue_at),
        b.reminder_at.map(utc_time).unwrap_or_default(),
        b.join_url.unwrap_or_default(),
        b.timezone,
    ];
    assert_eq!(
        shown,
        [
            "2026-11-23T10:00:00.000Z",
            "2026-11-23T10:30:00.000Z",
            "2",
            // A new booking is the calendar invite's first version.
            "0",
            // Two minutes early (buffers.enter_queue), a reminder 15 minutes early.
            "2026-11-23T09:58:00.000Z",
            "2026-11-23T09:45:00.000Z",
            // The base's trailing slash is not doubled.
            "https://cb.example/video/svc-1",
            "Europe/Paris",
        ]
    );
}

// ------------------------------------------------------ RoutingData::from_target

#[test]
fn routing_data_from_a_target_is_its_queue_skills_and_priority() {
    let check = |target: &str, expected: RoutingData| {
        let s = scenario(&minimal("s", "chat", target));
        assert_eq!(RoutingData::from_target(&s.target), expected, "{target}");
    };
    let routing = |queue: &str, skills: Option<&str>, priority: i32| RoutingData {
        queue: queue.into(),
        skills: skills.map(Into::into),
        priority,
        attributes: Default::default(),
        preferred_agent: None,
    };
    check(
        r#"{ queue = "video", priority = 5 }"#,
        routing("video", None, 5),
    );
    check(r#"{ queue = "support" }"#, routing("support", None, 0));
    check(
        r#"{ queue = "support", skills = "Arabic & billing", priority = -3 }"#,
        routing("support", Some("Arabic & billing"), -3),
    );
}

// ---------------------------------------------------------------- Room::new

#[test]
fn a_new_room_is_open_until_its_ttl_and_names_its_agent_only_in_a_template_link() {
    let opened = at("2026-11-23T10:00:00Z");
    let link = |side: &str| RoomLink {
        url: format!("https://meet.example/ROOM?{side}"),
        token: format!("{side}-token"),
    };
    let relay = VideoConfig::default();
    let template = VideoConfig {
        provider: ProviderConfig::Template {
            url: "https://meet.example/{room}".into(),
            jwt: None,
        },
        room_ttl: std::time::Duration::from_secs(600),
        ..VideoConfig::default()
    };
    // (config, agent the link was made for, provider, expiry, named agent)
    let cases = [
        (
            &relay,
            Some("pat"),
            "relay",
            "2026-11-23T11:00:00.000Z",
            None,
        ),
        (&relay, None, "relay", "2026-11-23T11:00:00.000Z", None),
        (
            &template,
            Some("pat"),
            "template",
            "2026-11-23T10:10:00.000Z",
            Some("pat"),
        ),
        (
            &template,
            None,
            "template",
            "2026-11-23T10:10:00.000Z",
            None,
        ),
    ];
    for (config, agent, provider, expires, named) in cases {
        let room = Room::new(
            config,
            "ACDEFGH".into(),
            opened,
            link("c"),
            link("a"),
            agent,
        );
        let case = format!("{provider} room for {agent:?}");
        assert_eq!(room.provider, provider, "{case}");
        assert_eq!(utc_time(room.expires_at), expires, "{case}");
        assert_eq!(room.named_agent.as_deref(), named, "{case}");
        assert_eq!(
            (room.code.as_str(), room.opened_at, room.status()),
            ("ACDEFGH", opened, "open"),
            "{case}"
        );
        assert_eq!(room.party_of("c-token"), Some(Party::Client), "{case}");
        assert_eq!(room.party_of("a-token"), Some(Party::Agent), "{case}");
        assert_eq!(room.url_for(Party::Agent), "https://meet.example/ROOM?a");
        assert!(room.participants.is_empty() && room.is_live(), "{case}");
    }
}

// ------------------------------------------------------- Scenarios::video_for

fn loaded(names: &[(&str, &str)]) -> Scenarios {
    Scenarios::new(names.iter().map(|(name, media)| {
        Arc::unwrap_or_clone(scenario(&minimal(name, media, r#"{ queue = "q" }"#)))
    }))
}

/// A service of `scenario`, with a video leg of `leg` if given.
fn service(scenarios: &Scenarios, scenario: &str, leg: Option<&str>) -> ServiceRecord {
    let now = at("2026-11-23T10:00:00Z");
    let own = scenarios.get(scenario).expect("loaded").clone();
    let video = leg.map(|leg| VideoLeg {
        requested_at: now,
        requested_by: Party::Client,
        scenario: leg.into(),
        routing: RoutingData::from_target(&own.target),
        conversation_id: None,
        agent: None,
        routed: None,
        connected_at: None,
        rooms: Vec::new(),
        survey: None,
    });
    let new = NewService {
        id: "svc-1".into(),
        customer_number: "555".into(),
        desired_time: None,
        device_notification_id: None,
        device_os: None,
        user_data: Default::default(),
        booking: None,
        preferred_agent: None,
        video,
    };
    create(new, &own, now).record
}

/// (scenarios, named, the service's scenario and its leg's, expected).
type Case<'a> = (
    &'a Scenarios,
    Option<&'a str>,
    Option<(&'a str, Option<&'a str>)>,
    Result<&'a str, VideoScenarioError>,
);

#[test]
fn the_video_scenario_is_the_named_one_else_the_legs_else_the_services_else_the_default() {
    use VideoScenarioError::*;
    let all = loaded(&[
        (DEFAULT_VIDEO_SCENARIO, "video"),
        ("video-short", "video"),
        ("video-other", "video"),
        ("chat", "chat"),
    ]);
    let no_default = loaded(&[("video-short", "video"), ("chat", "chat")]);
    let cases: [Case; 11] = [
        // Named: that one, trimmed, whatever the service.
        (&all, Some("video-short"), None, Ok("video-short")),
        (
            &all,
            Some(" video-short "),
            Some(("chat", None)),
            Ok("video-short"),
        ),
        (
            &all,
            Some("video-short"),
            Some(("video-other", Some("video-other"))),
            Ok("video-short"),
        ),
        (&all, Some("nope"), None, Err(Unknown("nope".into()))),
        (&all, Some("chat"), None, Err(NotVideo("chat".into()))),
        // Blank is not named.
        (&all, Some("  "), None, Ok(DEFAULT_VIDEO_SCENARIO)),
        // The leg's, else the service's own video scenario, else the default.
        (
            &all,
            None,
            Some(("video-other", Some("video-short"))),
            Ok("video-short"),
        ),
        (&all, None, Some(("video-other", None)), Ok("video-other")),
        (&all, None, Some(("chat", None)), Ok(DEFAULT_VIDEO_SCENARIO)),
        (&no_default, None, Some(("chat", None)), Err(NoDefault)),
        (
            &no_default,
            None,
            Some(("video-short", None)),
            Ok("video-short"),
        ),
    ];
    for (scenarios, named, record, expected) in cases {
        let record = record.map(|(own, leg)| service(scenarios, own, leg));
        let got = scenarios
            .video_for(named, record.as_ref())
            .map(|s| s.name.clone());
        assert_eq!(got, expected.map(str::to_owned), "{named:?} for {record:?}");
    }
    // The errors read as the request field's problem.
    assert_eq!(
        NoDefault.to_string(),
        "is required: no `video-immediate` scenario is loaded to make rooms"
    );
}

// ------------------------------------------- a reschedule's zone and link

#[test]
fn a_moved_booking_keeps_its_link_and_zone_unless_another_zone_is_asked_for() {
    let s = london();
    let paris: Tz = "Europe/Paris".parse().unwrap();
    let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
    let now = at("2026-11-23T08:00:00Z");
    let old = s
        .book(
            at("2026-11-23T10:00:00Z"),
            now,
            paris,
            "svc-1",
            "https://old.example",
        )
        .unwrap();
    // (zone asked for, the old booking, zone shown)
    let cases = [
        (None, None, "Europe/London"),
        (None, Some(&old), "Europe/Paris"),
        (Some(tokyo), Some(&old), "Asia/Tokyo"),
        (Some(tokyo), None, "Asia/Tokyo"),
    ];
    for (asked, booked, expected) in cases {
        assert_eq!(s.zone_for(asked, booked).name(), expected, "{asked:?}");
    }
    let new = s
        .book(
            at("2026-11-23T11:00:00Z"),
            now,
            paris,
            "svc-1",
            "https://new.example",
        )
        .unwrap();
    let link = |b: &engine::record::Booking| b.join_url.clone().unwrap_or_default();
    assert_eq!(
        link(&new.clone().moved_from(Some(&old))),
        "https://old.example/video/svc-1"
    );
    assert_eq!(
        link(&new.clone().moved_from(None)),
        "https://new.example/video/svc-1"
    );
    // The manage link's secret stays the first booking's, so the link in
    // the first e-mail still works; a new booking keeps its own.
    let first = engine::record::Booking {
        manage_token: Some("first".into()),
        ..old.clone()
    };
    let fresh = engine::record::Booking {
        manage_token: Some("fresh".into()),
        ..new.clone()
    };
    assert_eq!(
        fresh
            .clone()
            .moved_from(Some(&first))
            .manage_token
            .as_deref(),
        Some("first")
    );
    assert_eq!(
        fresh.moved_from(None).manage_token.as_deref(),
        Some("fresh")
    );
    let moved = new.moved_from(Some(&old));
    assert_eq!(
        utc_time(moved.slot),
        "2026-11-23T11:00:00.000Z",
        "the new slot"
    );
}

// ------------------------------------------------- the agent-ready threshold

#[test]
fn the_agent_ready_threshold_passes_within_its_eta_and_position() {
    let s = scenario(&format!(
        "{}_agent_ready_threshold = {{ eta = 60, position = 3 }}\n",
        minimal("s", "chat", r#"{ queue = "q" }"#)
    ));
    let cases = [
        // (position, eta, passed, reason)
        (1, None, true, "eta n/a"),
        (9, None, true, "eta n/a"),
        (3, Some(60), true, "eta <= 60 and position <= 3"),
        (3, Some(61), false, "eta > 60"),
        (4, Some(60), false, "position > 3"),
        (4, Some(61), false, "eta > 60 and position > 3"),
    ];
    for (position, eta, passed, reason) in cases {
        let got = s.agent_ready_threshold.check(position, eta);
        assert_eq!(got, (passed, reason.to_owned()), "{position} {eta:?}");
    }
}
