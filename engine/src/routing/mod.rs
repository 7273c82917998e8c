//! Routing: which ready agent gets which waiting service.
//!
//! [`plan`] is pure: given the queues and the agents, it proposes pairs. The
//! shell turns each pair into an `AgentReserved` event, and the store refuses
//! any reservation that would break an agent's limit, so a stale plan can
//! lose a race but never over-assign.

pub mod skills;

use std::collections::HashMap;

use crate::store::{AgentRecord, QueueEntry};
use skills::SkillExpr;

/// A proposed reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub service: String,
    pub agent: String,
}

/// Matches waiting services to agents: higher priority first, then oldest,
/// across all queues; each goes to the eligible agent with the most spare
/// room, then the one idle longest. No agent gets more than its limit.
pub fn plan(queues: &[(String, Vec<QueueEntry>)], agents: &[AgentRecord]) -> Vec<Assignment> {
    let mut waiting: Vec<(&str, &QueueEntry)> = queues
        .iter()
        .flat_map(|(q, entries)| entries.iter().map(move |e| (q.as_str(), e)))
        .collect();
    waiting.sort_by_key(|(_, e)| e.order_key());

    let mut load: HashMap<&str, usize> = agents
        .iter()
        .map(|a| (a.profile.id.as_str(), a.services.len()))
        .collect();
    let mut parsed: HashMap<&str, Option<SkillExpr>> = HashMap::new();
    let mut out = Vec::new();
    for (queue, entry) in waiting {
        if !agents
            .iter()
            .any(|a| a.ready && load[a.profile.id.as_str()] < a.profile.max_concurrent as usize)
        {
            break;
        }
        let expr = match &entry.skills {
            None => None,
            Some(text) => match parsed
                .entry(text.as_str())
                .or_insert_with(|| SkillExpr::parse(text).ok())
            {
                Some(expr) => Some(&*expr),
                // An expression that no longer parses matches nobody.
                None => continue,
            },
        };
        let chosen = agents
            .iter()
            .filter(|a| a.ready && a.profile.queues.contains(queue))
            .filter(|a| load[a.profile.id.as_str()] < a.profile.max_concurrent as usize)
            .filter(|a| expr.is_none_or(|e| e.matches(&a.profile.skills)))
            .min_by_key(|a| {
                let used = load[a.profile.id.as_str()];
                // Fraction of capacity in use, compared without floats.
                let used_per_mille = used * 1000 / (a.profile.max_concurrent.max(1) as usize);
                (used_per_mille, a.last_assigned_at, a.profile.id.clone())
            });
        if let Some(agent) = chosen {
            *load
                .get_mut(agent.profile.id.as_str())
                .expect("every agent has a load") += 1;
            out.push(Assignment {
                service: entry.id.clone(),
                agent: agent.profile.id.clone(),
            });
        }
    }
    out
}
