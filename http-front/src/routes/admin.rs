//! The operator's API: GMS's `/genesys/1/admin/callback/…` (services by
//! queue, watermarks, bulk cancel, the report of cancelled callbacks) with a
//! general CSV export, and the supervisor's hands on agents and services
//! (the agent list, move, requeue). Every route here needs a supervisor or
//! an admin (the route table says so).
//!
//! Where GMS names a parameter or a shape, it is GMS's: `target`,
//! `start_time`, `end_time`, `states`, `max` and the answer keyed by queue
//! of the query by queues; `service_name`, `services` and `total` of the
//! watermarks; `ids` and `reason` of the bulk cancel; `callback_reason` and
//! `exported_properties` of reportcancelled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use engine::machine::{Event, TransitionError};
use engine::record::{CallbackReason, ServiceRecord, ServiceState};
use runtime::ShellError;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::check_id;
use super::services::full;
use crate::auth::{staff_cause, Caller};
use crate::error::AppError;
use crate::extract::{Path, Query};
use crate::form::{JsonBody, OptionalJsonBody};
use crate::requests::fields::{at_most, time};
use crate::wire;
use crate::AppState;

/// Services per page of the query by queues when `max` is not given.
const DEFAULT_MAX: usize = 100;
/// The largest page: an answer stays a few megabytes at most.
const MAX_PAGE: usize = 1000;
/// Ids per bulk cancel: each is its own write, and the answer lists them all.
const MAX_CANCEL: usize = 1000;
/// The longest bulk-cancel reason kept in the history.
const MAX_REASON: usize = 256;
/// The most columns an export may ask for.
const MAX_COLUMNS: usize = 64;
/// Queue names and column names are at most this long.
const MAX_NAME: usize = 128;

const STATES_HELP: &str = "SCHEDULED, QUEUED, ROUTING, PROCESSING, COMPLETED";

/// Active: every state but COMPLETED.
const ACTIVE: [ServiceState; 4] = [
    ServiceState::Scheduled,
    ServiceState::WaitForAgent,
    ServiceState::WaitForUserConfirm,
    ServiceState::Connected,
];

/// The columns of an export that names none.
const DEFAULT_COLUMNS: [&str; 10] = [
    "_id",
    "_service_name",
    "_queue",
    "_callback_state",
    "_callback_reason",
    "_customer_number",
    "_desired_time",
    "_created_time",
    "_completed_time",
    "_agent_id",
];

/// Which services an operator's view shows: by queue, desired time and state.
struct Filter {
    target: Option<String>,
    /// Ours: only this scenario's services (`service_name`, GMS's name for
    /// a scenario in the admin API).
    scenario: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    states: Vec<ServiceState>,
}

impl Filter {
    /// `target` is a queue name; the window holds desired times, both ends
    /// included; `states` is GMS's names, comma-separated (absent: every
    /// active state).
    fn parse(
        target: Option<&str>,
        start_time: Option<&str>,
        end_time: Option<&str>,
        states: Option<&str>,
    ) -> Result<Filter, AppError> {
        let target = match target {
            Some(t) => Some(queue_name("target", t)?.to_owned()),
            None => None,
        };
        let example = "UTC time such as 2026-11-23T09:00:00.000Z";
        let from = start_time
            .map(|t| time("start_time", t, example))
            .transpose()?;
        let to = end_time.map(|t| time("end_time", t, example)).transpose()?;
        if let (Some(from), Some(to)) = (from, to) {
            if to < from {
                return Err(AppError::field(
                    "end_time",
                    format!("is before start_time ({})", wire::time(from)),
                ));
            }
        }
        let states = match states {
            None => ACTIVE.to_vec(),
            Some(list) => parse_states(list)?,
        };
        Ok(Filter {
            target,
            scenario: None,
            from,
            to,
            states,
        })
    }

    fn holds(&self, rec: &ServiceRecord) -> bool {
        self.target.as_ref().is_none_or(|q| &rec.ticket.queue == q)
            && self.scenario.as_ref().is_none_or(|s| &rec.scenario == s)
            && self.from.is_none_or(|t| rec.desired_time >= t)
            && self.to.is_none_or(|t| rec.desired_time <= t)
            && self.states.contains(&rec.state)
    }

    /// Only `service_name`'s services, if given: a loaded scenario (400
    /// naming the field otherwise).
    fn of_scenario(
        mut self,
        state: &AppState,
        service_name: Option<&str>,
    ) -> Result<Filter, AppError> {
        if let Some(name) = service_name {
            super::loaded_scenario(state, "service_name", name)?;
            self.scenario = Some(name.to_owned());
        }
        Ok(self)
    }

    /// The services it holds, by queue name, then in each queue's routing
    /// order (higher priority, then the oldest).
    async fn select(&self, state: &AppState) -> Result<Vec<ServiceRecord>, AppError> {
        let mut records: Vec<ServiceRecord> = state
            .shell
            .services_in(&self.states)
            .await?
            .into_iter()
            .filter(|r| self.holds(r))
            .collect();
        records.sort_by(|a, b| queue_order(a).cmp(&queue_order(b)));
        Ok(records)
    }
}

fn queue_order(rec: &ServiceRecord) -> (&str, std::cmp::Reverse<i32>, DateTime<Utc>, &str) {
    (
        &rec.ticket.queue,
        std::cmp::Reverse(rec.ticket.priority),
        rec.ticket.since,
        &rec.id,
    )
}

/// A queue name: 1 to 128 printable characters.
fn queue_name<'a>(field: &str, name: &'a str) -> Result<&'a str, AppError> {
    if name.is_empty() {
        return Err(AppError::field(field, "must not be empty"));
    }
    at_most(field, name, MAX_NAME)?;
    Ok(name)
}

/// `states`: GMS state names, comma-separated, at least one.
fn parse_states(list: &str) -> Result<Vec<ServiceState>, AppError> {
    let mut states = Vec::new();
    for name in list.split(',').map(str::trim) {
        let state = ServiceState::from_gms_name(name).ok_or_else(|| {
            AppError::field("states", format!("`{name}` is not one of {STATES_HELP}"))
        })?;
        if !states.contains(&state) {
            states.push(state);
        }
    }
    Ok(states)
}

/// A positive count no larger than `most`.
fn count(field: &str, text: &str, most: usize) -> Result<usize, AppError> {
    match text.parse::<usize>() {
        Ok(n) if (1..=most).contains(&n) => Ok(n),
        _ => Err(AppError::field(
            field,
            format!("`{text}` is not a whole number from 1 to {most}"),
        )),
    }
}

/// A service in GMS's query shape, with the queue it waits (or waited) in
/// and the agent who has (or had) it.
fn admin_record(rec: &ServiceRecord) -> Value {
    let mut v = wire::query_record(rec);
    v["_queue"] = json!(rec.ticket.queue);
    v["_agent_id"] = json!(rec.handling_agent());
    v
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuesQuery {
    target: Option<String>,
    service_name: Option<String>,
    start_time: Option<String>,
    end_time: Option<String>,
    states: Option<String>,
    /// GMS's page size.
    max: Option<String>,
    /// Ours: which page of `max` services, from 1.
    page: Option<String>,
}

/// GET /genesys/1/admin/callback/queues?target=&start_time=&end_time=&states=&max=&page=:
/// `{"<queue>": [service, …], …}`, a page of the matching services (in
/// queue order); `X-Total-Count` says how many match in all.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn queues(
    State(state): State<Arc<AppState>>,
    Query(q): Query<QueuesQuery>,
) -> Result<Response, AppError> {
    let filter = Filter::parse(
        q.target.as_deref(),
        q.start_time.as_deref(),
        q.end_time.as_deref(),
        q.states.as_deref(),
    )?
    .of_scenario(&state, q.service_name.as_deref())?;
    let max = match &q.max {
        Some(m) => count("max", m, MAX_PAGE)?,
        None => DEFAULT_MAX,
    };
    let page = match &q.page {
        Some(p) => count("page", p, usize::MAX / MAX_PAGE)?,
        None => 1,
    };
    let records = filter.select(&state).await?;
    let total = records.len();
    let mut by_queue: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for rec in records.iter().skip((page - 1) * max).take(max) {
        by_queue
            .entry(&rec.ticket.queue)
            .or_default()
            .push(admin_record(rec));
    }
    let mut res = Json(json!(by_queue)).into_response();
    res.headers_mut()
        .insert("x-total-count", HeaderValue::from(total));
    Ok(res)
}

/// GET /genesys/1/admin/callback/watermarks[?service_name=…]: GMS's
/// `services` (per scenario, the services on their way to or with an
/// agent: QUEUED, ROUTING, PROCESSING) and their `total`; and `queues`:
/// per queue, the active services by state and the oldest waiting one.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn watermarks(
    State(state): State<Arc<AppState>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, AppError> {
    let mut named = BTreeSet::new();
    for (key, value) in &params {
        if key != "service_name" {
            return Err(AppError::field(
                key,
                "is not a parameter of watermarks (service_name)",
            ));
        }
        super::loaded_scenario(&state, "service_name", value)?;
        named.insert(value.as_str());
    }
    let shown = |scenario: &str| named.is_empty() || named.contains(scenario);
    let now = state.shell.now();
    let mut services: BTreeMap<String, u64> = state
        .shell
        .scenarios()
        .iter()
        .filter(|s| shown(&s.name))
        .map(|s| (s.name.clone(), 0))
        .collect();
    let mut queues: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for rec in state.shell.services_in(&ACTIVE).await? {
        if !shown(&rec.scenario) {
            continue;
        }
        if rec.state != ServiceState::Scheduled {
            *services.entry(rec.scenario.clone()).or_default() += 1;
        }
        let queue = queues
            .entry(rec.ticket.queue.clone())
            .or_insert_with(empty_watermark);
        for key in [rec.state.gms_name(), "active"] {
            queue[key] = json!(queue[key].as_u64().unwrap_or(0) + 1);
        }
        if rec.state == ServiceState::WaitForAgent {
            let oldest = queue["oldest_waiting_since"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            if oldest.is_none_or(|t| rec.ticket.since < t) {
                let age = (now - rec.ticket.since).num_seconds().max(0);
                queue["oldest_waiting_since"] = json!(wire::time(rec.ticket.since));
                queue["oldest_waiting_seconds"] = json!(age);
                queue["oldest_waiting_id"] = json!(rec.id);
            }
        }
    }
    let total: u64 = services.values().sum();
    Ok(Json(json!({
        "services": services,
        "total": total,
        "queues": queues,
    })))
}

fn empty_watermark() -> Map<String, Value> {
    let mut m = Map::new();
    for s in ACTIVE {
        m.insert(s.gms_name().to_owned(), json!(0));
    }
    m.insert("active".into(), json!(0));
    m.insert("oldest_waiting_since".into(), Value::Null);
    m.insert("oldest_waiting_seconds".into(), Value::Null);
    m.insert("oldest_waiting_id".into(), Value::Null);
    m
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    ids: Vec<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// POST /genesys/1/admin/callback/cancel `{"ids":[…],"reason":"…"}`: each
/// id is cancelled on its own (reason CANCELLED), its history naming the
/// caller and the reason; the answer lists what was cancelled and, for the
/// rest, why not. A bad id is reported, not fatal.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<CancelBody>,
) -> Result<Json<Value>, AppError> {
    if body.ids.is_empty() {
        return Err(AppError::field("ids", "must name at least one service"));
    }
    if body.ids.len() > MAX_CANCEL {
        return Err(AppError::field(
            "ids",
            format!(
                "names {} services; at most {MAX_CANCEL} per request",
                body.ids.len()
            ),
        ));
    }
    let reason = body.reason.as_deref().filter(|r| !r.trim().is_empty());
    if let Some(reason) = reason {
        at_most("reason", reason, MAX_REASON)?;
    }
    let cause = match reason {
        Some(reason) => format!("{} (bulk cancel: {reason})", staff_cause(&state, &caller)),
        None => format!("{} (bulk cancel)", staff_cause(&state, &caller)),
    };
    let (cancelled, refused) = runtime::cause::with_cause(cause, async {
        let mut seen = BTreeSet::new();
        let mut cancelled = Vec::new();
        let mut refused = Vec::new();
        for id in &body.ids {
            let not = |exception: &str, message: String| {
                json!({"_id": id, "exception": exception, "message": message})
            };
            if check_id("ids", id).is_err() {
                refused.push(not("INVALID_ID", "is not a service id".into()));
                continue;
            }
            if !seen.insert(id.as_str()) {
                refused.push(not("DUPLICATE_ID", "is listed more than once".into()));
                continue;
            }
            match state.shell.transition(id, &Event::Cancel).await {
                Ok(_) => cancelled.push(id.clone()),
                Err(ShellError::UnknownService(_)) => {
                    refused.push(not("NOT_FOUND", format!("service `{id}` does not exist")))
                }
                Err(ShellError::NotAllowed(TransitionError::NotAllowed {
                    state: ServiceState::Completed,
                    message,
                    ..
                })) => refused.push(not("ALREADY_COMPLETED", message)),
                Err(e) => {
                    let e = AppError::from(e);
                    refused.push(not(e.exception(), e.to_string()));
                }
            }
        }
        (cancelled, refused)
    })
    .await;
    tracing::info!(
        cancelled = cancelled.len(),
        refused = refused.len(),
        "Bulk cancel."
    );
    Ok(Json(json!({
        "reason": reason,
        "cancelled": cancelled,
        "not_cancelled": refused,
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    callback_reason: Option<String>,
    exported_properties: Option<Vec<String>>,
    target: Option<String>,
    start_time: Option<String>,
    end_time: Option<String>,
}

/// POST /genesys/1/admin/callback/reportcancelled
/// `{"callback_reason"?, "exported_properties"?, "target"?, "start_time"?, "end_time"?}`:
/// the completed services with that reason (default CANCELLED) as CSV.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn report_cancelled(
    State(state): State<Arc<AppState>>,
    OptionalJsonBody(body): OptionalJsonBody<ReportBody>,
) -> Result<Response, AppError> {
    let reason = match body.callback_reason.as_deref() {
        None => CallbackReason::Cancelled,
        Some(name) => callback_reason(name)?,
    };
    let columns = columns("exported_properties", body.exported_properties)?;
    let mut filter = Filter::parse(
        body.target.as_deref(),
        body.start_time.as_deref(),
        body.end_time.as_deref(),
        None,
    )?;
    filter.states = vec![ServiceState::Completed];
    let records = filter
        .select(&state)
        .await?
        .into_iter()
        .filter(|r| r.reason == Some(reason))
        .collect();
    Ok(csv_response("cancelled-callbacks.csv", columns, records))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    target: Option<String>,
    service_name: Option<String>,
    start_time: Option<String>,
    end_time: Option<String>,
    states: Option<String>,
    /// Columns, comma-separated (default: [`DEFAULT_COLUMNS`]).
    properties: Option<String>,
}

/// GET /genesys/1/admin/callback/export?target=&start_time=&end_time=&states=&properties=:
/// the services the query by queues would list, all of them, as CSV.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn export(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, AppError> {
    let filter = Filter::parse(
        q.target.as_deref(),
        q.start_time.as_deref(),
        q.end_time.as_deref(),
        q.states.as_deref(),
    )?
    .of_scenario(&state, q.service_name.as_deref())?;
    let asked = q
        .properties
        .map(|p| p.split(',').map(|c| c.trim().to_owned()).collect());
    let columns = columns("properties", asked)?;
    let records = filter.select(&state).await?;
    Ok(csv_response("callbacks.csv", columns, records))
}

fn callback_reason(name: &str) -> Result<CallbackReason, AppError> {
    CallbackReason::from_gms_name(name).ok_or_else(|| {
        AppError::field(
            "callback_reason",
            format!("`{name}` is not a GMS _callback_reason such as CANCELLED"),
        )
    })
}

/// The columns asked for, or the default ones.
fn columns(field: &str, asked: Option<Vec<String>>) -> Result<Vec<String>, AppError> {
    let Some(asked) = asked else {
        return Ok(DEFAULT_COLUMNS.iter().map(|c| c.to_string()).collect());
    };
    if asked.is_empty() || asked.len() > MAX_COLUMNS {
        return Err(AppError::field(
            field,
            format!("must name 1 to {MAX_COLUMNS} properties"),
        ));
    }
    for name in &asked {
        queue_name(field, name)?;
    }
    Ok(asked)
}

/// One cell: a query key (`_id`, `_callback_state`, a user-data key, …)
/// or one of the export's own (`_queue`, `_priority`, `_created_time`,
/// `_completed_time`); empty when the service has none.
fn cell(rec: &ServiceRecord, key: &str) -> String {
    match key {
        "_queue" => rec.ticket.queue.clone(),
        "_priority" => rec.ticket.priority.to_string(),
        "_created_time" => wire::time(rec.created_at),
        "_completed_time" => rec.completed_at.map(wire::time).unwrap_or_default(),
        other => wire::query_value(rec, other).unwrap_or_default(),
    }
}

/// A cell a spreadsheet would run as a formula (it starts with `=`, `+`,
/// `-`, `@`, a tab or a carriage return) gets a leading `'`, so that it
/// shows as the text it is (OWASP's advice on CSV injection). Customer
/// data reaches these cells: a name such as `=HYPERLINK(…)` must not run.
fn defused(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// One CSV row, RFC 4180: CRLF line ends, fields quoted when they hold a
/// comma, a quote or a line break.
fn csv_row<I, S>(cells: I) -> bytes::Bytes
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let cells: Vec<String> = cells
        .into_iter()
        .map(|c| defused(c.as_ref()).into_owned())
        .collect();
    // Writing into a Vec cannot fail.
    let _ = writer.write_record(&cells);
    bytes::Bytes::from(writer.into_inner().unwrap_or_default())
}

/// The header row, then one row per service, written as the body is sent
/// (the records are read already; their rows are not built up front).
fn csv_response(file: &str, columns: Vec<String>, records: Vec<ServiceRecord>) -> Response {
    let header_row = csv_row(&columns);
    let rows = records
        .into_iter()
        .map(move |rec| Ok::<_, std::io::Error>(csv_row(columns.iter().map(|c| cell(&rec, c)))));
    let stream = futures_util::stream::iter(std::iter::once(Ok(header_row)).chain(rows));
    let mut res = Body::from_stream(stream).into_response();
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

/// GET /api/v1/agents: every agent with its readiness, queues, limit and
/// current load (the services it holds or is offered), by id.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn agents(State(state): State<Arc<AppState>>) -> Result<Json<Value>, AppError> {
    let mut agents = state.shell.agents().await?;
    agents.sort_by(|a, b| a.profile.id.cmp(&b.profile.id));
    let list: Vec<Value> = agents
        .iter()
        .map(|a| {
            json!({
                "id": a.profile.id,
                "name": a.profile.name,
                "queues": a.profile.queues,
                "skills": a.profile.skills,
                "max_concurrent": a.profile.max_concurrent,
                "state": if a.ready { "ready" } else { "not_ready" },
                "load": a.services.len(),
                "services": a.services,
                "room": a.room,
            })
        })
        .collect();
    Ok(Json(json!({ "agents": list })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    queue: Option<String>,
    agent: Option<String>,
}

/// POST /api/v1/services/{id}/move `{"queue"?, "agent"?}`: a waiting
/// service (SCHEDULED, QUEUED; ROUTING is taken back from its agent first)
/// goes to another queue and/or is kept for an agent, with its priority
/// and age, so its place. The queue must be one an agent serves or a
/// scenario targets; the agent must exist and serve the queue.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn move_service(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<MoveBody>,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    if body.queue.is_none() && body.agent.is_none() {
        return Err(AppError::missing("queue or agent"));
    }
    let agents = state.shell.agents().await?;
    if let Some(queue) = &body.queue {
        queue_name("queue", queue)?;
        let served = agents.iter().any(|a| a.profile.queues.contains(queue))
            || state
                .shell
                .scenarios()
                .iter()
                .any(|s| &s.target.queue == queue);
        if !served {
            return Err(AppError::field(
                "queue",
                format!("no agent serves `{queue}` and no scenario targets it"),
            ));
        }
    }
    let record = state.shell.get(&id).await?;
    if let Some(agent) = &body.agent {
        check_id("agent", agent)?;
        let queue = body.queue.as_ref().unwrap_or(&record.ticket.queue);
        match agents.iter().find(|a| &a.profile.id == agent) {
            None => {
                return Err(AppError::field(
                    "agent",
                    format!("agent `{agent}` does not exist"),
                ))
            }
            Some(a) if !a.profile.queues.contains(queue) => {
                return Err(AppError::field(
                    "agent",
                    format!("agent `{agent}` does not serve queue `{queue}`"),
                ))
            }
            Some(_) => {}
        }
    }
    let event = Event::Moved {
        queue: body.queue,
        agent: body.agent,
    };
    Ok(Json(full(
        &state.shell.transition_on(record, &event).await?,
    )))
}

/// POST /api/v1/services/{id}/requeue: a service with an agent (ROUTING or
/// PROCESSING) goes back to its queue with its age; its agent is freed.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn requeue(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    Ok(Json(full(
        &state.shell.transition(&id, &Event::Requeued).await?,
    )))
}
