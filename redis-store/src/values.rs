//! What the keys hold: the stored record, the index entry a write derives
//! from it, and the queue and timer members.
//!
//! These are formats on disk: a node must read what an older node wrote
//! (members with a device or without, plain-JSON values), and the scripts build the
//! same members from the index entry (`queue_member`, `timer_member` in
//! `scripts.rs`). So the Rust side of each format lives here, next to the
//! tests that keep it compatible.

use chrono::{DateTime, TimeZone, Utc};
use engine::record::{ServiceRecord, TimerKind};
use engine::store::{DueTimer, QueueEntry};
use serde::Serialize;

use crate::keys::state_name;

/// What a write derives from a record: its index entry (see `scripts`).
/// Kept short: it is stored for every service. Two MessagePack maps, one
/// after the other: this one holds what a read of a waiting service's
/// place needs (`standing`, `position`, `device_positions` decode only it,
/// half the work of the whole entry), [`ColdEntry`] the rest, which only
/// writes read. An entry written before is one map with every field.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IndexEntry<'a> {
    /// State and scenario (with the customer, in the second map: the
    /// three indexes).
    s: &'static str,
    n: &'a str,
    /// While queued: the queue, the member's order prefix, the skills, the
    /// preferred agent and 1 for a video leg (the member is
    /// `<prefix><id>\x1f<skills>\x1f`, then `\x1f<preferred agent>\x1f1`
    /// or `\x1f<preferred agent>\x1f` when either of those two is set; see
    /// [`queue_member`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    q: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    k: Option<&'a str>,
    /// While queued, the device (`_device_notification_id`), for the index
    /// of waiting services by device (`qdev`). Not in the member: an entry
    /// written when members carried the device has it as `v` instead, and
    /// its member is `<prefix><id>\x1f<skills>\x1f<device>`, so the scripts
    /// build that member from `v` (and an entry here has no `v`).
    #[serde(skip_serializing_if = "Option::is_none")]
    w: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pa: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vd: Option<u8>,
    /// Agents who declined its preview, joined by \x1e: a sixth field
    /// after the video flag, only when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    dc: Option<String>,
    /// The URS route as the router needs it (JSON of
    /// [`engine::routing::target::ActiveRoute`]): a seventh field after the
    /// declined agents (empty when none), only when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    rt: Option<String>,
    /// Storage deadline, ms (a number; text in entries written before).
    d: i64,
}

/// The index entry's second map: what only writes (and the purge and the
/// timer claim) read.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ColdEntry<'a> {
    /// Customer number: the customer index.
    c: &'a str,
    /// Timers: [kind code, due ms]; the member is `<id>|<code>`, scored by
    /// the due time, or by a claim's lease end (the claim reads the due
    /// time here). An entry written before has `t` instead, with the due
    /// time as text, and members `<id>|<code>|<due ms>`: 16 bytes more per
    /// timer, and a jemalloc size class up.
    ts: Vec<(usize, i64)>,
    /// The agent whose load this service counts in.
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<&'a str>,
    /// The seat held in the scenario's slot starting at this ms, and the
    /// slot's seats when booked (the limit the write is checked against).
    #[serde(skip_serializing_if = "Option::is_none")]
    b: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bc: Option<u32>,
    /// The room code held in `rooms` (the latest room's, while stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    r: Option<&'a str>,
    /// The agent held in `roomagents` (the leg's agent while its room is
    /// live and the service not completed).
    #[serde(skip_serializing_if = "Option::is_none")]
    ra: Option<&'a str>,
    /// While active: the lengths of the device's and the agent's outboxes
    /// (when not empty), summed into `outboxes` for `/metrics`.
    #[serde(skip_serializing_if = "Option::is_none")]
    od: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oa: Option<usize>,
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Codes are stored in timer members: append new kinds, never reorder.
/// A kind's code is its index here.
const TIMER_KINDS: [TimerKind; 10] = [
    TimerKind::DesiredTime,
    TimerKind::UserConfirm,
    TimerKind::FindAgent,
    TimerKind::Ttl,
    TimerKind::Reminder,
    TimerKind::RoomTtl,
    TimerKind::PreferredAgent,
    TimerKind::Webhook,
    TimerKind::AgentPreview,
    TimerKind::TargetTimeout,
];

/// The kind's code: its index in [`TIMER_KINDS`]. An exhaustive match, so a
/// new kind cannot be stored under another's code by mistake.
fn timer_code(kind: TimerKind) -> usize {
    match kind {
        TimerKind::DesiredTime => 0,
        TimerKind::UserConfirm => 1,
        TimerKind::FindAgent => 2,
        TimerKind::Ttl => 3,
        TimerKind::Reminder => 4,
        TimerKind::RoomTtl => 5,
        TimerKind::PreferredAgent => 6,
        TimerKind::Webhook => 7,
        TimerKind::AgentPreview => 8,
        TimerKind::TargetTimeout => 9,
    }
}

/// A timer as the claim script answers it: the service, the kind's code
/// and the due time (the script reads it from the index entry, or from a
/// member written when members carried it). `None` for a code this build
/// does not know.
pub(crate) fn due_timer((id, code, due): (String, usize, i64)) -> Option<DueTimer> {
    Some(DueTimer {
        id,
        kind: *TIMER_KINDS.get(code)?,
        due: from_ms(due),
    })
}

/// A queue member sorts as the queue must be served: priority (highest
/// first), then the place in the queue (`since`), then the id. All members
/// have score 0, so ZRANGE gives this lexicographic order. (The scripts
/// build it from the index entry's prefix, id, skills, device, preferred
/// agent and video flag.)
///
/// `<prefix><id>\x1f<skills>\x1f`, and only when the entry has a
/// preferred agent or a video leg, `\x1f<preferred agent>\x1f<1 or empty>`:
/// members without either are exactly what was written before these
/// existed, so an old member is found and removed by the same recipe. The
/// field after the skills held the device until the index of waiting
/// services by device (`qdev`) made it redundant (64 bytes of a 130-byte
/// member); it is empty now, and read past in members that have it.
#[cfg(test)]
fn queue_member(entry: &QueueEntry) -> String {
    let declined = (!entry.declined.is_empty()).then(|| entry.declined.join("\u{1e}"));
    let route = entry.route.as_ref().map(route_field);
    member(MemberFields {
        prefix: &queue_prefix(entry),
        id: &entry.id,
        skills: entry.skills.as_deref().unwrap_or(""),
        preferred_agent: entry.preferred_agent.as_deref(),
        video: entry.video,
        declined: declined.as_deref(),
        route: route.as_deref(),
    })
}

/// What a queue member is made of, each field as it is written.
struct MemberFields<'a> {
    prefix: &'a str,
    id: &'a str,
    skills: &'a str,
    preferred_agent: Option<&'a str>,
    video: bool,
    /// Joined by \x1e.
    declined: Option<&'a str>,
    /// `route_field`'s JSON.
    route: Option<&'a str>,
}

/// A queue member, as `queue_member` describes it: the one recipe, which
/// the scripts' `queue_member` mirrors.
fn member(f: MemberFields<'_>) -> String {
    let mut m = String::with_capacity(f.prefix.len() + f.id.len() + f.skills.len() + 8);
    m.push_str(f.prefix);
    m.push_str(f.id);
    m.push('\u{1f}');
    m.push_str(f.skills);
    m.push('\u{1f}');
    if f.preferred_agent.is_some() || f.video || f.declined.is_some() || f.route.is_some() {
        m.push('\u{1f}');
        m.push_str(f.preferred_agent.unwrap_or(""));
        m.push('\u{1f}');
        if f.video {
            m.push('1');
        }
    }
    if f.declined.is_some() || f.route.is_some() {
        m.push('\u{1f}');
        m.push_str(f.declined.unwrap_or(""));
    }
    if let Some(route) = f.route {
        m.push('\u{1f}');
        m.push_str(route);
    }
    m
}

/// A route in a member: JSON, whose escaping keeps the separators out.
fn route_field(route: &engine::routing::target::ActiveRoute) -> String {
    serde_json::to_string(route).expect("a route always serialises")
}

/// The fixed-width order part of a queue member: 10 + 15 digits.
fn queue_prefix(entry: &QueueEntry) -> String {
    let priority = (i32::MAX as i64 - entry.priority as i64) as u64; // 0 ..= 2^32-1
    let since = ms(entry.since).max(0) as u64;
    format!("{priority:010}{since:015}")
}

pub(crate) fn parse_queue_member(member: &str) -> Option<QueueEntry> {
    let priority: i64 = member.get(0..10)?.parse().ok()?;
    let since: i64 = member.get(10..25)?.parse().ok()?;
    let (id, rest) = member.get(25..)?.split_once('\u{1f}')?;
    // Fields a member written before they existed does not have are empty:
    // no preferred agent, no video. The device, which members written
    // before `qdev` carry, is not read.
    let mut fields = rest.split('\u{1f}');
    let mut field = || fields.next().filter(|f| !f.is_empty()).map(str::to_owned);
    let (skills, _device, preferred_agent) = (field(), field(), field());
    let video = field().as_deref() == Some("1");
    let declined = field()
        .map(|d| d.split('\u{1e}').map(str::to_owned).collect())
        .unwrap_or_default();
    // A route that no longer parses (a skill expression this build refuses)
    // routes to nobody rather than to the whole queue.
    let route = field().map(|text| {
        serde_json::from_str(&text).unwrap_or(engine::routing::target::ActiveRoute {
            step: 0,
            any: Vec::new(),
            skip_if: None,
        })
    });
    Some(QueueEntry {
        id: id.to_owned(),
        priority: (i32::MAX as i64 - priority) as i32,
        since: from_ms(since),
        skills,
        preferred_agent,
        video,
        declined,
        route,
    })
}

/// An index entry as the scripts are given it: [`IndexEntry`] then
/// [`ColdEntry`], each a MessagePack map.
///
/// Written field by field with `rmp`'s writers, the bytes `rmp_serde`'s
/// `to_vec_named` writes for the two structs (the test
/// `the_index_entry_is_written_as_rmp_serde_writes_it`), in a third of the
/// instructions: 4,100 an entry through serde, most of it its generic
/// struct machinery, for about 100 bytes.
pub(crate) fn encode_index_entry(
    hot: &IndexEntry<'_>,
    cold: &ColdEntry<'_>,
) -> Result<Vec<u8>, rmp::encode::ValueWriteError> {
    let mut out = Vec::with_capacity(160);
    let mut map = Map::open(&mut out);
    map.text("s", Some(hot.s))?;
    map.text("n", Some(hot.n))?;
    map.text("q", hot.q)?;
    map.text("p", hot.p.as_deref())?;
    map.text("k", hot.k)?;
    map.text("w", hot.w)?;
    map.text("pa", hot.pa)?;
    map.uint("vd", hot.vd.map(u64::from))?;
    map.text("dc", hot.dc.as_deref())?;
    map.text("rt", hot.rt.as_deref())?;
    map.key("d");
    rmp::encode::write_sint(map.out, hot.d)?;
    map.close();

    let mut map = Map::open(&mut out);
    map.text("c", Some(cold.c))?;
    map.key("ts");
    rmp::encode::write_array_len(map.out, cold.ts.len() as u32)?;
    for &(code, due) in &cold.ts {
        rmp::encode::write_array_len(map.out, 2)?;
        rmp::encode::write_uint(map.out, code as u64)?;
        rmp::encode::write_sint(map.out, due)?;
    }
    map.text("a", cold.a)?;
    map.text("b", cold.b.as_deref())?;
    map.uint("bc", cold.bc.map(u64::from))?;
    map.text("r", cold.r)?;
    map.text("ra", cold.ra)?;
    map.uint("od", cold.od.map(|n| n as u64))?;
    map.uint("oa", cold.oa.map(|n| n as u64))?;
    map.close();
    Ok(out)
}

/// One MessagePack map of an index entry, written as serde's derive
/// writes a struct whose absent options are skipped: its fields in order,
/// each a string key then its value, and in front the count of those
/// written (a fixmap: an entry's maps have fewer than 16 fields).
struct Map<'a> {
    out: &'a mut Vec<u8>,
    head: usize,
    fields: u8,
}

impl<'a> Map<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        let head = out.len();
        out.push(0x80);
        Map {
            out,
            head,
            fields: 0,
        }
    }

    /// A key, all of them shorter than 32 bytes: a fixstr, its length in
    /// its marker (what `write_str` writes, without its generic writer).
    fn key(&mut self, key: &str) {
        debug_assert!(key.len() < 32 && self.fields < 15);
        self.fields += 1;
        self.out.push(0xa0 | key.len() as u8);
        self.out.extend_from_slice(key.as_bytes());
    }

    fn text(&mut self, key: &str, value: Option<&str>) -> Result<(), rmp::encode::ValueWriteError> {
        if let Some(value) = value {
            self.key(key);
            rmp::encode::write_str(self.out, value)?;
        }
        Ok(())
    }

    fn uint(&mut self, key: &str, value: Option<u64>) -> Result<(), rmp::encode::ValueWriteError> {
        if let Some(value) = value {
            self.key(key);
            rmp::encode::write_uint(self.out, value)?;
        }
        Ok(())
    }

    fn close(self) {
        self.out[self.head] = 0x80 | self.fields;
    }
}

/// What the put script would derive from a new service's index entry, made
/// here for the create script (`scripts::CREATE`), which writes it as
/// given. Every rule mirrors the put script's (the test
/// `a_create_writes_what_a_put_writes` compares what the two leave in
/// Redis, for a record of every shipped scenario in every state).
pub(crate) struct Derived<'a> {
    pub customer: &'a str,
    /// The waiting device, or "".
    pub device: &'a str,
    pub scenario: &'a str,
    pub state: &'static str,
    /// The queue, or "" when the service does not wait.
    pub queue: &'a str,
    /// The queue member (`queue_member` in the scripts), or "".
    pub member: String,
    /// The storage deadline, for 'deadlines', when the purge does not find
    /// the service by a timer (`found_by_timer`).
    pub deadline: Option<i64>,
    /// The member of the timer that wakes the other nodes' timer loops if it
    /// is then the earliest stored: the earliest due within
    /// [`engine::store::WAKE_HORIZON`] of `now` (ties go by member, as in
    /// the sorted set), or "".
    pub wake: String,
    /// Each timer's (due ms, member `<id>|<code>`).
    pub timers: Vec<(i64, String)>,
}

/// [`Derived`] for a new service's entry, or None when the create script
/// does not handle it: it holds an agent, a seat, a room code, a room's
/// agent or an outbox message, whose checks and counts only the put
/// script makes.
pub(crate) fn derived<'a>(
    id: &str,
    hot: &IndexEntry<'a>,
    cold: &ColdEntry<'a>,
    now_ms: i64,
) -> Option<Derived<'a>> {
    if cold.a.is_some()
        || cold.b.is_some()
        || cold.r.is_some()
        || cold.ra.is_some()
        || cold.od.is_some()
        || cold.oa.is_some()
    {
        return None;
    }
    let queued = hot.q.is_some();
    // Built by hand: `format!` costs several times as much, per create.
    let timers: Vec<(i64, String)> = cold
        .ts
        .iter()
        .map(|(code, due)| {
            let mut member = String::with_capacity(id.len() + 3);
            member.push_str(id);
            member.push('|');
            member.push_str(itoa::Buffer::new().format(*code));
            (*due, member)
        })
        .collect();
    let grace = engine::record::COMPLETED_GRACE.num_milliseconds();
    let found_by_timer = timers.iter().any(|(due, _)| due + grace <= hot.d);
    let horizon = now_ms + engine::store::WAKE_HORIZON.as_millis() as i64;
    let wake = timers
        .iter()
        .filter(|(due, _)| *due < horizon)
        .min()
        .map(|(_, member)| member.clone())
        .unwrap_or_default();
    Some(Derived {
        customer: cold.c,
        device: hot.w.filter(|_| queued).unwrap_or(""),
        scenario: hot.n,
        state: hot.s,
        queue: hot.q.unwrap_or(""),
        member: if queued {
            member_of(id, hot)
        } else {
            String::new()
        },
        deadline: (!found_by_timer).then_some(hot.d),
        wake,
        timers,
    })
}

/// A queue member as the scripts' `queue_member` builds it from an entry
/// written now (one without `v`).
fn member_of(id: &str, hot: &IndexEntry<'_>) -> String {
    member(MemberFields {
        prefix: hot.p.as_deref().unwrap_or(""),
        id,
        skills: hot.k.unwrap_or(""),
        preferred_agent: hot.pa,
        video: hot.vd.is_some(),
        declined: hot.dc.as_deref(),
        route: hot.rt.as_deref(),
    })
}

pub(crate) fn index_entry(rec: &ServiceRecord) -> (IndexEntry<'_>, ColdEntry<'_>) {
    let queued = rec.is_queued();
    let active = rec.state != engine::record::ServiceState::Completed;
    let hot = IndexEntry {
        s: state_name(rec.state),
        n: &rec.scenario,
        q: queued.then_some(rec.ticket.queue.as_str()),
        p: queued.then(|| queue_prefix(&QueueEntry::of(rec))),
        k: rec
            .ticket
            .skills
            .as_deref()
            .filter(|s| queued && !s.is_empty()),
        w: rec
            .device_notification_id
            .as_deref()
            .filter(|d| queued && !d.is_empty()),
        pa: rec
            .ticket
            .preferred_agent
            .as_deref()
            .filter(|a| queued && !a.is_empty()),
        vd: (queued && rec.video.is_some()).then_some(1),
        dc: (queued && !rec.ticket.declined.is_empty()).then(|| rec.ticket.declined.join("\u{1e}")),
        rt: rec
            .ticket
            .route
            .as_ref()
            .filter(|_| queued)
            .map(|r| route_field(&r.active())),
        d: ms(rec.storage_deadline()),
    };
    let cold = ColdEntry {
        c: &rec.customer_number,
        ts: rec
            .timers
            .iter()
            .map(|(kind, due)| (timer_code(*kind), ms(*due)))
            .collect(),
        a: rec.agent.as_deref(),
        b: rec.seat().map(|(_, slot, _)| ms(slot).to_string()),
        bc: rec.seat().map(|(_, _, seats)| seats),
        r: rec.room_code(),
        ra: rec.room_agent(),
        od: Some(rec.outbox.len()).filter(|n| *n > 0 && active),
        oa: Some(rec.agent_outbox.len()).filter(|n| *n > 0 && active),
    };
    (hot, cold)
}

/// The due times (ms) of a record's timers, in the order its index entry
/// lists them (`ColdEntry::ts`): the put script is given them as text.
pub(crate) fn timer_dues(rec: &ServiceRecord) -> impl Iterator<Item = i64> + '_ {
    rec.timers.iter().map(|(_, due)| ms(*due))
}

/// What records were compressed against before [`RECORD_DICTIONARY`] (the
/// `s` values): a record's usual keys and values (a preset dictionary),
/// so a small record does not spend its bytes spelling out
/// `"expiration_time":` once. Deflated values (`y`) used it too.
///
/// A format on disk: values written with it say so, and this text must
/// never change.
const DICTIONARY: &[u8] = include_bytes!("record_dictionary.json");

/// What records were compressed against before [`TRAINED_DICTIONARY`] (the
/// `t` values): the same text as [`DICTIONARY`], with zstd's entropy tables
/// for records in front of it (`ZDICT_finalizeDictionary` over sample
/// records of every shipped scenario, with the id `RECORD_DICTIONARY_ID`). With
/// the tables in the dictionary a frame need not carry its own, nor the
/// compressor build them for each record: a waiting service's 910 bytes of
/// JSON became 178 instead of 209, compressed in 1.2 µs instead of 3.2 and
/// read back in 0.4 µs instead of 1.3.
///
/// A format on disk as well: never changed.
const RECORD_DICTIONARY: &[u8] = include_bytes!("record_dictionary.zdict");

/// What records are compressed against now (the `u` values): 16 KiB that
/// zstd chose itself (`ZDICT_trainFromBuffer`) from sample records of every
/// shipped scenario in every state a flow goes through: the test
/// `the_record_dictionary_fits_sample_records` checks it against them, and
/// with `CALLBACKD_MAKE_RECORD_DICTIONARY=1` writes it again, byte for
/// byte the same. Trained on half the samples and tried on the other half,
/// a record took 118 bytes on average instead of 179 against
/// [`RECORD_DICTIONARY`], and 36,600 instructions to serialise and
/// compress instead of 45,300: longer matches, fewer sequences to encode.
///
/// A format on disk as well: never changed; a better one would be a new
/// marker.
const TRAINED_DICTIONARY: &[u8] = include_bytes!("record_dictionary_trained.zdict");

/// The size of [`TRAINED_DICTIONARY`] asked of zstd when it was made.
#[cfg(test)]
const TRAINED_DICTIONARY_SIZE: usize = 16 * 1024;

/// The id written into `record_dictionary.zdict` (not into the frames:
/// the marker says which dictionary a value needs). Outside zstd's
/// reserved ranges.
#[cfg(test)]
const RECORD_DICTIONARY_ID: u32 = 0x1cbd_0001;

/// zstd's level for records (level 4 gains a few bytes for a third more
/// CPU).
const ZSTD_LEVEL: i32 = 3;

/// Largest record a value may inflate to; a value that says more is refused
/// rather than allocated.
const MAX_RECORD: u64 = 16 << 20;

/// The dictionaries, digested once for each direction.
static ENCODER_DICTIONARY: std::sync::LazyLock<zstd::dict::EncoderDictionary<'static>> =
    std::sync::LazyLock::new(|| {
        zstd::dict::EncoderDictionary::copy(TRAINED_DICTIONARY, ZSTD_LEVEL)
    });
static DECODER_DICTIONARY: std::sync::LazyLock<zstd::dict::DecoderDictionary<'static>> =
    std::sync::LazyLock::new(|| zstd::dict::DecoderDictionary::copy(TRAINED_DICTIONARY));
static RECORD_DECODER_DICTIONARY: std::sync::LazyLock<zstd::dict::DecoderDictionary<'static>> =
    std::sync::LazyLock::new(|| zstd::dict::DecoderDictionary::copy(RECORD_DICTIONARY));
static OLD_DECODER_DICTIONARY: std::sync::LazyLock<zstd::dict::DecoderDictionary<'static>> =
    std::sync::LazyLock::new(|| zstd::dict::DecoderDictionary::copy(DICTIONARY));

/// A compressor for records: against [`TRAINED_DICTIONARY`], and without
/// the dictionary's id in each frame (4 bytes a record; the marker says
/// which dictionary).
fn record_compressor() -> Option<zstd::bulk::Compressor<'static>> {
    let mut z = zstd::bulk::Compressor::with_prepared_dictionary(&ENCODER_DICTIONARY).ok()?;
    z.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))
        .ok()?;
    Some(z)
}

thread_local! {
    // A zstd context is made once per thread and refers to the digested
    // dictionary: a record is compressed without first zeroing tables or
    // hashing the dictionary again, as deflate must (about 250 KB zeroed and
    // the dictionary hashed on every write: 22 µs a record against zstd's 8).
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        std::cell::RefCell::new(record_compressor());
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::with_prepared_dictionary(&DECODER_DICTIONARY).ok());
    // Only values written before TRAINED_DICTIONARY (`t`) need this one.
    static RECORD_DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::with_prepared_dictionary(&RECORD_DECODER_DICTIONARY).ok());
    // Only values written before RECORD_DICTIONARY (`s`) need this one.
    static OLD_DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::with_prepared_dictionary(&OLD_DECODER_DICTIONARY).ok());
    // Only values written before zstd (`y`, `z`) are inflated.
    static INFLATE: std::cell::RefCell<flate2::Decompress> =
        std::cell::RefCell::new(flate2::Decompress::new(false));
}

/// The stored value: `<version>:` then `u` and the record's JSON as a zstd
/// frame compressed against [`TRAINED_DICTIONARY`] (a waiting service must
/// stay small in Redis). Values written before it read too: `t` (zstd
/// against [`RECORD_DICTIONARY`]), `s` (zstd against [`DICTIONARY`]), `y`
/// (deflate against it), `z` (plain deflate) and plain JSON.
pub(crate) fn encode_value(record: &ServiceRecord) -> Vec<u8> {
    let json = record.encode();
    let compressed = COMPRESSOR.with_borrow_mut(|z| z.as_mut()?.compress(&json).ok());
    let mut out = format!("{}:", record.version).into_bytes();
    match compressed {
        Some(frame) => {
            out.reserve(frame.len() + 1);
            out.push(b'u');
            out.extend_from_slice(&frame);
        }
        // Never seen; the plain JSON is a valid value too.
        None => out.extend_from_slice(&json),
    }
    out
}

/// The JSON in a zstd frame, with the thread's decompressor for its
/// dictionary.
fn unzstd(
    frame: &[u8],
    decompressor: &'static std::thread::LocalKey<
        std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>>,
    >,
) -> Result<Vec<u8>, String> {
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= MAX_RECORD => size,
        Ok(Some(size)) => return Err(format!("zstd: a record of {size} bytes")),
        Ok(None) | Err(_) => return Err("zstd: no frame size".to_owned()),
    };
    decompressor.with_borrow_mut(|z| {
        let z = z.as_mut().ok_or("zstd: no context")?;
        z.decompress(frame, size as usize)
            .map_err(|e| format!("zstd: {e}"))
    })
}

/// Inflates `deflated`, against [`DICTIONARY`] when `dictionary`.
fn inflate(deflated: &[u8], dictionary: bool) -> Result<Vec<u8>, String> {
    INFLATE.with_borrow_mut(|z| {
        z.reset(false);
        if dictionary {
            z.set_dictionary(DICTIONARY)
                .map_err(|e| format!("inflate: {e}"))?;
        }
        let mut json = Vec::with_capacity(deflated.len() * 5 + 256);
        loop {
            let rest = &deflated[z.total_in() as usize..];
            let before = (z.total_in(), z.total_out());
            match z.decompress_vec(rest, &mut json, flate2::FlushDecompress::Finish) {
                Ok(flate2::Status::StreamEnd) => return Ok(json),
                Ok(_) if json.len() == json.capacity() => json.reserve(json.capacity() + 256),
                Ok(_) if (z.total_in(), z.total_out()) != before => {}
                Ok(_) => return Err("inflate: the stream ends early".to_owned()),
                Err(e) => return Err(format!("inflate: {e}")),
            }
        }
    })
}

pub(crate) fn decode_value(raw: &[u8]) -> Result<ServiceRecord, String> {
    let colon = raw
        .iter()
        .position(|b| *b == b':')
        .ok_or("no version prefix")?;
    match &raw[colon + 1..] {
        [b'u', frame @ ..] => ServiceRecord::decode(&unzstd(frame, &DECOMPRESSOR)?),
        [b't', frame @ ..] => ServiceRecord::decode(&unzstd(frame, &RECORD_DECOMPRESSOR)?),
        [b's', frame @ ..] => ServiceRecord::decode(&unzstd(frame, &OLD_DECOMPRESSOR)?),
        [b'y', deflated @ ..] => ServiceRecord::decode(&inflate(deflated, true)?),
        [b'z', deflated @ ..] => ServiceRecord::decode(&inflate(deflated, false)?),
        json => ServiceRecord::decode(json),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn queue_members_sort_like_the_queue() {
        let at = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
        let entry = |id: &str, priority, since, skills: Option<&str>| QueueEntry {
            id: id.into(),
            priority,
            since: at(since),
            skills: skills.map(Into::into),
            preferred_agent: None,
            video: false,
            declined: Vec::new(),
            route: None,
        };
        let preferring = |e: QueueEntry, agent: &str| QueueEntry {
            preferred_agent: Some(agent.into()),
            ..e
        };
        let video = |e: QueueEntry| QueueEntry { video: true, ..e };
        let entries = [
            video(preferring(entry("vip", 5, 30, None), "ag-1")),
            entry("old", 0, 0, Some("lang:en >= 3")),
            video(entry("a", 0, 10, None)),
            preferring(entry("ab", 0, 10, Some("x")), "ag-2"),
            entry("new", 0, 10, None),
            entry("low", -3, 0, None),
            video(entry("min", i32::MIN, 0, None)),
        ];
        let mut members: Vec<String> = entries.iter().map(queue_member).collect();
        members.reverse();
        members.sort();
        let back: Vec<QueueEntry> = members
            .iter()
            .map(|m| parse_queue_member(m).unwrap())
            .collect();
        assert_eq!(back, entries);
        let max = entry("max", i32::MAX, 0, None);
        assert_eq!(parse_queue_member(&queue_member(&max)), Some(max));
    }

    #[test]
    fn queue_members_stay_compatible() {
        let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let plain = QueueEntry {
            id: "a".into(),
            priority: 2,
            since: at,
            skills: Some("English".into()),
            preferred_agent: None,
            video: false,
            declined: Vec::new(),
            route: None,
        };
        let prefix = queue_prefix(&plain);
        // Without a preference or video, a member is what it was for a
        // service without a device when members carried the device.
        assert_eq!(
            queue_member(&plain),
            format!("{prefix}a\u{1f}English\u{1f}")
        );
        // Members written before devices, with a device, and before
        // preferences and video: all read as the same entry.
        for old in [
            format!("{prefix}a\u{1f}English"),
            format!("{prefix}a\u{1f}English\u{1f}dev"),
        ] {
            assert_eq!(parse_queue_member(&old), Some(plain.clone()), "{old}");
        }
        assert_eq!(
            parse_queue_member(&format!("{prefix}a\u{1f}English\u{1f}dev\u{1f}ag\u{1f}1")),
            Some(QueueEntry {
                preferred_agent: Some("ag".into()),
                video: true,
                ..plain.clone()
            })
        );
        // Preference and video: two more fields.
        let both = QueueEntry {
            preferred_agent: Some("ag".into()),
            video: true,
            ..plain.clone()
        };
        assert_eq!(
            queue_member(&both),
            format!("{prefix}a\u{1f}English\u{1f}\u{1f}ag\u{1f}1")
        );
        let video_only = QueueEntry {
            video: true,
            ..plain.clone()
        };
        assert_eq!(
            queue_member(&video_only),
            format!("{prefix}a\u{1f}English\u{1f}\u{1f}\u{1f}1")
        );
        // Declined agents: a sixth field, after the (empty) preference and video.
        let declined = QueueEntry {
            declined: vec!["ag-1".into(), "ag-2".into()],
            ..plain.clone()
        };
        assert_eq!(
            queue_member(&declined),
            format!("{prefix}a\u{1f}English\u{1f}\u{1f}\u{1f}\u{1f}ag-1\u{1e}ag-2")
        );
        // A URS route: a seventh field, JSON, after the (empty) declined agents.
        let routed = QueueEntry {
            route: Some(engine::routing::target::ActiveRoute {
                step: 1,
                any: vec![
                    engine::routing::target::AgentSet::parse_urs("?:Loans>=2@S.GA").unwrap(),
                    engine::routing::target::AgentSet::group("Billing"),
                ],
                skip_if: None,
            }),
            ..plain.clone()
        };
        assert_eq!(
            queue_member(&routed),
            format!(
                "{prefix}a\u{1f}English\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}{}",
                r#"{"n":1,"any":[{"k":"Loans>=2"},{"g":"Billing"}]}"#
            )
        );
        for e in [both, video_only, declined, routed] {
            assert_eq!(parse_queue_member(&queue_member(&e)), Some(e));
        }
        assert_eq!(parse_queue_member(&format!("{prefix}a")), None);
        assert_eq!(parse_queue_member("garbage"), None);
    }

    #[test]
    fn every_timer_kind_has_its_own_code() {
        for (code, kind) in TIMER_KINDS.iter().enumerate() {
            assert_eq!(timer_code(*kind), code, "{kind:?}");
        }
    }

    #[test]
    fn stored_values_round_trip() {
        let scenario = engine::scenario::Scenario::from_toml(
            std::path::Path::new("t.toml"),
            "name = \"t\"\n_media_type = \"chat\"\n_wait_for_agent = true\n_wait_for_user_confirm = false\n_ttl = 60\n_target = { queue = \"q\" }\n",
        )
        .unwrap();
        let new = engine::machine::NewService {
            id: "a".into(),
            customer_number: "1".into(),
            desired_time: None,
            device_notification_id: None,
            device_os: None,
            user_data: Default::default(),
            booking: None,
            preferred_agent: None,
            video: None,
        };
        let rec = engine::machine::create(new, &Arc::new(scenario), Utc::now()).record;
        let value = encode_value(&rec);
        assert!(value.starts_with(b"1:u"));
        assert_eq!(decode_value(&value), Ok(rec.clone()));
        // The frame names no dictionary and is smaller than one against
        // the text alone, as written before.
        let frame = &value[3..];
        assert_eq!(zstd::zstd_safe::get_dict_id_from_frame(frame), None);
        let mut old_zstd = zstd::bulk::Compressor::with_dictionary(ZSTD_LEVEL, DICTIONARY).unwrap();
        let old_frame = old_zstd.compress(&rec.encode()).unwrap();
        assert!(
            frame.len() < old_frame.len(),
            "{} against {}",
            frame.len(),
            old_frame.len()
        );
        // A value against the text alone (`s`), as written before.
        let mut before = b"1:s".to_vec();
        before.extend(&old_frame);
        assert_eq!(decode_value(&before), Ok(rec.clone()));
        // A value against the dictionary with entropy tables (`t`), as
        // written before.
        let mut t_zstd =
            zstd::bulk::Compressor::with_dictionary(ZSTD_LEVEL, RECORD_DICTIONARY).unwrap();
        t_zstd
            .set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))
            .unwrap();
        let mut t_value = b"1:t".to_vec();
        t_value.extend(t_zstd.compress(&rec.encode()).unwrap());
        assert_eq!(decode_value(&t_value), Ok(rec.clone()));
        // Each marker's frame needs its own dictionary.
        for marker in [b"1:s", b"1:t"] {
            let mut swapped = marker.to_vec();
            swapped.extend(frame);
            assert!(decode_value(&swapped).is_err());
        }
        let mut swapped = b"1:u".to_vec();
        swapped.extend(&t_value[3..]);
        assert!(decode_value(&swapped).is_err());
        // A value deflated against the dictionary, as written before zstd.
        let mut deflated = b"1:y".to_vec();
        deflated.reserve(4096);
        let mut z = flate2::Compress::new(flate2::Compression::default(), false);
        z.set_dictionary(DICTIONARY).unwrap();
        z.compress_vec(&rec.encode(), &mut deflated, flate2::FlushCompress::Finish)
            .unwrap();
        assert_eq!(decode_value(&deflated), Ok(rec.clone()));
        // A value deflated without the dictionary, as written before it.
        let mut old = b"1:z".to_vec();
        old.reserve(4096);
        let mut z = flate2::Compress::new(flate2::Compression::fast(), false);
        z.compress_vec(&rec.encode(), &mut old, flate2::FlushCompress::Finish)
            .unwrap();
        assert_eq!(decode_value(&old), Ok(rec.clone()));
        // A plain-JSON value (written by hand, say) reads too.
        let mut plain = b"1:".to_vec();
        plain.extend(rec.encode());
        assert_eq!(decode_value(&plain), Ok(rec.clone()));
        assert!(decode_value(b"garbage").is_err());
        // A cut-off value is an error, never a hang; and the reused states
        // read and write the next record as well as the first.
        assert!(decode_value(&value[..value.len() / 2]).is_err());
        assert!(decode_value(b"1:z").is_err());
        assert!(decode_value(b"1:y").is_err());
        assert!(decode_value(b"1:s").is_err());
        assert!(decode_value(b"1:t").is_err());
        assert!(decode_value(b"1:u").is_err());
        assert!(decode_value(&deflated[..deflated.len() / 2]).is_err());
        // A frame that claims a record too large to be one is refused
        // before anything is allocated for it.
        let huge = zstd::bulk::compress(&vec![b' '; (MAX_RECORD + 1) as usize], 1).unwrap();
        for marker in [b"1:s", b"1:t", b"1:u"] {
            let mut huge_value = marker.to_vec();
            huge_value.extend(&huge);
            let refused = decode_value(&huge_value).unwrap_err();
            assert!(refused.contains("16777217 bytes"), "{refused}");
        }
        let again = encode_value(&rec);
        assert_eq!(again, value);
        assert_eq!(decode_value(&again), Ok(rec));
    }

    /// Records of every shipped scenario in every state a flow goes
    /// through, each service some way along it: what
    /// `record_dictionary_trained.zdict` was trained on (and
    /// `record_dictionary.zdict`'s entropy tables counted over).
    pub(crate) fn sample_records() -> Vec<ServiceRecord> {
        use engine::machine::{apply, create, Event, NewService};
        use engine::record::Party;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut scenarios: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|f| f.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        scenarios.sort();
        let t0 = Utc.timestamp_opt(1_796_000_000, 0).unwrap();
        let mut samples: Vec<ServiceRecord> = Vec::new();
        for path in &scenarios {
            let text = std::fs::read_to_string(path).unwrap();
            let scenario = Arc::new(engine::scenario::Scenario::from_toml(path, &text).unwrap());
            for i in 0..400u32 {
                // Nanoseconds vary as a clock's do.
                let now = t0 + chrono::Duration::nanoseconds(i64::from(i) * 7_919_123_457);
                let mut user_data = std::collections::BTreeMap::new();
                user_data.insert("usr_customer_name".to_owned(), format!("Customer {i}"));
                if i % 2 == 0 {
                    user_data.insert("usr_reason".to_owned(), "billing question".to_owned());
                }
                let new = NewService {
                    id: {
                        let h = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                            ^ path.as_os_str().len() as u64;
                        format!(
                            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                            h >> 32,
                            (h >> 16) & 0xffff,
                            h & 0xfff,
                            (h >> 12) & 0xfff,
                            h.rotate_left(17) & 0xffff_ffff_ffff
                        )
                    },
                    customer_number: format!("+1408{:07}", u64::from(i) * 7_654_321 % 10_000_000),
                    desired_time: None,
                    device_notification_id: (i % 5 != 0).then(|| format!("device-{}", i * 97)),
                    device_os: (i % 5 != 0).then(|| "comet".to_owned()),
                    user_data,
                    booking: None,
                    preferred_agent: None,
                    video: None,
                };
                let mut rec = create(new, &scenario, now).record;
                samples.push(rec.clone());
                let agent = format!("agent-{}", i % 17);
                let flow = [
                    Event::AgentReserved { agent },
                    Event::UserConfirmed,
                    engine::testing::chat_started(),
                    engine::testing::say(Party::Client, "Hello, I have a question about my bill."),
                    engine::testing::say(Party::Agent, "Hi, I can help with that."),
                    Event::Complete,
                ];
                // Each service goes some way along the flow, so every state
                // is sampled about as often as a deployment holds it.
                for (step, event) in flow.iter().enumerate().take((i % 7) as usize) {
                    let at = now + chrono::Duration::seconds(30 * (step as i64 + 1));
                    if let Ok(applied) = apply(&rec, &scenario, event, at) {
                        rec = applied.record;
                    }
                }
                samples.push(rec);
            }
        }
        samples
    }

    /// The index entry written field by field is what `rmp_serde` writes
    /// for the two structs: for every sample record, and for entries with
    /// every field set and numbers at each MessagePack width.
    #[test]
    fn the_index_entry_is_written_as_rmp_serde_writes_it() {
        fn check(hot: &IndexEntry<'_>, cold: &ColdEntry<'_>) {
            let mut expected = rmp_serde::to_vec_named(hot).unwrap();
            rmp_serde::encode::write_named(&mut expected, cold).unwrap();
            assert_eq!(
                encode_index_entry(hot, cold).unwrap(),
                expected,
                "{hot:?} {cold:?}"
            );
        }
        let samples = sample_records();
        for rec in &samples {
            let (hot, cold) = index_entry(rec);
            check(&hot, &cold);
        }
        let long = "r".repeat(300);
        let numbers = [
            0i64,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            4_294_967_295,
            4_294_967_296,
            i64::MAX,
            -1,
            -32,
            -33,
            -128,
            -129,
            -40_000,
            -3_000_000_000,
            i64::MIN,
        ];
        for n in numbers {
            let hot = IndexEntry {
                s: "wait_for_agent",
                n: "chat-delay",
                q: Some("support"),
                p: Some("0000001796000000000".into()),
                k: Some("english"),
                w: Some("device-1"),
                pa: Some("ann"),
                vd: Some(n as u8),
                dc: Some("bob\u{1e}carol".into()),
                rt: Some(long.clone()),
                d: n,
            };
            let cold = ColdEntry {
                c: "+14085550100",
                ts: vec![(0, n), (n as usize, -n.saturating_abs())],
                a: Some("ann"),
                b: Some("1796000000000".into()),
                bc: Some(n as u32),
                r: Some("room-code"),
                ra: Some("ann"),
                od: Some(n as usize),
                oa: Some(70_000),
            };
            check(&hot, &cold);
            // And the optional fields missing, two at a time.
            check(
                &IndexEntry {
                    q: None,
                    ..hot.clone()
                },
                &ColdEntry {
                    a: None,
                    ..cold.clone()
                },
            );
            check(
                &IndexEntry {
                    p: None,
                    pa: None,
                    ..hot.clone()
                },
                &ColdEntry {
                    b: None,
                    od: None,
                    ..cold.clone()
                },
            );
            check(
                &IndexEntry {
                    k: None,
                    vd: None,
                    ..hot.clone()
                },
                &ColdEntry {
                    bc: None,
                    r: None,
                    ..cold.clone()
                },
            );
            check(
                &IndexEntry {
                    w: None,
                    dc: None,
                    ..hot.clone()
                },
                &ColdEntry {
                    ra: None,
                    oa: None,
                    ts: Vec::new(),
                    ..cold.clone()
                },
            );
            check(
                &IndexEntry {
                    rt: None,
                    ..hot.clone()
                },
                &cold,
            );
        }
    }

    /// The committed dictionary fits records: every sample reads back, and
    /// together they are smaller than against the dictionary before it.
    ///
    /// With `CALLBACKD_MAKE_RECORD_DICTIONARY=1` it writes a new dictionary
    /// from the same samples to `src/record_dictionary_trained.zdict`
    /// instead, to be checked by the next run (how the file was made:
    /// `ZDICT_trainFromBuffer`, [`TRAINED_DICTIONARY_SIZE`] bytes, over
    /// every sample's JSON). The file is a format on disk: a new one needs a
    /// new marker. ([`RECORD_DICTIONARY`] was [`DICTIONARY`]'s text with
    /// zstd's entropy tables, by `ZDICT_finalizeDictionary` over the same
    /// samples.)
    #[test]
    fn the_record_dictionary_fits_sample_records() {
        let samples = sample_records();
        if std::env::var_os("CALLBACKD_MAKE_RECORD_DICTIONARY").is_some() {
            return make_trained_dictionary(&samples);
        }
        let mut before_zstd =
            zstd::bulk::Compressor::with_dictionary(ZSTD_LEVEL, RECORD_DICTIONARY).unwrap();
        let (mut now, mut before) = (0, 0);
        for rec in &samples {
            let value = encode_value(rec);
            let colon = value.iter().position(|b| *b == b':').unwrap();
            assert_eq!(value[colon + 1], b'u', "{}", rec.id);
            assert_eq!(decode_value(&value).as_ref(), Ok(rec));
            now += value.len();
            before += before_zstd.compress(&rec.encode()).unwrap().len();
        }
        // A third smaller, at least.
        assert!(now * 3 < before * 2, "{now} bytes against {before}");
    }

    fn make_trained_dictionary(samples: &[ServiceRecord]) {
        let samples: Vec<Vec<u8>> = samples.iter().map(ServiceRecord::encode).collect();
        let flat = samples.concat();
        let sizes: Vec<usize> = samples.iter().map(Vec::len).collect();
        let mut out = vec![0u8; TRAINED_DICTIONARY_SIZE];
        // SAFETY: every pointer and length is of a live buffer above.
        let n = unsafe {
            zstd_sys::ZDICT_trainFromBuffer(
                out.as_mut_ptr().cast(),
                out.len(),
                flat.as_ptr().cast(),
                sizes.as_ptr(),
                sizes.len() as u32,
            )
        };
        assert_eq!(
            unsafe { zstd_sys::ZDICT_isError(n) },
            0,
            "ZDICT_trainFromBuffer"
        );
        out.truncate(n);
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/record_dictionary_trained.zdict");
        std::fs::write(&file, &out).unwrap();
        println!(
            "{} samples, {} bytes of dictionary in {}",
            samples.len(),
            out.len(),
            file.display()
        );
    }

    /// Values on disk were compressed against these exact bytes: a changed
    /// dictionary would make every stored record unreadable.
    #[test]
    fn the_dictionaries_never_change() {
        let fnv1a = |bytes: &[u8]| {
            bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            })
        };
        assert_eq!(
            (DICTIONARY.len(), fnv1a(DICTIONARY)),
            (1515, 0x2926_a417_ea60_de44)
        );
        assert_eq!(
            (RECORD_DICTIONARY.len(), fnv1a(RECORD_DICTIONARY)),
            (1652, 0xd643_e65e_a7e0_fb49)
        );
        assert_eq!(
            (TRAINED_DICTIONARY.len(), fnv1a(TRAINED_DICTIONARY)),
            (16384, 0x75f4_2502_f922_148d)
        );
        // The text is the old dictionary's, with the tables in front.
        assert!(RECORD_DICTIONARY.ends_with(DICTIONARY));
        assert_eq!(
            zstd::zstd_safe::get_dict_id_from_dict(RECORD_DICTIONARY).map(u32::from),
            Some(RECORD_DICTIONARY_ID)
        );
    }

    #[test]
    fn claimed_timers_read_every_code() {
        let due = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
        for kind in TIMER_KINDS {
            assert_eq!(
                due_timer(("a|b".into(), timer_code(kind), ms(due))),
                Some(DueTimer {
                    id: "a|b".into(),
                    kind,
                    due
                })
            );
        }
        assert_eq!(due_timer(("a".into(), TIMER_KINDS.len(), ms(due))), None);
    }
}
