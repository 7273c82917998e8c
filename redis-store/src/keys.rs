//! Key names: every key and channel the Rust side reads or writes is built
//! here, so the layout (docs/storage.md, "Redis key layout") can be checked
//! against one file.
//!
//! Every name starts with the prefix `{<namespace>}:`. The braces are the
//! Redis Cluster hash tag, so all of a deployment's keys share one slot and
//! a script never crosses slots.
//!
//! The Lua scripts (`scripts.rs`) build the same names from the prefix they
//! are handed (`P .. 'svc:' .. id`, …), because a script may only reach keys
//! it can name. The two must agree; the test below pins the Rust side to the
//! documented layout.

use engine::record::ServiceState;
use engine::stats::SampleKind;

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Keys {
        Keys {
            prefix: format!("{{{namespace}}}:"),
        }
    }

    /// `{ns}:`, handed to the scripts (their `P`) so they can name the
    /// derived keys themselves.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The prefix and `parts`, in one allocation (a key is built for
    /// every call; `format!` twice over cost about 1,500 instructions).
    fn key(&self, parts: &[&str]) -> String {
        let len = self.prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut key = String::with_capacity(len);
        key.push_str(&self.prefix);
        parts.iter().for_each(|p| key.push_str(p));
        key
    }

    /// A service's record.
    pub fn svc(&self, id: &str) -> String {
        self.key(&["svc:", id])
    }

    /// Hash: id → what the service's last write derived.
    pub fn idx(&self) -> String {
        self.key(&["idx"])
    }

    /// Hash: customer number → `id,id,…`, or `*` when they moved to
    /// [`Keys::customer_set`].
    pub fn customers(&self) -> String {
        self.key(&["cust"])
    }

    /// Set: the ids of a customer number with many services.
    pub fn customer_set(&self, number: &str) -> String {
        self.key(&["cust:", number])
    }

    /// Hash: device → its waiting services ("id,id", or "*" for the set
    /// `qdev:<device>` of a device with many), for the positions pushed to
    /// devices. Kept by the scripts only.
    pub fn waiting_devices(&self) -> String {
        self.key(&["qdev"])
    }

    /// Set: the ids in one state of one scenario.
    pub fn services(&self, state: ServiceState, scenario: &str) -> String {
        self.key(&["ids:", state_name(state), ":", scenario])
    }

    /// Hash: `od`, `oa` → the notifications waiting in the devices' and
    /// the agents' outboxes of active services. Kept by the scripts only.
    pub fn outboxes(&self) -> String {
        self.key(&["outboxes"])
    }

    /// Set: the names of the scenarios that have (or had) stored services.
    pub fn scenarios(&self) -> String {
        self.key(&["scenarios"])
    }

    /// Set: the names of queues with waiting services.
    pub fn queues(&self) -> String {
        self.key(&["queues"])
    }

    /// Zset (all scores 0): a queue's members in routing order.
    pub fn queue(&self, queue: &str) -> String {
        self.key(&["queue:", queue])
    }

    /// Zset: timer members scored by due time (or lease end while claimed).
    pub fn timers(&self) -> String {
        self.key(&["timers"])
    }

    /// Zset: ids scored by storage deadline, for the purge.
    pub fn deadlines(&self) -> String {
        self.key(&["deadlines"])
    }

    /// Hash: queue → the summed `max_concurrent` of its ready agents,
    /// kept by the agent scripts (the EWT's input).
    pub fn capacity(&self) -> String {
        self.key(&["capacity"])
    }

    /// Set: agent ids.
    pub fn agents(&self) -> String {
        self.key(&["agents"])
    }

    /// Hash: an agent's profile, limit, readiness and last assignment.
    pub fn agent(&self, id: &str) -> String {
        self.key(&["agent:", id])
    }

    /// Set: the services counted in an agent's load.
    pub fn agent_services(&self, id: &str) -> String {
        self.key(&["agent:", id, ":svc"])
    }

    /// List: a queue's last samples of one kind, newest first.
    pub fn stats(&self, queue: &str, kind: SampleKind) -> String {
        self.key(&["stats:", queue, ":", sample_kind(kind)])
    }

    /// Hash: a queue's sample counts and sums, `<kind>:n` and `<kind>:sum`
    /// (`add_sample` writes them with the lists).
    pub fn stats_sums(&self, queue: &str) -> String {
        self.key(&["stats:", queue, ":sums"])
    }

    /// Hash: a scenario's slot start ms → seats taken.
    pub fn seats(&self, scenario: &str) -> String {
        self.key(&["seats:", scenario])
    }

    /// Hash: room code → the service whose latest room has it.
    pub fn rooms(&self) -> String {
        self.key(&["rooms"])
    }

    /// Hash: agent id → the service whose live room the agent is in.
    pub fn room_agents(&self) -> String {
        self.key(&["roomagents"])
    }

    /// String: a minted agent key's entry (JSON), by key id.
    pub fn agent_key(&self, id: &str) -> String {
        self.key(&["key:", id])
    }

    /// Hash: an agent's key names → key ids.
    pub fn agent_keys(&self, agent: &str) -> String {
        self.key(&["agentkeys:", agent])
    }

    /// Hash: a quota's count (`c`) and window end (`e`, ms).
    pub fn quota(&self, key: &str) -> String {
        self.key(&["quota:", key])
    }

    /// String: an idempotency key's claim or answer.
    pub fn idempotency(&self, key: &str) -> String {
        self.key(&["idem:", key])
    }

    /// List: recent webhook attempts (JSON), newest first.
    pub fn webhook_attempts(&self) -> String {
        self.key(&["webhooks:attempts"])
    }

    /// Pub/sub channel: "a timer was armed that is due soon, and is now the
    /// earliest" (published by the `put` and `create` scripts).
    pub fn wake(&self) -> String {
        self.key(&["wake"])
    }

    /// Pub/sub channel `name` of the namespace, for other crates' messages
    /// (the push relay's `push`); the name is theirs, the prefix ours.
    pub fn channel(&self, name: &str) -> String {
        self.key(&[name])
    }
}

/// A state's name in `state:<state>` keys. The index entry carries it too,
/// so the scripts name the same set.
pub(crate) fn state_name(s: ServiceState) -> &'static str {
    match s {
        ServiceState::Scheduled => "scheduled",
        ServiceState::WaitForAgent => "wait_for_agent",
        ServiceState::WaitForUserConfirm => "wait_for_user_confirm",
        ServiceState::Connected => "connected",
        ServiceState::Completed => "completed",
    }
}

/// A sample kind as the keys and the sums hash's fields spell it.
pub fn sample_kind(kind: SampleKind) -> &'static str {
    match kind {
        SampleKind::Wait => "wait",
        SampleKind::Handle => "handle",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names as docs/storage.md's key table and the scripts spell them.
    #[test]
    fn keys_follow_the_documented_layout() {
        let k = Keys::new("ns");
        assert_eq!(k.prefix(), "{ns}:");
        let names = [
            (k.svc("a"), "{ns}:svc:a"),
            (k.idx(), "{ns}:idx"),
            (k.customers(), "{ns}:cust"),
            (k.customer_set("0"), "{ns}:cust:0"),
            (k.waiting_devices(), "{ns}:qdev"),
            (k.capacity(), "{ns}:capacity"),
            (
                k.services(ServiceState::WaitForAgent, "s"),
                "{ns}:ids:wait_for_agent:s",
            ),
            (k.scenarios(), "{ns}:scenarios"),
            (k.outboxes(), "{ns}:outboxes"),
            (k.queues(), "{ns}:queues"),
            (k.queue("q"), "{ns}:queue:q"),
            (k.timers(), "{ns}:timers"),
            (k.deadlines(), "{ns}:deadlines"),
            (k.agents(), "{ns}:agents"),
            (k.agent("g"), "{ns}:agent:g"),
            (k.agent_services("g"), "{ns}:agent:g:svc"),
            (k.stats("q", SampleKind::Wait), "{ns}:stats:q:wait"),
            (k.stats("q", SampleKind::Handle), "{ns}:stats:q:handle"),
            (k.seats("s"), "{ns}:seats:s"),
            (k.rooms(), "{ns}:rooms"),
            (k.room_agents(), "{ns}:roomagents"),
            (k.wake(), "{ns}:wake"),
            (k.agent_key("i"), "{ns}:key:i"),
            (k.agent_keys("g"), "{ns}:agentkeys:g"),
            (k.quota("q"), "{ns}:quota:q"),
            (k.idempotency("k"), "{ns}:idem:k"),
            (k.webhook_attempts(), "{ns}:webhooks:attempts"),
            (k.channel("push"), "{ns}:push"),
        ];
        for (built, documented) in names {
            assert_eq!(built, documented);
        }
    }
}
