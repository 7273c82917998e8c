//! Who is calling, and whether they may.
//!
//! A route group says the least it needs ([`Need`]) and [`gate`] checks it
//! before the handler runs: it reads the credential the request presents
//! (`access::from_headers`), checks it once (`access::Verifier`, a minted
//! key against its stored entry), and leaves the [`Caller`] in the
//! request's extensions. Handlers that act on one object (a service, an
//! agent) ask the caller about that object ([`Caller::for_service`],
//! [`Caller::for_agent`]).
//!
//! With no credentials configured the server runs open (the CLI allows
//! that on loopback only) and every caller is [`Principal::open`].

use std::sync::Arc;

use access::{Checked, Presented, Principal, Role, StoredKey, Verifier};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use engine::record::ServiceRecord;
use engine::store::AgentKey;

use crate::error::AppError;
use crate::AppState;

/// How this server checks callers.
pub struct Access {
    /// `None`: open, no credentials configured.
    verifier: Option<Arc<Verifier>>,
    /// The role of a caller without a credential (`[anonymous]`), if any.
    anonymous: Option<Role>,
}

impl Access {
    pub fn open() -> Access {
        Access {
            verifier: None,
            anonymous: None,
        }
    }

    pub fn with(credentials: access::Credentials) -> Access {
        Access {
            anonymous: credentials.anonymous,
            verifier: Some(Arc::new(Verifier::new(credentials))),
        }
    }

    pub fn is_open(&self) -> bool {
        self.verifier.is_none()
    }
}

/// What a route group needs of its caller.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// This role or one above it on the client < backend < supervisor <
    /// admin ladder (an agent is not on it).
    AtLeast(Role),
    /// An agent (each handler then checks it is that agent's own thing),
    /// or a supervisor or admin.
    Staff,
}

impl Need {
    fn allows(self, who: &Principal) -> bool {
        match self {
            Need::AtLeast(role) => who.may(role),
            Need::Staff => who.role == Role::Agent || who.may(Role::Supervisor),
        }
    }
}

/// The checked caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// An agent may act on the services it holds or is offered; staff
    /// above agents on any.
    pub fn for_service(&self, record: &ServiceRecord) -> Result<(), AppError> {
        let who = &self.0;
        let holds = |agent: &str| {
            record.agent.as_deref() == Some(agent)
                || record
                    .video
                    .as_ref()
                    .and_then(|v| v.agent.as_deref())
                    .is_some_and(|a| a == agent)
        };
        match (&who.role, &who.agent) {
            (Role::Agent, Some(agent)) if holds(agent) => Ok(()),
            (Role::Agent, _) => Err(AppError::Forbidden(format!(
                "{}: service {} is not offered to or held by this agent",
                who.name, record.id
            ))),
            _ if who.may(Role::Supervisor) => Ok(()),
            _ => Err(forbidden(who, "act on a service through the agent API")),
        }
    }

    /// [`Caller::for_service`] for service `id`. An agent's check needs
    /// the record: it is handed back, so the handler acts on it without a
    /// second read. Staff above agents may act on any service: no read,
    /// `None`.
    pub async fn checked_service(
        &self,
        state: &AppState,
        id: &str,
    ) -> Result<Option<ServiceRecord>, AppError> {
        if self.0.may(Role::Supervisor) {
            return Ok(None);
        }
        let record = state.shell.get(id).await?;
        self.for_service(&record)?;
        Ok(Some(record))
    }

    /// That agent itself, or a supervisor or admin.
    pub fn for_agent(&self, agent: &str) -> Result<(), AppError> {
        if self.0.may_act_for_agent(agent) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "{}: may not act for agent {agent}",
                self.0.name
            )))
        }
    }

    pub fn require(&self, role: Role) -> Result<(), AppError> {
        if self.0.may(role) {
            Ok(())
        } else {
            Err(forbidden(&self.0, &format!("do what needs role {role}")))
        }
    }
}

fn forbidden(who: &Principal, what: &str) -> AppError {
    AppError::Forbidden(format!("{} (role {}) may not {what}", who.name, who.role))
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Every route that names a Caller sits behind `gate`; a route that
        // forgot it fails closed.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| AppError::Internal("the route checks no credential".into()))
    }
}

/// The middleware of a route group: who calls, and may they.
pub async fn gate(
    State((state, need)): State<(Arc<AppState>, Need)>,
    mut req: Request,
    next: Next,
) -> Response {
    let bare = matches!(presented_headers(req.headers()), Ok((None, None)));
    let who = match identify(&state, req.headers()).await {
        Ok(who) => who,
        Err(e) => return e.into_response(),
    };
    tracing::Span::current().record("credential", who.name.as_str());
    if !need.allows(&who) && bare && !state.access.is_open() {
        // A caller without a credential (let in as `[anonymous]`) is asked
        // for one, rather than told its anonymous role may not.
        return AppError::Unauthorized("this route needs a credential".into()).into_response();
    }
    if !need.allows(&who) {
        let what = match need {
            Need::AtLeast(role) => format!("call this route (it needs role {role})"),
            Need::Staff => "call the agent API".to_owned(),
        };
        return forbidden(&who, &what).into_response();
    }
    let cause = cause(&who, need, state.access.is_open());
    req.extensions_mut().insert(Caller(who));
    // Every transition the request makes names its cause in the history.
    runtime::cause::with_cause(cause, next.run(req)).await
}

/// What a supervisor's or admin's transitions name, as [`gate`] set it:
/// for a handler that adds to it (the reason of a bulk cancel).
pub fn staff_cause(state: &AppState, caller: &Caller) -> String {
    cause(
        &caller.0,
        Need::AtLeast(Role::Supervisor),
        state.access.is_open(),
    )
}

/// Who a request's transitions name: the customer (through the app's
/// credential), an agent, or a staff credential. Open, with no credential
/// to name, the route says which side called.
fn cause(who: &Principal, need: Need, open: bool) -> String {
    match (who.role, &who.agent) {
        _ if open => match need {
            Need::AtLeast(Role::Client | Role::Backend) => "customer".to_owned(),
            _ => "staff".to_owned(),
        },
        (Role::Agent, Some(agent)) => format!("agent {agent} ({})", who.name),
        (Role::Client | Role::Backend, _) => format!("customer ({})", who.name),
        _ => who.name.clone(),
    }
}

/// Checks the credential the headers present.
pub async fn identify(state: &AppState, headers: &HeaderMap) -> Result<Principal, AppError> {
    if state.access.is_open() {
        return Ok(Principal::open());
    }
    let (authorization, api_key) = presented_headers(headers)?;
    if let (None, None, Some(role)) = (authorization, api_key, state.access.anonymous) {
        // `[anonymous]`: the customer pages' calls, which carry nothing.
        return Ok(Principal {
            name: "anonymous".to_owned(),
            role,
            agent: None,
        });
    }
    identify_values(state, authorization, api_key).await
}

/// The credential headers' values, if any, as text.
pub fn presented_headers(headers: &HeaderMap) -> Result<(Option<&str>, Option<&str>), AppError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map_err(|_| AppError::Unauthorized(format!("{name}: is not visible ASCII")))
            })
            .transpose()
    };
    Ok((header("authorization")?, header("x-api-key")?))
}

/// Checks a credential given as the values of the `Authorization` and
/// `x-api-key` headers, wherever they came from (the headers, a CometD
/// handshake's `ext`, a WebSocket's first frame).
pub async fn identify_values(
    state: &AppState,
    authorization: Option<&str>,
    api_key: Option<&str>,
) -> Result<Principal, AppError> {
    let Some(verifier) = &state.access.verifier else {
        return Ok(Principal::open());
    };
    let presented = access::from_headers(authorization, api_key)
        .map_err(|e| AppError::Unauthorized(e.to_string()))?
        .ok_or_else(|| {
            AppError::Unauthorized(
                "a credential is required: Authorization (Basic or Bearer) or x-api-key".into(),
            )
        })?;
    let checked = check(verifier, presented).await?;
    match checked {
        Checked::Principal(who) => Ok(who),
        Checked::NeedsStoredKey(key) => {
            let stored = state.shell.agent_key(&key.id).await?.map(stored_key);
            verifier
                .check_minted(&key, stored.as_ref())
                .map_err(|e| AppError::Unauthorized(e.to_string()))
        }
    }
}

/// Runs a check that needs the slow password hash on the blocking pool, so
/// the runtime's threads keep serving meanwhile.
async fn check(verifier: &Arc<Verifier>, presented: Presented) -> Result<Checked, AppError> {
    let unauthorized = |e: access::AuthError| AppError::Unauthorized(e.to_string());
    if let Some(verdict) = verifier.remembered(&presented) {
        return verdict.map(Checked::Principal).map_err(unauthorized);
    }
    if !matches!(presented, Presented::File { .. }) {
        // A minted key or a JWT: no password hash to run.
        return verifier.check(&presented).map_err(unauthorized);
    }
    let verifier = verifier.clone();
    tokio::task::spawn_blocking(move || verifier.check(&presented))
        .await
        .map_err(|e| AppError::Internal(format!("credential check: {e}")))?
        .map_err(unauthorized)
}

fn stored_key(key: AgentKey) -> StoredKey {
    StoredKey {
        id: key.id,
        agent: key.agent,
        name: key.name,
        secret_sha256: key.secret_sha256,
    }
}
