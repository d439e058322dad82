//! The fleet snapshot the engine decides over, and its mapping to Cedar entities.
//!
//! This module owns how Warden's records become `Warden::*` entities: ids, attributes and parents,
//! exactly as the schema text describes them. It must never invent facts: every attribute comes from a
//! record or from the caller's trusted inputs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use warden_core::{Agent, AgentId, AgentStatus, McpServer, Name, Person, Scope, ToolPattern};

use crate::arguments;
use crate::error::PolicyError;
use crate::schema::one_line;

/// A snapshot of the registry as policy sees it: agents (with the scopes they hold), scopes and
/// MCP servers. Teams are the ones the agents and servers name.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    pub(crate) agents: Vec<Agent>,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) servers: Vec<McpServer>,
}

impl Fleet {
    /// A snapshot of these records. An agent's grants are its `scopes`; a held scope that is not
    /// defined grants nothing. When ids repeat, the last record wins.
    pub fn new(agents: &[Agent], scopes: &[Scope], servers: &[McpServer]) -> Fleet {
        Fleet {
            agents: agents.to_vec(),
            scopes: scopes.to_vec(),
            servers: servers.to_vec(),
        }
    }
}

/// Entity type names and action ids, parsed once.
pub(crate) struct Names {
    pub(crate) team: EntityTypeName,
    pub(crate) person: EntityTypeName,
    pub(crate) agent: EntityTypeName,
    pub(crate) server: EntityTypeName,
    pub(crate) tool: EntityTypeName,
    pub(crate) arguments: EntityTypeName,
    pub(crate) call_tool: EntityUid,
    pub(crate) grant_scope: EntityUid,
    pub(crate) set_tag: EntityUid,
    pub(crate) delegate: EntityUid,
}

impl Names {
    pub(crate) fn new() -> Result<Names, PolicyError> {
        let ty = |name: &str| {
            name.parse::<EntityTypeName>()
                .map_err(|e| PolicyError::Internal(one_line(&e)))
        };
        let action = ty("Warden::Action")?;
        let act = |id: &str| EntityUid::from_type_name_and_id(action.clone(), EntityId::new(id));
        Ok(Names {
            team: ty("Warden::Team")?,
            person: ty("Warden::Person")?,
            agent: ty("Warden::Agent")?,
            server: ty("Warden::McpServer")?,
            tool: ty("Warden::Tool")?,
            arguments: ty("Warden::Arguments")?,
            call_tool: act("call_tool"),
            grant_scope: act("grant_scope"),
            set_tag: act("set_tag"),
            delegate: act("delegate"),
        })
    }

    pub(crate) fn uid(&self, ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

/// One agent, ready for requests.
pub(crate) struct AgentNode {
    pub(crate) id: AgentId,
    pub(crate) uid: EntityUid,
    /// Its teams and ancestor agents (the entity's parents).
    pub(crate) ancestors: Vec<EntityUid>,
    pub(crate) team: Name,
    pub(crate) tags: Vec<Name>,
    pub(crate) purpose: String,
    pub(crate) status: AgentStatus,
    pub(crate) scopes: Vec<Name>,
    pub(crate) entity: Entity,
}

/// One MCP server, ready for requests.
pub(crate) struct ServerNode {
    pub(crate) sensitive: bool,
    pub(crate) entity: Entity,
}

/// The fleet as Cedar entities, indexed for per-request slices. Shared between engines by `Arc`;
/// an update copies the maps (of `Arc`s), never the entities.
#[derive(Clone)]
pub(crate) struct FleetIndex {
    pub(crate) agents: HashMap<AgentId, Arc<AgentNode>>,
    pub(crate) servers: HashMap<String, Arc<ServerNode>>,
    pub(crate) teams: BTreeMap<Name, Entity>,
    pub(crate) scopes: Arc<BTreeMap<Name, Scope>>,
}

impl FleetIndex {
    pub(crate) fn new(fleet: Fleet, names: &Names) -> Result<FleetIndex, PolicyError> {
        let mut index = FleetIndex {
            agents: HashMap::with_capacity(fleet.agents.len()),
            servers: HashMap::with_capacity(fleet.servers.len()),
            teams: BTreeMap::new(),
            scopes: Arc::new(fleet.scopes.into_iter().map(|s| (s.name.clone(), s)).collect()),
        };
        for server in fleet.servers {
            if let Some(team) = &server.owner_team {
                index.add_team(team, names);
            }
            let node = server_node(&server, names)?;
            index.servers.insert(server.name.as_str().to_owned(), Arc::new(node));
        }
        for agent in &fleet.agents {
            index.upsert_agent(agent, names)?;
        }
        Ok(index)
    }

    pub(crate) fn upsert_agent(&mut self, agent: &Agent, names: &Names) -> Result<(), PolicyError> {
        self.add_team(&agent.team, names);
        let node = agent_node(agent, names)?;
        self.agents.insert(agent.id.clone(), Arc::new(node));
        Ok(())
    }

    fn add_team(&mut self, team: &Name, names: &Names) {
        if !self.teams.contains_key(team) {
            let uid = names.uid(&names.team, team.as_str());
            self.teams.insert(team.clone(), Entity::with_uid(uid));
        }
    }

    /// The agent and its ancestors that are in the fleet, nearest first.
    pub(crate) fn chain(&self, id: &AgentId) -> Vec<&Arc<AgentNode>> {
        let mut out = Vec::new();
        let mut next = Some(id.clone());
        while let Some(current) = next {
            if let Some(node) = self.agents.get(&current) {
                out.push(node);
            }
            next = current.parent();
        }
        out
    }

    /// Whether a tool counts as sensitive: its server is, or a sensitive scope covers it.
    pub(crate) fn tool_sensitive(&self, server: &ServerNode, server_name: &str, tool: &str) -> bool {
        server.sensitive
            || self
                .scopes
                .values()
                .any(|s| s.sensitive && s.tools.iter().any(|p| p.matches(server_name, tool)))
    }
}

fn string_set<'a>(values: impl IntoIterator<Item = &'a Name>) -> RestrictedExpression {
    let sorted: BTreeSet<&str> = values.into_iter().map(Name::as_str).collect();
    RestrictedExpression::new_set(
        sorted
            .into_iter()
            .map(|v| RestrictedExpression::new_string(v.to_owned())),
    )
}

fn depth_of(id: &AgentId) -> i64 {
    i64::try_from(id.depth()).unwrap_or(i64::MAX)
}

fn agent_node(agent: &Agent, names: &Names) -> Result<AgentNode, PolicyError> {
    let uid = names.uid(&names.agent, agent.id.as_str());
    let team_uid = names.uid(&names.team, agent.team.as_str());
    let ancestors = ancestors(&agent.id, &agent.team, names);
    let entity = agent_entity(
        uid.clone(),
        ancestors.clone(),
        AgentAttrs {
            team: team_uid,
            tags: &agent.tags,
            purpose: &agent.purpose,
            status: agent.status.as_str(),
            origin: agent.origin.as_str(),
            scopes: &agent.scopes,
            depth: depth_of(&agent.id),
        },
    )?;
    Ok(AgentNode {
        id: agent.id.clone(),
        uid,
        ancestors,
        team: agent.team.clone(),
        tags: agent.tags.clone(),
        purpose: agent.purpose.clone(),
        status: agent.status,
        scopes: agent.scopes.clone(),
        entity,
    })
}

/// Every ancestor of an agent as direct parents: its team (as recorded and as its id says) and every
/// agent its id extends. Listing them all makes each agent entity carry its whole ancestry, so a
/// request needs no ancestor entities for `in`, and the closure Cedar computes over the whole store
/// is the same set.
pub(crate) fn ancestors(id: &AgentId, team: &Name, names: &Names) -> Vec<EntityUid> {
    let mut out = vec![names.uid(&names.team, team.as_str())];
    let id_team = id.team();
    if &id_team != team {
        out.push(names.uid(&names.team, id_team.as_str()));
    }
    let mut next = id.parent();
    while let Some(current) = next {
        out.push(names.uid(&names.agent, current.as_str()));
        next = current.parent();
    }
    out
}

pub(crate) struct AgentAttrs<'a> {
    pub(crate) team: EntityUid,
    pub(crate) tags: &'a [Name],
    pub(crate) purpose: &'a str,
    pub(crate) status: &'a str,
    pub(crate) origin: &'a str,
    pub(crate) scopes: &'a [Name],
    pub(crate) depth: i64,
}

pub(crate) fn agent_entity(
    uid: EntityUid,
    parents: Vec<EntityUid>,
    attrs: AgentAttrs<'_>,
) -> Result<Entity, PolicyError> {
    Entity::new(
        uid,
        HashMap::from([
            ("team".to_owned(), RestrictedExpression::new_entity_uid(attrs.team)),
            ("tags".to_owned(), string_set(attrs.tags)),
            (
                "purpose".to_owned(),
                RestrictedExpression::new_string(attrs.purpose.to_owned()),
            ),
            (
                "status".to_owned(),
                RestrictedExpression::new_string(attrs.status.to_owned()),
            ),
            (
                "origin".to_owned(),
                RestrictedExpression::new_string(attrs.origin.to_owned()),
            ),
            ("scopes".to_owned(), string_set(attrs.scopes)),
            ("depth".to_owned(), RestrictedExpression::new_long(attrs.depth)),
        ]),
        parents.into_iter().collect(),
    )
    .map_err(|e| PolicyError::Internal(one_line(&e)))
}

fn server_node(server: &McpServer, names: &Names) -> Result<ServerNode, PolicyError> {
    let uid = names.uid(&names.server, server.name.as_str());
    let mut attrs = HashMap::from([("sensitive".to_owned(), RestrictedExpression::new_bool(server.sensitive))]);
    if let Some(team) = &server.owner_team {
        attrs.insert(
            "owner_team".to_owned(),
            RestrictedExpression::new_entity_uid(names.uid(&names.team, team.as_str())),
        );
    }
    let entity = Entity::new(uid, attrs, Default::default()).map_err(|e| PolicyError::Internal(one_line(&e)))?;
    Ok(ServerNode {
        sensitive: server.sensitive,
        entity,
    })
}

/// The `Warden::Tool` entity for `server/tool`.
pub(crate) fn tool_entity(names: &Names, server: &str, tool: &str, sensitive: bool) -> Result<Entity, PolicyError> {
    let server_uid = names.uid(&names.server, server);
    Entity::new(
        names.uid(&names.tool, &format!("{server}/{tool}")),
        HashMap::from([
            (
                "server".to_owned(),
                RestrictedExpression::new_entity_uid(server_uid.clone()),
            ),
            ("name".to_owned(), RestrictedExpression::new_string(tool.to_owned())),
            ("sensitive".to_owned(), RestrictedExpression::new_bool(sensitive)),
        ]),
        [server_uid].into_iter().collect(),
    )
    .map_err(|e| PolicyError::Internal(one_line(&e)))
}

/// The `Warden::Arguments` entity of one call. Its id is always `call`: it exists only in one request.
pub(crate) fn arguments_entity(names: &Names, value: &serde_json::Value) -> Result<Entity, PolicyError> {
    let tags = arguments::tags(value)
        .into_iter()
        .map(|(k, v)| (k, RestrictedExpression::new_string(v)));
    Entity::new_with_tags(
        names.uid(&names.arguments, "call"),
        [(
            "json".to_owned(),
            RestrictedExpression::new_string(arguments::json(value)),
        )],
        [],
        tags,
    )
    .map_err(|e| PolicyError::Internal(one_line(&e)))
}

/// The `Warden::Person` entity for an access token's holder.
pub(crate) fn person_entity(names: &Names, person: &Person) -> Result<Entity, PolicyError> {
    let mut attrs = HashMap::from([(
        "role".to_owned(),
        RestrictedExpression::new_string(person.role.as_str().to_owned()),
    )]);
    if let Some(team) = &person.team {
        attrs.insert(
            "team".to_owned(),
            RestrictedExpression::new_entity_uid(names.uid(&names.team, team.as_str())),
        );
    }
    Entity::new(
        names.uid(&names.person, person.name.as_str()),
        attrs,
        Default::default(),
    )
    .map_err(|e| PolicyError::Internal(one_line(&e)))
}

/// The Cedar `like` condition for one tool pattern (`server/tool-glob`).
pub(crate) fn pattern_condition(pattern: &ToolPattern) -> String {
    let (server, tool) = pattern.as_str().split_once('/').unwrap_or(("*", pattern.as_str()));
    let tool = cedar_string(tool);
    if server == "*" {
        format!("resource.name like \"{tool}\"")
    } else {
        let server = cedar_string(server);
        format!("(resource.server == Warden::McpServer::\"{server}\" && resource.name like \"{tool}\")")
    }
}

/// Escapes a string for a Cedar string literal (tool patterns only hold safe characters; this is a
/// second line of defence).
fn cedar_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
