//! GMS's `_target` in URS form: one target string, or a list of up to 15
//! targets tried in order, widening (or moving on) after each one's timeout.
//!
//! ```text
//! Billing@StatServer.GA                  the agents who serve queue Billing
//! jane@StatServer.A                      one agent
//! ?:English=20&Loans=2@StatServer.GA     every agent whose skills match
//! [{"target": "Billing@StatServer.GA", "timeout": "30", "clear": false,
//!   "stat_to_check": "RStatAgentsReady", "stat_operator": "<", "stat_value": "1"},
//!  {"target": "?:Loans>=1@StatServer.GA"}]
//! ```
//!
//! A waiting service holds a [`Route`] in its ticket: which step it is on,
//! since when, which steps were skipped, and (computed from the scenario's
//! steps when the step changes) the agent sets that may take it now. The
//! router reads that from the queue entry ([`ActiveRoute`]); the machine
//! moves the step on when the step's timer fires or the router finds the
//! step's stat condition holds. The statistics are taken over the agents
//! the step's target names, at the moment the router looks:
//!
//! - `RStatAgentsTotal`: the agents the target names (callbackd knows the
//!   agents that registered; it has no separate log-in);
//! - `RStatAgentsReady`: those of them who could take an interaction now:
//!   ready, with room for one more (an agent at its limit is busy, as
//!   Stat Server counts an agent on a call);
//! - `RStatAgentsReady<media>` (GMS: `RStatAgentsReadyvoice`, ready for
//!   voice media): the same, since a callbackd agent takes every media its
//!   queues carry.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::skills::SkillExpr;
use crate::store::AgentRecord;

/// GMS's limit (8.5.114.09 and later).
pub const MAX_TARGETS: usize = 15;
/// Longest `timeout` a target may have: a day.
const MAX_TIMEOUT_SECS: i64 = 86_400;

/// The agents a target names. Every field that is set must hold, so a
/// group with skills (the classic `_target = { queue, skills }` under a
/// `_urs_virtual_queue`) is "serves the queue and has the skills".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSet {
    /// Serves this callbackd queue (GMS's agent group, `.GA`).
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Is this agent (`.A`).
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Has these skills (`?:expression`).
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<SkillExpr>,
}

impl AgentSet {
    pub fn group(queue: &str) -> AgentSet {
        AgentSet {
            group: Some(queue.to_owned()),
            agent: None,
            skills: None,
        }
    }

    /// Whether the agent is one this set names (ready or not).
    pub fn contains(&self, agent: &AgentRecord) -> bool {
        self.group
            .as_ref()
            .is_none_or(|g| agent.profile.queues.contains(g))
            && self.agent.as_ref().is_none_or(|a| agent.profile.id == *a)
            && self
                .skills
                .as_ref()
                .is_none_or(|e| e.matches(&agent.profile.skills))
    }

    /// Parses one URS target string: `<name>@<StatServer>.<type>`, where
    /// the type is `GA` (a group of agents: a callbackd queue) or `A` (an
    /// agent), and a name starting `?:` is a skill expression.
    pub fn parse_urs(text: &str) -> Result<AgentSet, String> {
        let text = text.trim();
        let form = "expected <target>@<StatServer>.<type>, e.g. Billing@StatServer.GA";
        let Some((name, at)) = text.rsplit_once('@') else {
            return Err(format!("`{text}`: {form}"));
        };
        let Some((server, kind)) = at.rsplit_once('.') else {
            return Err(format!("`{text}`: {form}"));
        };
        if server.trim().is_empty() {
            return Err(format!("`{text}`: names no Stat Server; {form}"));
        }
        let name = name.trim();
        if let Some(expr) = name.strip_prefix("?:") {
            if kind != "GA" {
                return Err(format!(
                    "`{text}`: a skill expression (`?:`) is a group of agents, so its type is GA"
                ));
            }
            let skills = SkillExpr::parse(expr).map_err(|e| e.to_string())?;
            return Ok(AgentSet {
                group: None,
                agent: None,
                skills: Some(skills),
            });
        }
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "`{text}`: the target's name must be non-empty, without spaces"
            ));
        }
        match kind {
            "GA" => Ok(AgentSet::group(name)),
            "A" => Ok(AgentSet {
                group: None,
                agent: Some(name.to_owned()),
                skills: None,
            }),
            "AP" | "GP" | "GC" => Err(format!(
                "`{text}`: callbackd routes to agents (A) and groups of agents (GA); it has no places or campaign groups ({kind})"
            )),
            other => Err(format!(
                "`{text}`: unknown target type `{other}`; it is A (agent) or GA (group of agents)"
            )),
        }
    }
}

impl fmt::Display for AgentSet {
    /// In URS form (the Stat Server named `StatServer`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.group, &self.agent, &self.skills) {
            (None, Some(agent), None) => write!(f, "{agent}@StatServer.A"),
            (None, None, Some(skills)) => write!(f, "?:{skills}@StatServer.GA"),
            (Some(group), None, None) => write!(f, "{group}@StatServer.GA"),
            (Some(group), None, Some(skills)) => write!(f, "{group}@StatServer.GA [{skills}]"),
            _ => f.write_str("(agents)"),
        }
    }
}

/// A statistic of the agents a target names (`stat_to_check`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Stat {
    AgentsTotal,
    /// Ready with room for one more.
    AgentsReady,
    /// Ready for the named media: the same as [`Stat::AgentsReady`].
    AgentsReadyFor(String),
}

impl TryFrom<String> for Stat {
    type Error = String;

    fn try_from(name: String) -> Result<Stat, String> {
        match name.as_str() {
            "RStatAgentsTotal" => Ok(Stat::AgentsTotal),
            "RStatAgentsReady" => Ok(Stat::AgentsReady),
            _ => match name.strip_prefix("RStatAgentsReady") {
                Some(media)
                    if !media.is_empty() && media.chars().all(|c| c.is_ascii_alphanumeric()) =>
                {
                    Ok(Stat::AgentsReadyFor(media.to_owned()))
                }
                _ => Err(format!(
                    "`{name}` is not a statistic callbackd counts; use RStatAgentsReady, RStatAgentsTotal or RStatAgentsReady<media> (e.g. RStatAgentsReadyvoice)"
                )),
            },
        }
    }
}

impl From<Stat> for String {
    fn from(stat: Stat) -> String {
        match stat {
            Stat::AgentsTotal => "RStatAgentsTotal".into(),
            Stat::AgentsReady => "RStatAgentsReady".into(),
            Stat::AgentsReadyFor(media) => format!("RStatAgentsReady{media}"),
        }
    }
}

/// `stat_operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StatOp {
    Less,
    LessOrEqual,
    Equal,
    NotEqual,
    GreaterOrEqual,
    Greater,
}

impl TryFrom<String> for StatOp {
    type Error = String;

    fn try_from(op: String) -> Result<StatOp, String> {
        Ok(match op.trim() {
            "<" => StatOp::Less,
            "<=" => StatOp::LessOrEqual,
            "=" | "==" => StatOp::Equal,
            "!=" => StatOp::NotEqual,
            ">=" => StatOp::GreaterOrEqual,
            ">" => StatOp::Greater,
            other => {
                return Err(format!(
                    "`{other}` is not an operator; use <, <=, =, !=, >= or >"
                ))
            }
        })
    }
}

impl From<StatOp> for String {
    fn from(op: StatOp) -> String {
        match op {
            StatOp::Less => "<",
            StatOp::LessOrEqual => "<=",
            StatOp::Equal => "=",
            StatOp::NotEqual => "!=",
            StatOp::GreaterOrEqual => ">=",
            StatOp::Greater => ">",
        }
        .into()
    }
}

/// When it holds for a target that is not the last, the target is skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatCondition {
    #[serde(rename = "s")]
    pub stat: Stat,
    #[serde(rename = "o")]
    pub op: StatOp,
    #[serde(rename = "v")]
    pub value: i64,
}

impl StatCondition {
    /// The statistic over the agents `set` names.
    pub fn count(&self, set: &AgentSet, agents: &[AgentRecord]) -> i64 {
        agents
            .iter()
            .filter(|a| set.contains(a))
            .filter(|a| match &self.stat {
                Stat::AgentsTotal => true,
                Stat::AgentsReady | Stat::AgentsReadyFor(_) => a.ready && a.has_room(),
            })
            .count() as i64
    }

    pub fn holds(&self, set: &AgentSet, agents: &[AgentRecord]) -> bool {
        let n = self.count(set, agents);
        match self.op {
            StatOp::Less => n < self.value,
            StatOp::LessOrEqual => n <= self.value,
            StatOp::Equal => n == self.value,
            StatOp::NotEqual => n != self.value,
            StatOp::GreaterOrEqual => n >= self.value,
            StatOp::Greater => n > self.value,
        }
    }
}

impl fmt::Display for StatCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stat: String = self.stat.clone().into();
        let op: String = self.op.into();
        write!(f, "{stat} {op} {}", self.value)
    }
}

/// One target of a scenario's `_target` list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetStep {
    pub target: AgentSet,
    /// How long the service waits on this target before the next; none
    /// waits for ever (the last target's is never used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Moving on replaces the targets so far (true) or adds to them (false).
    pub clear: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_if: Option<StatCondition>,
}

/// A whole number given as a number or as text (the seed quotes them).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(i64),
    Text(String),
}

impl NumberOrText {
    fn number(self, key: &str) -> Result<i64, String> {
        match self {
            NumberOrText::Number(n) => Ok(n),
            NumberOrText::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| format!("{key} `{t}` is not a whole number")),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BoolOrText {
    Bool(bool),
    Text(String),
}

/// One element of the list as written (TOML table or JSON object).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepInput {
    target: String,
    #[serde(default)]
    timeout: Option<NumberOrText>,
    #[serde(default)]
    clear: Option<BoolOrText>,
    #[serde(default)]
    stat_to_check: Option<String>,
    #[serde(default)]
    stat_operator: Option<String>,
    #[serde(default)]
    stat_value: Option<NumberOrText>,
}

impl StepInput {
    fn step(self) -> Result<TargetStep, String> {
        let target = AgentSet::parse_urs(&self.target)?;
        let timeout = match self.timeout {
            None => None,
            Some(t) => {
                let secs = t.number("timeout")?;
                if !(1..=MAX_TIMEOUT_SECS).contains(&secs) {
                    return Err(format!(
                        "timeout {secs} must be between 1 and {MAX_TIMEOUT_SECS} seconds"
                    ));
                }
                Some(Duration::from_secs(secs as u64))
            }
        };
        let clear = match self.clear {
            None => false,
            Some(BoolOrText::Bool(b)) => b,
            Some(BoolOrText::Text(t)) => match t.trim() {
                "true" => true,
                "false" => false,
                other => return Err(format!("clear `{other}` is not true or false")),
            },
        };
        let skip_if = match (self.stat_to_check, self.stat_operator, self.stat_value) {
            (None, None, None) => None,
            (Some(stat), Some(op), Some(value)) => Some(StatCondition {
                stat: Stat::try_from(stat).map_err(|e| format!("stat_to_check: {e}"))?,
                op: StatOp::try_from(op).map_err(|e| format!("stat_operator: {e}"))?,
                value: value.number("stat_value")?,
            }),
            _ => return Err(
                "stat_to_check, stat_operator and stat_value go together: give all three or none"
                    .into(),
            ),
        };
        Ok(TargetStep {
            target,
            timeout,
            clear,
            skip_if,
        })
    }
}

/// The URS forms of `_target`: one target string, the seed's JSON list in a
/// string, or a TOML array of tables with the same keys.
pub fn parse_steps(value: toml::Value) -> Result<Vec<TargetStep>, String> {
    let inputs: Vec<StepInput> = match value {
        toml::Value::String(text) if text.trim_start().starts_with('[') => {
            serde_json::from_str(&text).map_err(|e| format!("the JSON list of targets: {e}"))?
        }
        toml::Value::String(text) => {
            return Ok(vec![TargetStep {
                target: AgentSet::parse_urs(&text)?,
                timeout: None,
                clear: false,
                skip_if: None,
            }])
        }
        toml::Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                item.try_into::<StepInput>()
                    .map_err(|e| format!("target {}: {}", i + 1, e.message()))
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(format!(
                "is a {}; it is a table {{ queue, skills, priority }}, a URS target string, or a list of targets",
                other.type_str()
            ))
        }
    };
    if inputs.is_empty() {
        return Err("the list of targets is empty".into());
    }
    if inputs.len() > MAX_TARGETS {
        return Err(format!(
            "has {} targets; GMS allows at most {MAX_TARGETS}",
            inputs.len()
        ));
    }
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| input.step().map_err(|e| format!("target {}: {e}", i + 1)))
        .collect()
}

/// Where a waiting service stands in its scenario's targets. Kept across a
/// requeue: a customer who went back to the queue keeps the wider target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Index of the current target.
    pub step: usize,
    /// When the current target began (first entering the queue, or the
    /// last move on); none while the service has not queued yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Targets passed over because their stat condition held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<usize>,
    /// The agent sets that may take the service now, the current target's first.
    pub any: Vec<AgentSet>,
    /// The current target's condition, when it can still be skipped (not the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_if: Option<StatCondition>,
}

/// What the router needs of a [`Route`] (kept in the queue entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveRoute {
    #[serde(rename = "n")]
    pub step: usize,
    pub any: Vec<AgentSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_if: Option<StatCondition>,
}

impl ActiveRoute {
    /// Whether `agent` is one of those the service may go to now.
    pub fn admits(&self, agent: &AgentRecord) -> bool {
        self.any.iter().any(|set| set.contains(agent))
    }

    /// Whether the current target is to be skipped, given the agents now.
    pub fn skips(&self, agents: &[AgentRecord]) -> bool {
        match (&self.skip_if, self.any.first()) {
            (Some(condition), Some(current)) => condition.holds(current, agents),
            _ => false,
        }
    }
}

impl Route {
    /// At the first target, not started.
    pub fn start(steps: &[TargetStep]) -> Route {
        let mut route = Route {
            step: 0,
            since: None,
            skipped: Vec::new(),
            any: Vec::new(),
            skip_if: None,
        };
        route.refresh(steps);
        route
    }

    /// Moves on to the next target at `now`; `skipped` when the current one
    /// is passed over for its condition. False at the last target.
    pub fn advance(&mut self, steps: &[TargetStep], skipped: bool, now: DateTime<Utc>) -> bool {
        if self.step + 1 >= steps.len() {
            return false;
        }
        if skipped {
            self.skipped.push(self.step);
        }
        self.step += 1;
        self.since = Some(now);
        self.refresh(steps);
        true
    }

    /// When the current target's time is up; none at the last target, for
    /// one without a timeout, or before the service has queued.
    pub fn due(&self, steps: &[TargetStep]) -> Option<DateTime<Utc>> {
        if self.step + 1 >= steps.len() {
            return None;
        }
        let timeout = steps.get(self.step)?.timeout?;
        let since = self.since?;
        Some(since + chrono::Duration::from_std(timeout).ok()?)
    }

    pub fn active(&self) -> ActiveRoute {
        ActiveRoute {
            step: self.step,
            any: self.any.clone(),
            skip_if: self.skip_if.clone(),
        }
    }

    /// Recomputes the agent sets: the current target, then going back, each
    /// earlier target that was not skipped, up to one that clears (moving
    /// on from a `clear` target replaces it and everything before it).
    fn refresh(&mut self, steps: &[TargetStep]) {
        if steps.is_empty() {
            self.any.clear();
            self.skip_if = None;
            return;
        }
        // A scenario edited while services wait may have fewer targets now.
        self.step = self.step.min(steps.len() - 1);
        let current = &steps[self.step];
        let mut any = vec![current.target.clone()];
        for (i, step) in steps[..self.step].iter().enumerate().rev() {
            if self.skipped.contains(&i) {
                continue;
            }
            if step.clear {
                break;
            }
            if !any.contains(&step.target) {
                any.push(step.target.clone());
            }
        }
        self.any = any;
        self.skip_if = if self.step + 1 < steps.len() {
            current.skip_if.clone()
        } else {
            None
        };
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::TimeZone;

    use super::*;
    use crate::store::AgentProfile;

    fn agent(id: &str, queues: &[&str], skills: &[(&str, u32)], ready: bool) -> AgentRecord {
        AgentRecord {
            profile: AgentProfile {
                id: id.into(),
                name: id.into(),
                queues: queues.iter().map(|q| q.to_string()).collect(),
                skills: skills.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                max_concurrent: 1,
                email: None,
            },
            ready,
            services: BTreeSet::new(),
            last_assigned_at: None,
            room: None,
        }
    }

    fn check_urs(text: &str, expected: Result<&str, &str>) {
        match (AgentSet::parse_urs(text), expected) {
            (Ok(set), Ok(shown)) => assert_eq!(set.to_string(), shown, "{text}"),
            (Err(e), Err(part)) => assert!(e.contains(part), "{text}: {e}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn urs_target_strings() {
        check_urs("Billing@StatServer.GA", Ok("Billing@StatServer.GA"));
        check_urs(" jane@SS_1.A ", Ok("jane@StatServer.A"));
        check_urs(
            "?:English=20&Loans=2@StatServer.GA",
            Ok("?:English=20&Loans=2@StatServer.GA"),
        );
        check_urs("Billing", Err("expected <target>@<StatServer>.<type>"));
        check_urs("Billing@StatServer", Err("expected"));
        check_urs("Billing@.GA", Err("names no Stat Server"));
        check_urs("@StatServer.GA", Err("non-empty"));
        check_urs("Bil ling@StatServer.GA", Err("without spaces"));
        check_urs("Desk1@StatServer.AP", Err("no places"));
        check_urs("Billing@StatServer.Q", Err("unknown target type `Q`"));
        check_urs("?:English>@StatServer.GA", Err("skill expression"));
        check_urs("?:English@StatServer.A", Err("its type is GA"));
    }

    fn steps(toml_value: &str) -> Result<Vec<TargetStep>, String> {
        let table: toml::Table = toml::from_str(&format!("t = {toml_value}")).unwrap();
        parse_steps(table["t"].clone())
    }

    #[test]
    fn the_seeds_json_list_and_the_native_array_mean_the_same() {
        let seed = steps(
            r#"'[{"target": "Billing@StatServer.GA", "timeout": "30", "clear": false, "stat_to_check": "RStatAgentsReady", "stat_operator": "<", "stat_value": "1"}, {"target": "?:Loans>=1@StatServer.GA", "timeout": 60, "clear": true}, {"target": "jane@StatServer.A"}]'"#,
        )
        .unwrap();
        let native = steps(
            r#"[{ target = "Billing@StatServer.GA", timeout = 30, clear = "false", stat_to_check = "RStatAgentsReady", stat_operator = "<", stat_value = 1 }, { target = "?:Loans>=1@StatServer.GA", timeout = "60", clear = true }, { target = "jane@StatServer.A" }]"#,
        )
        .unwrap();
        assert_eq!(seed, native);
        assert_eq!(seed[0].timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            seed[0].skip_if.as_ref().unwrap().to_string(),
            "RStatAgentsReady < 1"
        );
        assert!(seed[1].clear && !seed[0].clear);
        assert_eq!(seed[2].timeout, None);
    }

    #[test]
    fn bad_lists_say_which_target_and_why() {
        let bad = |value: &str, part: &str| {
            let e = steps(value).unwrap_err();
            assert!(e.contains(part), "{value}: {e}");
        };
        bad("'[]'", "empty");
        bad("[]", "empty");
        bad("'[{\"target\": \"Billing@StatServer.GA\"'", "JSON list");
        bad(
            "[{ target = \"A@S.GA\" }, { target = \"B@S.GA\", timeout = \"soon\" }]",
            "target 2: timeout `soon` is not a whole number",
        );
        bad("[{ target = \"A@S.GA\", timeout = 0 }]", "between 1 and");
        bad(
            "[{ target = \"A@S.GA\", clear = \"yes\" }]",
            "clear `yes` is not true or false",
        );
        bad(
            "[{ target = \"A@S.GA\", stat_to_check = \"RStatAgentsReady\" }]",
            "go together",
        );
        bad(
            "[{ target = \"A@S.GA\", stat_to_check = \"RStatCallsWaiting\", stat_operator = \"<\", stat_value = 1 }]",
            "stat_to_check: `RStatCallsWaiting`",
        );
        bad(
            "[{ target = \"A@S.GA\", stat_to_check = \"RStatAgentsReady\", stat_operator = \"~\", stat_value = 1 }]",
            "stat_operator",
        );
        bad(
            "[{ target = \"A@S.GA\", colour = 1 }]",
            "target 1: unknown field `colour`",
        );
        bad("[{ timeout = 3 }]", "missing field `target`");
        bad("3", "is a integer");
        let sixteen: Vec<String> = (0..16)
            .map(|i| format!("{{ target = \"Q{i}@S.GA\" }}"))
            .collect();
        bad(&format!("[{}]", sixteen.join(",")), "at most 15");
    }

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn shown(route: &Route) -> Vec<String> {
        route.any.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_route_widens_or_moves_on_by_each_targets_clear() {
        let list = steps(
            r#"[{ target = "A@S.GA", timeout = 10 }, { target = "B@S.GA", timeout = 20, clear = true }, { target = "C@S.GA", timeout = 5 }, { target = "D@S.GA" }]"#,
        )
        .unwrap();
        let mut route = Route::start(&list);
        assert_eq!(shown(&route), ["A@StatServer.GA"]);
        assert_eq!(route.due(&list), None, "not queued yet");
        route.since = Some(at(0));
        assert_eq!(route.due(&list), Some(at(10)));
        assert!(route.advance(&list, false, at(10)));
        // A does not clear: B widens it.
        assert_eq!(shown(&route), ["B@StatServer.GA", "A@StatServer.GA"]);
        assert_eq!(route.due(&list), Some(at(30)));
        assert!(route.advance(&list, false, at(30)));
        // B clears: C replaces A and B.
        assert_eq!(shown(&route), ["C@StatServer.GA"]);
        assert!(route.advance(&list, false, at(35)));
        assert_eq!(shown(&route), ["D@StatServer.GA", "C@StatServer.GA"]);
        assert_eq!(route.due(&list), None, "the last target waits");
        assert!(!route.advance(&list, false, at(99)));
        assert_eq!(route.step, 3);
    }

    #[test]
    fn a_skipped_target_is_never_among_the_agents() {
        let list = steps(
            r#"[{ target = "A@S.GA", timeout = 10 }, { target = "B@S.GA", timeout = 10, clear = true, stat_to_check = "RStatAgentsReady", stat_operator = "<", stat_value = 1 }, { target = "C@S.GA", stat_to_check = "RStatAgentsReady", stat_operator = "<", stat_value = 1 }]"#,
        )
        .unwrap();
        let mut route = Route::start(&list);
        route.since = Some(at(0));
        assert!(route.active().skip_if.is_none());
        route.advance(&list, false, at(10));
        assert!(route.active().skip_if.is_some());
        route.advance(&list, true, at(12));
        // B was skipped, so its clear did not take A away.
        assert_eq!(shown(&route), ["C@StatServer.GA", "A@StatServer.GA"]);
        assert_eq!(route.skipped, [1]);
        // The last target is never skipped.
        assert!(route.active().skip_if.is_none());
    }

    #[test]
    fn stat_conditions_count_the_targets_agents() {
        let agents = [
            agent("a", &["Billing"], &[("Loans", 2)], true),
            agent("b", &["Billing"], &[], false),
            agent("c", &["Sales"], &[("Loans", 3)], true),
        ];
        let mut busy = agent("d", &["Billing"], &[], true);
        busy.services.insert("x".into());
        let agents = [agents.to_vec(), vec![busy]].concat();
        let billing = AgentSet::parse_urs("Billing@S.GA").unwrap();
        let loans = AgentSet::parse_urs("?:Loans>=2@S.GA").unwrap();
        let jane = AgentSet::parse_urs("b@S.A").unwrap();
        let check = |set: &AgentSet, stat: &str, expected: i64| {
            let condition = StatCondition {
                stat: Stat::try_from(stat.to_owned()).unwrap(),
                op: StatOp::Less,
                value: 1,
            };
            assert_eq!(condition.count(set, &agents), expected, "{set} {stat}");
        };
        check(&billing, "RStatAgentsTotal", 3);
        // d is ready but at its limit: busy.
        check(&billing, "RStatAgentsReady", 1);
        check(&billing, "RStatAgentsReadyvoice", 1);
        check(&loans, "RStatAgentsReady", 2);
        check(&jane, "RStatAgentsTotal", 1);
        check(&jane, "RStatAgentsReady", 0);
        let none_ready = StatCondition {
            stat: Stat::AgentsReady,
            op: StatOp::Less,
            value: 1,
        };
        assert!(none_ready.holds(&jane, &agents));
        assert!(!none_ready.holds(&billing, &agents));
    }
}
