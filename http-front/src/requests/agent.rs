//! PUT /api/v1/agents/{agent_id}: an agent's profile.

use std::collections::{BTreeMap, BTreeSet};

use engine::routing::skills::SkillExpr;
use engine::store::AgentProfile;
use serde::Deserialize;

use super::fields::fits;
use crate::error::AppError;

/// Most services one agent may be asked to handle at once.
const MAX_CONCURRENT: u32 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentBody {
    name: String,
    queues: Vec<String>,
    #[serde(default)]
    skills: BTreeMap<String, u32>,
    max_concurrent: u32,
    /// Gets the calendar invites of booked appointments in the agent's queues.
    #[serde(default)]
    email: Option<String>,
}

impl AgentBody {
    /// The profile of agent `id` (already checked), or the first field that is wrong.
    pub fn into_profile(self, id: String) -> Result<AgentProfile, AppError> {
        if self.name.trim().is_empty() || !fits(&self.name, 128) {
            return Err(AppError::field("name", "must be 1 to 128 characters"));
        }
        if self.queues.is_empty() {
            return Err(AppError::field("queues", "must name at least one queue"));
        }
        if let Some(bad) = self
            .queues
            .iter()
            .find(|q| q.trim().is_empty() || !fits(q, 128))
        {
            return Err(AppError::field(
                "queues",
                format!("`{bad}` is not a queue name (1 to 128 characters)"),
            ));
        }
        if let Some(bad) = self
            .skills
            .keys()
            .find(|k| SkillExpr::parse(k).is_err() || k.contains(' '))
        {
            return Err(AppError::field(
                "skills",
                format!("`{bad}` is not a skill name (letters, digits, '_', '.', '-')"),
            ));
        }
        if self.max_concurrent == 0 || self.max_concurrent > MAX_CONCURRENT {
            return Err(AppError::field(
                "max_concurrent",
                format!("must be 1 to {MAX_CONCURRENT}"),
            ));
        }
        let email = self
            .email
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty());
        if let Some(e) = &email {
            check_email(e)?;
        }
        Ok(AgentProfile {
            id,
            name: self.name.trim().to_owned(),
            queues: self.queues.into_iter().collect::<BTreeSet<_>>(),
            skills: self.skills,
            max_concurrent: self.max_concurrent,
            email,
        })
    }
}

/// A plausible address: `local@domain.tld`, no spaces. Its 254 is the
/// SMTP limit, which counts octets.
fn check_email(e: &str) -> Result<(), AppError> {
    let (local, domain) = e.split_once('@').unwrap_or(("", ""));
    if e.len() > 254
        || local.is_empty()
        || !domain.contains('.')
        || e.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(AppError::field(
            "email",
            format!("`{e}` is not an e-mail address"),
        ));
    }
    Ok(())
}
