//! Roles and the principal a request acts as.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a credential may do. `Client < Backend < Supervisor < Admin`, each
/// allowed what the ones before it are; `Agent` stands apart: it acts only
/// on its own things (its services, its readiness, its push channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The GMS customer API: create, the per-service calls on a known id,
    /// availability, push for its own device.
    Client,
    /// `Client`, plus the queries that list services by their properties.
    Backend,
    /// Bound to one agent id.
    Agent,
    /// Any agent's readiness and profile, every record, cancel.
    Supervisor,
    /// Everything, including minting and revoking keys.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Client,
        Role::Backend,
        Role::Agent,
        Role::Supervisor,
        Role::Admin,
    ];

    /// Where the role stands on the client < backend < supervisor < admin
    /// ladder; `None` for `Agent`, which is not on it.
    fn rank(self) -> Option<u8> {
        match self {
            Role::Client => Some(0),
            Role::Backend => Some(1),
            Role::Supervisor => Some(2),
            Role::Admin => Some(3),
            Role::Agent => None,
        }
    }

    /// Whether this role may do what `needed` may. An agent is at least
    /// an agent and nothing else; nobody else is at least an agent (the
    /// agent calls check "this agent, or a supervisor" explicitly).
    pub fn at_least(self, needed: Role) -> bool {
        match (self.rank(), needed.rank()) {
            (Some(have), Some(need)) => have >= need,
            (None, None) => true,
            _ => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Backend => "backend",
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("`{s}` is not a role (client, backend, agent, supervisor or admin)")
            })
    }
}

/// Who a request acts as, once its credential is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The credential's name (a file entry, a minted key's name, a JWT's
    /// subject), as logs and a record's history show it.
    pub name: String,
    pub role: Role,
    /// The agent this principal is, for role `Agent`.
    pub agent: Option<String>,
}

impl Principal {
    /// The principal of a server that runs open (no credentials
    /// configured, loopback only): it may do everything.
    pub fn open() -> Principal {
        Principal {
            name: "open".to_owned(),
            role: Role::Admin,
            agent: None,
        }
    }

    pub fn may(&self, needed: Role) -> bool {
        self.role.at_least(needed)
    }

    /// Whether this principal may act for agent `id`: that agent itself,
    /// or a supervisor or admin.
    pub fn may_act_for_agent(&self, id: &str) -> bool {
        match self.role {
            Role::Agent => self.agent.as_deref() == Some(id),
            role => role.at_least(Role::Supervisor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_and_the_agent_apart() {
        use Role::*;
        // (role, needed) -> allowed
        let table = [
            (Client, Client, true),
            (Client, Backend, false),
            (Backend, Client, true),
            (Backend, Supervisor, false),
            (Supervisor, Backend, true),
            (Supervisor, Admin, false),
            (Admin, Supervisor, true),
            (Admin, Client, true),
            (Agent, Agent, true),
            (Agent, Client, false),
            (Admin, Agent, false),
            (Supervisor, Agent, false),
        ];
        for (have, need, allowed) in table {
            assert_eq!(have.at_least(need), allowed, "{have} at least {need}");
        }
    }

    #[test]
    fn acting_for_an_agent() {
        let ann = Principal {
            name: "ann-desktop".into(),
            role: Role::Agent,
            agent: Some("ann".into()),
        };
        assert!(ann.may_act_for_agent("ann"));
        assert!(!ann.may_act_for_agent("bob"));
        let sup = Principal {
            name: "floor".into(),
            role: Role::Supervisor,
            agent: None,
        };
        assert!(sup.may_act_for_agent("bob"));
        let client = Principal {
            name: "ios".into(),
            role: Role::Client,
            agent: None,
        };
        assert!(!client.may_act_for_agent("bob"));
    }

    #[test]
    fn roles_parse_by_their_names() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().unwrap_err().contains("`root`"));
    }
}
