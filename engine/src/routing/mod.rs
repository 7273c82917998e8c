//! Routing: which ready agent gets which waiting service.
//!
//! [`plan`] is pure: given the queues and the agents, it proposes pairs. The
//! shell turns each pair into an `AgentReserved` event, and the store refuses
//! any reservation that would break an agent's limit, so a stale plan can
//! lose a race but never over-assign.

pub mod skills;
pub mod target;

use std::collections::HashMap;

use crate::store::{AgentRecord, QueueEntry};
use skills::SkillExpr;

/// A waiting service whose current URS target is to be skipped: its
/// `stat_to_check` condition holds over the agents now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub service: String,
    /// The target the condition was checked on (0-based).
    pub step: usize,
}

/// The services whose current URS target's condition holds, so the router
/// moves them on before planning. The statistics are the agents' now.
pub fn skips(queues: &[(String, Vec<QueueEntry>)], agents: &[AgentRecord]) -> Vec<Skip> {
    queues
        .iter()
        .flat_map(|(_, entries)| entries)
        .filter_map(|e| {
            let route = e.route.as_ref()?;
            route.skips(agents).then(|| Skip {
                service: e.id.clone(),
                step: route.step,
            })
        })
        .collect()
}

/// A proposed reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub service: String,
    pub agent: String,
}

/// Matches waiting services to agents: higher priority first, then oldest,
/// across all queues; each goes to the eligible agent with the most spare
/// room, then the one idle longest. No agent gets more than its limit.
///
/// An agent is eligible when it is ready, has room and serves the queue
/// (for a service routed by URS targets: is among the agents its current
/// targets name, whatever queue it is counted under).
/// A service with a preferred agent goes to that agent or to nobody (its
/// skills are not checked: the agent was chosen by name). A video service
/// does not go to an agent already in another service's video room, nor
/// to one this plan already gave a video service (taking it puts the agent
/// in its room, and the store would refuse the second).
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
    // Agent -> the service whose video room it is in (or will be, once
    // this plan's video reservations are made).
    let mut in_room: HashMap<&str, &str> = agents
        .iter()
        .filter_map(|a| Some((a.profile.id.as_str(), a.room.as_deref()?)))
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
        let eligible = |a: &&AgentRecord| {
            let id = a.profile.id.as_str();
            a.ready
                && entry
                    .route
                    .as_ref()
                    .map_or_else(|| a.profile.queues.contains(queue), |r| r.admits(a))
                && load[id] < a.profile.max_concurrent as usize
                && !(entry.video && in_room.get(id).is_some_and(|s| *s != entry.id))
                && !entry.declined.iter().any(|d| d == id)
        };
        let chosen = match &entry.preferred_agent {
            Some(preferred) => agents
                .iter()
                .find(|a| a.profile.id == *preferred)
                .filter(eligible),
            None => {
                let expr = match &entry.skills {
                    // A route's targets carry their own skills.
                    _ if entry.route.is_some() => None,
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
                agents
                    .iter()
                    .filter(eligible)
                    .filter(|a| expr.is_none_or(|e| e.matches(&a.profile.skills)))
                    .min_by_key(|a| {
                        let used = load[a.profile.id.as_str()];
                        // Fraction of capacity in use, compared without floats.
                        let used_per_mille =
                            used * 1000 / (a.profile.max_concurrent.max(1) as usize);
                        (used_per_mille, a.last_assigned_at, a.profile.id.clone())
                    })
            }
        };
        if let Some(agent) = chosen {
            *load
                .get_mut(agent.profile.id.as_str())
                .expect("every agent has a load") += 1;
            if entry.video {
                in_room.insert(agent.profile.id.as_str(), entry.id.as_str());
            }
            out.push(Assignment {
                service: entry.id.clone(),
                agent: agent.profile.id.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::store::AgentProfile;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn agent(id: &str, queues: &[&str], max: u32, skills: &[(&str, u32)]) -> AgentRecord {
        AgentRecord {
            profile: AgentProfile {
                id: id.into(),
                name: id.into(),
                queues: queues.iter().map(|q| q.to_string()).collect(),
                skills: skills.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                max_concurrent: max,
                email: None,
            },
            ready: true,
            services: BTreeSet::new(),
            last_assigned_at: None,
            room: None,
        }
    }

    fn entry(id: &str, since: i64) -> QueueEntry {
        QueueEntry {
            id: id.into(),
            priority: 0,
            since: at(since),
            skills: None,
            preferred_agent: None,
            video: false,
            declined: Vec::new(),
            route: None,
        }
    }

    fn routed(id: &str, since: i64, targets: &[&str]) -> QueueEntry {
        use target::{ActiveRoute, AgentSet};
        QueueEntry {
            route: Some(ActiveRoute {
                step: 0,
                any: targets
                    .iter()
                    .map(|t| AgentSet::parse_urs(t).unwrap())
                    .collect(),
                skip_if: None,
            }),
            ..entry(id, since)
        }
    }

    fn preferring(id: &str, since: i64, agent: &str) -> QueueEntry {
        QueueEntry {
            preferred_agent: Some(agent.into()),
            ..entry(id, since)
        }
    }

    fn video(id: &str, since: i64) -> QueueEntry {
        QueueEntry {
            video: true,
            ..entry(id, since)
        }
    }

    fn support(entries: Vec<QueueEntry>) -> Vec<(String, Vec<QueueEntry>)> {
        vec![("support".to_owned(), entries)]
    }

    fn pairs(plan: Vec<Assignment>) -> Vec<(String, String)> {
        plan.into_iter().map(|a| (a.service, a.agent)).collect()
    }

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(s, a)| (s.to_string(), a.to_string()))
            .collect()
    }

    #[test]
    fn plain_entries_go_to_the_least_loaded_agent() {
        let mut busy = agent("busy", &["support"], 2, &[]);
        busy.services.insert("x".into());
        let agents = [busy, agent("free", &["support"], 2, &[])];
        let plan = plan(&support(vec![entry("a", 0), entry("b", 1)]), &agents);
        assert_eq!(pairs(plan), p(&[("a", "free"), ("b", "busy")]));
    }

    #[test]
    fn an_agent_who_declined_a_service_is_never_offered_it_again() {
        // "free" would win on load; it rejected "a", so "a" goes to "busy"
        // and "free" takes the next one.
        let mut busy = agent("busy", &["support"], 2, &[]);
        busy.services.insert("x".into());
        let agents = [busy, agent("free", &["support"], 2, &[])];
        let declined = QueueEntry {
            declined: vec!["free".into()],
            ..entry("a", 0)
        };
        let plan = plan(&support(vec![declined, entry("b", 1)]), &agents);
        assert_eq!(pairs(plan), p(&[("a", "busy"), ("b", "free")]));
        // Declined by everyone who could take it: it waits.
        let alone = [agent("free", &["support"], 2, &[])];
        let declined = QueueEntry {
            declined: vec!["free".into()],
            ..entry("a", 0)
        };
        assert_eq!(pairs(plan_for(&alone, declined)), p(&[]));
    }

    fn plan_for(agents: &[AgentRecord], e: QueueEntry) -> Vec<Assignment> {
        plan(&support(vec![e]), agents)
    }

    #[test]
    fn a_preferred_agent_gets_its_service_and_nobody_else_does() {
        // "free" would win on load and idle time; "pref" was chosen by name,
        // and lacks the skill the entry asks for.
        let mut pref = agent("pref", &["support"], 3, &[]);
        pref.services.insert("x".into());
        pref.last_assigned_at = Some(at(100));
        let agents = [agent("free", &["support"], 3, &[("video", 5)]), pref];
        let mut a = preferring("a", 0, "pref");
        a.skills = Some("video >= 5".into());
        let plan = plan(&support(vec![a, entry("b", 1)]), &agents);
        assert_eq!(pairs(plan), p(&[("a", "pref"), ("b", "free")]));
    }

    #[test]
    fn a_preferred_agent_that_cannot_take_it_leaves_it_waiting() {
        let others = agent("other", &["support"], 5, &[]);
        let waiting = |pref: AgentRecord| {
            let agents = [others.clone(), pref];
            let queues = support(vec![preferring("a", 0, "pref"), entry("b", 1)]);
            // b, behind a, still goes to someone.
            assert_eq!(pairs(plan(&queues, &agents)), p(&[("b", "other")]));
        };
        // Not ready.
        let mut pref = agent("pref", &["support"], 1, &[]);
        pref.ready = false;
        waiting(pref);
        // Full.
        let mut pref = agent("pref", &["support"], 1, &[]);
        pref.services.insert("x".into());
        waiting(pref);
        // Does not serve the queue.
        waiting(agent("pref", &["sales"], 1, &[]));
        // Unknown to the store.
        waiting(agent("someone-else", &["sales"], 1, &[]));
    }

    #[test]
    fn a_preferred_agent_takes_one_service_per_free_seat() {
        let agents = [
            agent("pref", &["support"], 1, &[]),
            agent("other", &["support"], 1, &[]),
        ];
        let queues = support(vec![preferring("a", 0, "pref"), preferring("b", 1, "pref")]);
        assert_eq!(pairs(plan(&queues, &agents)), p(&[("a", "pref")]));
    }

    #[test]
    fn video_skips_agents_in_a_room() {
        let mut roomed = agent("roomed", &["support"], 5, &[]);
        roomed.room = Some("x".into());
        roomed.services.insert("x".into());
        let mut busy = agent("busy", &["support"], 5, &[]);
        busy.services = ["y".to_owned(), "z".to_owned()].into();
        let agents = [roomed, busy];
        // The video goes to the busier agent that is not in a room; a chat
        // may still go to the agent in a room.
        let queues = support(vec![video("v", 0), entry("c", 1)]);
        assert_eq!(
            pairs(plan(&queues, &agents)),
            p(&[("v", "busy"), ("c", "roomed")])
        );
    }

    #[test]
    fn video_waits_when_every_agent_is_in_a_room() {
        let mut a1 = agent("a1", &["support"], 5, &[]);
        a1.room = Some("x".into());
        let mut a2 = agent("a2", &["support"], 5, &[]);
        a2.room = Some("y".into());
        let pv = QueueEntry {
            video: true,
            ..preferring("pv", 1, "a1")
        };
        let queues = support(vec![video("v", 0), pv]);
        assert!(plan(&queues, &[a1, a2]).is_empty());
    }

    #[test]
    fn one_plan_puts_an_agent_in_one_room() {
        let agents = [
            agent("a1", &["support"], 5, &[]),
            agent("a2", &["support"], 5, &[]),
        ];
        let queues = support(vec![video("v1", 0), video("v2", 1), video("v3", 2)]);
        assert_eq!(
            pairs(plan(&queues, &agents)),
            p(&[("v1", "a1"), ("v2", "a2")])
        );
    }

    #[test]
    fn an_agent_already_in_this_services_room_may_take_it() {
        let mut a1 = agent("a1", &["support"], 5, &[]);
        a1.room = Some("v".into());
        assert_eq!(
            pairs(plan(&support(vec![video("v", 0)]), &[a1])),
            p(&[("v", "a1")])
        );
    }

    #[test]
    fn skills_still_decide_without_a_preference() {
        let agents = [
            agent("en", &["support"], 1, &[("English", 5)]),
            agent("de", &["support"], 1, &[("German", 5)]),
        ];
        let mut a = entry("a", 0);
        a.skills = Some("German >= 3".into());
        let mut bad = entry("bad", 1);
        bad.skills = Some("((".into());
        assert_eq!(
            pairs(plan(&support(vec![a, bad, entry("c", 2)]), &agents)),
            p(&[("a", "de"), ("c", "en")])
        );
    }

    #[test]
    fn a_routed_service_goes_to_the_agents_its_targets_name() {
        // Counted under "vq", which no agent serves: its targets decide.
        let agents = [
            agent("billing", &["Billing"], 1, &[]),
            agent("loans", &["Sales"], 1, &[("Loans", 3)]),
            agent("jane", &["Sales"], 1, &[]),
            agent("idle", &["vq"], 1, &[]),
        ];
        let queues = vec![(
            "vq".to_owned(),
            vec![
                routed("a", 0, &["jane@S.A"]),
                routed("b", 1, &["?:Loans>=2@S.GA"]),
                routed("c", 2, &["Billing@S.GA", "?:Loans>=2@S.GA"]),
                routed("d", 3, &["Nobody@S.GA"]),
                entry("e", 4),
            ],
        )];
        assert_eq!(
            pairs(plan(&queues, &agents)),
            p(&[
                ("a", "jane"),
                ("b", "loans"),
                ("c", "billing"),
                ("e", "idle")
            ])
        );
    }

    #[test]
    fn skips_are_the_entries_whose_condition_holds() {
        use target::{Stat, StatCondition, StatOp};
        let mut nobody_ready = routed("a", 0, &["Billing@S.GA"]);
        let mut some_ready = routed("b", 1, &["Sales@S.GA"]);
        let condition = StatCondition {
            stat: Stat::AgentsReady,
            op: StatOp::Less,
            value: 1,
        };
        for e in [&mut nobody_ready, &mut some_ready] {
            e.route.as_mut().unwrap().skip_if = Some(condition.clone());
        }
        let mut away = agent("away", &["Billing"], 1, &[]);
        away.ready = false;
        let agents = [away, agent("sales", &["Sales"], 1, &[])];
        let queues = support(vec![
            nobody_ready,
            some_ready,
            routed("c", 2, &["Billing@S.GA"]),
        ]);
        assert_eq!(
            skips(&queues, &agents),
            [Skip {
                service: "a".into(),
                step: 0
            }]
        );
    }
}
