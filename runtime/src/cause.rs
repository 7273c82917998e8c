//! Who caused what the shell does while serving one request, for the
//! record's history.
//!
//! The front sets it once, where it checks the caller, around the whole
//! request ([`with_cause`]); every create and transition the request makes
//! reads it, so no handler passes it along by hand. The router and the
//! timer loop run outside any request: their events name themselves
//! (`router`, `timer <kind>`).

use std::future::Future;

tokio::task_local! {
    static CAUSE: String;
}

/// Runs `work` with `cause` as what causes its transitions.
pub async fn with_cause<F: Future>(cause: String, work: F) -> F::Output {
    CAUSE.scope(cause, work).await
}

/// The cause set around the current request, if any.
pub(crate) fn current() -> Option<String> {
    CAUSE.try_with(Clone::clone).ok()
}
