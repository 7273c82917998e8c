//! Create, query and cancel callback services.

use std::sync::Arc;

use crate::extract::{Path, Query};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::machine::Event;
use engine::record::{ServiceRecord, ServiceState};
use engine::store::{IdempotencyClaim, IndexKey};
use runtime::CreateRequest;
use serde_json::{json, Value};

use super::check_id;
use super::office_hours;
use super::schedule;
use super::video;
use crate::auth::Caller;
use crate::error::AppError;
use crate::form::{GmsForm, HeadersAndForm};
use crate::requests::callback::{throttled_values, CreateCallback};
use crate::wire;
use crate::AppState;
use access::Role;
use engine::record::Party;
use engine::scenario::Scenario;

/// POST /genesys/1/service/callback/{scenario}: a new service; a desired
/// time in a scenario with a schedule books its slot.
///
/// With an `Idempotency-Key`, a retry (on any node, within
/// `IDEMPOTENCY_KEEP`) by the same caller answers the first answer and
/// creates nothing.
#[tracing::instrument(level = "debug", skip_all, fields(scenario = %scenario))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: crate::auth::Caller,
    Path(scenario): Path<String>,
    HeadersAndForm(headers, form): HeadersAndForm,
) -> Result<Response, AppError> {
    let Some(key) = idempotency_key(&headers)? else {
        // Boxed: the create's future is large (about 9 KB), and axum's
        // handler future, which held it inline, was moved several times
        // while the extractors ran: 28 KB copied per create (callgrind).
        return Box::pin(create_once(&state, &scenario, &headers, &form))
            .await
            .map(json_answer);
    };
    // Keys are scoped by caller and scenario, so two callers' keys never meet.
    let scope = format!("{}:{scenario}", caller.0.name);
    let scope = scope.as_str();
    match state.shell.claim_create_key(scope, key).await? {
        IdempotencyClaim::Claimed => {}
        IdempotencyClaim::InProgress => {
            return Err(AppError::IdempotencyInProgress(
                "Idempotency-Key: a request with this key is still being answered; retry it later"
                    .into(),
            ))
        }
        IdempotencyClaim::Answered(answer) => {
            serde_json::from_str::<serde::de::IgnoredAny>(&answer)
                .map_err(|e| AppError::Internal(format!("stored answer: {e}")))?;
            return Ok(json_answer(answer));
        }
    }
    match Box::pin(create_once(&state, &scenario, &headers, &form)).await {
        Ok(answer) => {
            if let Err(e) = state.shell.answer_create_key(scope, key, &answer).await {
                // The service exists; only a retry's answer is at stake.
                tracing::warn!(error = %e, "Could not keep the answer of an idempotent create.");
            }
            Ok(json_answer(answer))
        }
        Err(e) => {
            // A failed create holds nothing: a retry runs afresh.
            if let Err(release) = state.shell.release_create_key(scope, key).await {
                tracing::warn!(error = %release, "Could not release an idempotency key.");
            }
            Err(e)
        }
    }
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, AppError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    let ok = (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(AppError::field(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(Some(key))
}

/// An answer already written as JSON.
fn json_answer(text: String) -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        text,
    )
        .into_response()
}

/// One create: parse, throttles, then the service (or a booking, or the
/// escalation of a chat to video). Answers the JSON text of the answer.
async fn create_once(
    state: &Arc<AppState>,
    scenario: &str,
    headers: &HeaderMap,
    form: &GmsForm,
) -> Result<String, AppError> {
    let scenario = state.shell.scenario(scenario)?.clone();
    let request = CreateCallback::parse(form, headers, &scenario)?;
    // Before the throttles: a refused create counts against no limit.
    office_hours::refuse_when_closed(&scenario, request.desired_time, state.shell.now())?;
    let counted = CreateRequest {
        customer_number: &request.customer_number,
        parameters: throttled_values(form, headers, &scenario),
    };
    state.shell.admit_create(&scenario, &counted).await?;
    // Unguessable: a v4 UUID is 122 random bits.
    let id = uuid::Uuid::new_v4().to_string();
    let booking = match (&scenario.schedule, request.desired_time, request.zone) {
        (Some(schedule), Some(t), Some(zone)) => {
            let field = "_desired_time";
            Some(schedule::book(state, &scenario, schedule, field, t, zone, &id).await?)
        }
        _ => None,
    };
    // The seed's escalation: `desired_time=now` with the chat's
    // conversationId. A chat of ours gains the video on its record.
    if let (Some(video), None) = (&request.video, &booking) {
        let chat = video.conversation_id.as_deref();
        if let Some(found) = live_chat(state, chat).await? {
            let video = request.video.expect("matched above");
            let (routing, conversation) = (video.routing, video.conversation_id);
            // Boxed, as the room's create below: rare, and 6.5 KB inline
            // would make every create's future that large, copied whole
            // into its box (9 KB of memcpy per create, callgrind).
            let record = Box::pin(state.shell.start_video(
                found,
                Party::Client,
                &scenario,
                routing,
                conversation,
            ))
            .await?;
            let mut answer = video::customer_view(state, &record);
            answer["_text"] = json!(scenario.texts.created);
            return Ok(answer.to_string());
        }
    }
    let (booked, zone) = (booking.is_some(), request.zone);
    let new = request.into_service(id, &scenario, state.shell.now(), booking);
    // Video now: the room is open from the start, so the answer holds the link.
    let created = if new.video.is_some() && !booked {
        Box::pin(state.shell.create_with_room(&scenario, new)).await
    } else {
        state.shell.create(&scenario, new).await
    };
    let record = match (created, &scenario.schedule) {
        (Ok(record), _) => record,
        (Err(e), Some(schedule)) if booked => {
            let zone = zone.unwrap_or(schedule.timezone);
            let field = "_desired_time";
            return Err(schedule::refused_seat(state, &scenario, schedule, field, e, zone).await);
        }
        (Err(e), _) => return Err(e.into()),
    };
    Ok(created_answer(state, &scenario, &record, headers))
}

/// The usual answer to a create, GMS's: the id and the scenario's text.
#[derive(serde::Serialize)]
struct Created<'a> {
    _id: &'a str,
    _text: &'a str,
}

/// The answer to a create, as JSON text: the chat dialog in a
/// chat-immediate scenario, the room in a video one, the booking of a
/// booked one, else the id and the text. That last, the usual one, is
/// written from a struct: built as a `Value` (an ordered map) and then
/// written, it cost about 4,000 instructions a create.
fn created_answer(
    state: &AppState,
    scenario: &Scenario,
    record: &ServiceRecord,
    headers: &HeaderMap,
) -> String {
    if scenario.wait_for_agent && record.video.is_none() && record.booking.is_none() {
        let created = Created {
            _id: &record.id,
            _text: &scenario.texts.created,
        };
        return serde_json::to_string(&created).unwrap_or_default();
    }
    let mut answer = serde_json::Map::new();
    if !scenario.wait_for_agent {
        // Chat-immediate: the customer can start the chat right away.
        let base = wire::base_url(state.public_url.as_deref(), state.tls, headers);
        answer = wire::start_chat_dialog(record, scenario, &base);
    }
    answer.insert("_id".into(), json!(record.id));
    answer.insert("_text".into(), json!(scenario.texts.created));
    if record.video.is_some() && record.booking.is_none() {
        if let Value::Object(v) = video::customer_view(state, record) {
            answer.extend(v);
        }
    }
    if record.booking.is_some() {
        return schedule::booking_answer(&state.link_base, record, Value::Object(answer))
            .to_string();
    }
    Value::Object(answer).to_string()
}

/// The live service a `conversationId` names, if it is one of ours.
async fn live_chat(state: &AppState, id: Option<&str>) -> Result<Option<ServiceRecord>, AppError> {
    let Some(id) = id.filter(|id| check_id("conversationId", id).is_ok()) else {
        return Ok(None);
    };
    let found = state.shell.find_service(id).await?;
    Ok(found.filter(|r| r.state != ServiceState::Completed))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Operand {
    And,
    Or,
}

/// One `key=value` condition; a value starting with `!` negates it.
struct Condition {
    key: String,
    value: String,
    negate: bool,
}

impl Condition {
    fn holds(&self, rec: &ServiceRecord) -> bool {
        let equal = wire::query_value(rec, &self.key).is_some_and(|v| {
            if self.key == "_callback_state" || self.key == "_callback_reason" {
                v.eq_ignore_ascii_case(&self.value)
            } else {
                v == self.value
            }
        });
        equal != self.negate
    }
}

fn conditions(params: &[(String, String)]) -> Result<(Operand, Vec<Condition>), AppError> {
    let mut operand = Operand::And;
    let mut conds = Vec::new();
    for (key, value) in params {
        if key.eq_ignore_ascii_case("operand") {
            operand = match value.to_ascii_uppercase().as_str() {
                "AND" => Operand::And,
                "OR" => Operand::Or,
                _ => {
                    return Err(AppError::field(
                        "operand",
                        format!("`{value}` is not AND or OR"),
                    ))
                }
            };
            continue;
        }
        let (negate, value) = match value.strip_prefix('!') {
            Some(rest) => (true, rest.to_owned()),
            None => (false, value.clone()),
        };
        if key == "_callback_state" && ServiceState::from_gms_name(&value).is_none() {
            return Err(AppError::field(
                "_callback_state",
                format!(
                    "`{value}` is not one of SCHEDULED, QUEUED, ROUTING, PROCESSING, COMPLETED"
                ),
            ));
        }
        conds.push(Condition {
            key: key.clone(),
            value,
            negate,
        });
    }
    Ok((operand, conds))
}

fn matches(rec: &ServiceRecord, operand: Operand, conds: &[Condition]) -> bool {
    match operand {
        Operand::And => conds.iter().all(|c| c.holds(rec)),
        Operand::Or => conds.is_empty() || conds.iter().any(|c| c.holds(rec)),
    }
}

fn answer(mut records: Vec<ServiceRecord>) -> Json<Value> {
    records.sort_by(|a, b| (a.desired_time, &a.id).cmp(&(b.desired_time, &b.id)));
    Json(Value::Array(
        records.iter().map(wire::query_record).collect(),
    ))
}

/// GET /genesys/1/service/callback/{scenario}?key=value&...&operand=AND|OR
#[tracing::instrument(level = "debug", skip_all, fields(scenario = %scenario))]
pub async fn query(
    State(state): State<Arc<AppState>>,
    Path(scenario): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, AppError> {
    state.shell.scenario(&scenario)?;
    let (operand, conds) = conditions(&params)?;
    // Narrow by the customer index when an AND query names the customer.
    let key = match conds
        .iter()
        .find(|c| c.key == "_customer_number" && !c.negate)
    {
        Some(c) if operand == Operand::And => IndexKey::Customer(c.value.clone()),
        _ => IndexKey::Scenario(scenario.clone()),
    };
    let records = state.shell.services_by(&key).await?;
    Ok(answer(
        records
            .into_iter()
            .filter(|r| r.scenario == scenario && matches(r, operand, &conds))
            .collect(),
    ))
}

/// GET /genesys/1/service/callback?_id=...: one service by its id, for
/// any client that knows it; or, with other conditions
/// (`?_customer_number=…&_callback_state=!COMPLETED`, `operand`), the
/// query across every scenario, a `backend` call like the query by
/// scenario.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn query_by_id(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, AppError> {
    if let [(key, id)] = params.as_slice() {
        if key == "_id" {
            check_id("_id", id)?;
            let record = state.shell.get(id).await?;
            return Ok(answer(vec![record]));
        }
    }
    let (operand, conds) = conditions(&params)?;
    if conds.is_empty() {
        return Err(AppError::missing(
            "_id (or, across every scenario, a condition such as _customer_number)",
        ));
    }
    caller.require(Role::Backend)?;
    let records = candidates(&state, operand, &conds).await?;
    Ok(answer(
        records
            .into_iter()
            .filter(|r| matches(r, operand, &conds))
            .collect(),
    ))
}

/// Every service a query across scenarios could match, read through the
/// narrowest index its conditions allow: an AND query that names the id,
/// the customer or a state reads only those; any other reads each
/// scenario's services.
async fn candidates(
    state: &AppState,
    operand: Operand,
    conds: &[Condition],
) -> Result<Vec<ServiceRecord>, AppError> {
    let positive = |key: &str| {
        conds
            .iter()
            .find(|c| operand == Operand::And && c.key == key && !c.negate)
    };
    if let Some(c) = positive("_id") {
        check_id("_id", &c.value)?;
        return Ok(state
            .shell
            .find_service(&c.value)
            .await?
            .into_iter()
            .collect());
    }
    if let Some(c) = positive("_customer_number") {
        return Ok(state
            .shell
            .services_by(&IndexKey::Customer(c.value.clone()))
            .await?);
    }
    if let Some(c) = positive("_callback_state") {
        if let Some(s) = ServiceState::from_gms_name(&c.value) {
            return Ok(state.shell.services_by(&IndexKey::State(s)).await?);
        }
    }
    let mut all = Vec::new();
    for scenario in state.shell.scenarios().iter() {
        all.extend(
            state
                .shell
                .services_by(&IndexKey::Scenario(scenario.name.clone()))
                .await?,
        );
    }
    Ok(all)
}

/// DELETE /genesys/1/service/callback/{scenario}/{id}
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Path((scenario, id)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    state.shell.scenario(&scenario)?;
    check_id("id", &id)?;
    let record = state.shell.get(&id).await?;
    if record.scenario != scenario {
        return Err(AppError::NotFound(format!(
            "service `{id}` does not exist in scenario `{scenario}`"
        )));
    }
    let record = state.shell.transition(&id, &Event::Cancel).await?;
    Ok(Json(json!({
        "_id": record.id,
        "_callback_state": record.state.gms_name(),
        "_callback_reason": record.reason_name(),
    })))
}
