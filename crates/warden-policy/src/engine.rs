//! The policy engine: grants as Cedar policies, guardrails as the floor, and sliced evaluation.
//!
//! This module owns how decisions are made. Grants are one Cedar template per scope
//! (`scope/<name>`), linked once per held scope (`grant/<scope>/<agent id>`) with the agent as
//! `?principal`; guardrails are static `forbid`s; `grant_scope`, `set_tag` and `delegate` are allowed
//! by one built-in permit (`builtin/admin-default-allow`) so that only guardrails restrict them.
//!
//! Cedar's cost is linear in the policies it is given, so a decision evaluates only the principal's
//! *slice*: the guardrails whose principal scope can match the principal (unscoped ones, and those
//! scoped to the principal, its team or one of its ancestor agents) and whose action scope matches,
//! plus the principal's own grants. Slices are built on first use and cached per (principal, action).
//! Entities are sliced too. Each agent entity lists its teams and every ancestor agent as parents, so
//! `in` needs no other entity; a slice holds the principal agent and the fleet entities its
//! guardrails name literally, with Cedar's closure computed once, and a request only adds what is
//! its own (the tool, its server, the arguments, the person, the target agent). Team entities carry
//! nothing and are left out. The unsliced path (`*_unsliced`) hands Cedar the whole policy set and the
//! whole entity store and must always agree; a property test checks that.
//!
//! **Invariant:** fail closed. An evaluation error in a guardrail counts as a deny naming it, and any
//! internal failure is a deny, never a panic or an error.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Entities, Entity, EntityUid, Policy, PolicyId, PolicySet,
    PrincipalConstraint, Request, Response, RestrictedExpression, SlotId, Template, ValidationMode,
};
use warden_core::{Agent, AgentId, AgentStatus, Name, Person};

use crate::decision::{Decision, Held, ToolCall, Violation};
use crate::error::PolicyError;
use crate::fleet::{self, AgentAttrs, AgentNode, Fleet, FleetIndex, Names};
use crate::guardrail::Guardrail;
use crate::schema::{self, Compiled, one_line};

/// The id of the built-in permit that allows `grant_scope`, `set_tag` and `delegate` unless a
/// guardrail forbids them.
const BUILTIN_ID: &str = "builtin/admin-default-allow";
const BUILTIN_TEXT: &str = r#"permit (principal, action in [Warden::Action::"grant_scope", Warden::Action::"set_tag", Warden::Action::"delegate"], resource);"#;
/// The person `violations` re-checks grants as: not a valid token name, so it is never a real one.
const RECHECK_PERSON: &str = "warden/recheck";

/// The actions of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Action {
    CallTool,
    GrantScope,
    SetTag,
    Delegate,
}

impl Action {
    const ALL: [Action; 4] = [Action::CallTool, Action::GrantScope, Action::SetTag, Action::Delegate];

    fn uid(self, names: &Names) -> &EntityUid {
        match self {
            Action::CallTool => &names.call_tool,
            Action::GrantScope => &names.grant_scope,
            Action::SetTag => &names.set_tag,
            Action::Delegate => &names.delegate,
        }
    }

    fn of(uid: &EntityUid, names: &Names) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.uid(names) == uid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sliced,
    Unsliced,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SliceKey {
    action: Action,
    principal: String,
}

/// What changes only when guardrails or scope definitions change.
struct Shared {
    compiled: &'static Compiled,
    guardrails: Vec<Guardrail>,
    messages: HashMap<String, String>,
    /// Guardrails with no principal entity in their scope.
    unscoped: Vec<usize>,
    /// Guardrails whose principal scope names an entity (`==`, `in`, `is .. in`), by that entity.
    by_principal: HashMap<EntityUid, Vec<usize>>,
    /// The actions each guardrail can apply to; `None` for any action.
    actions: Vec<Option<Vec<Action>>>,
    /// The entities each guardrail names literally (`Warden::Agent::"..".tags`). A slice carries
    /// the fleet's entities for these, so such a guardrail sees what it would see in the whole store.
    literals: Vec<Vec<EntityUid>>,
    /// The union of `literals`: a change to one of these entities invalidates every slice.
    named: Vec<EntityUid>,
    builtin: Policy,
    templates: HashMap<Name, Template>,
}

/// One principal's policies for one action, and the entities every request of it needs (the
/// principal agent, the fleet entities its guardrails name), with their closure computed once.
struct Slice {
    policies: PolicySet,
    entities: Entities,
}

/// The whole policy set and entity store, for the unsliced path. Built on first use.
struct Full {
    policies: PolicySet,
    entities: Entities,
}

/// An immutable authorization engine over one fleet snapshot and one set of guardrails.
///
/// Cheap to share in an `Arc`: every method takes `&self`. When grants, tags or guardrails change,
/// build the next engine (`with_agent`, `without_agent`, `with_guardrails`, or `new` when scopes or
/// MCP servers change) and swap it in atomically; the old one keeps answering until dropped.
pub struct PolicyEngine {
    shared: Arc<Shared>,
    fleet: Arc<FleetIndex>,
    slices: RwLock<HashMap<SliceKey, Arc<Slice>>>,
    full: OnceLock<Result<Arc<Full>, String>>,
}

/// One request, assembled and ready for either evaluation path.
struct Prepared {
    key: SliceKey,
    /// The principal and its ancestors: the entities a guardrail's principal scope may name.
    lookup: Vec<EntityUid>,
    /// The principal, when it is an agent: its entity joins the slice, and for `call_tool` its grants.
    agent: Option<Arc<AgentNode>>,
    principal: EntityUid,
    resource: EntityUid,
    context: Context,
    /// Entities from the fleet other than the principal (the unsliced store has them already).
    from_fleet: Vec<Entity>,
    /// Entities that exist only for this request (tool, arguments, person, subagent-to-be).
    from_request: Vec<Entity>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("agents", &self.fleet.agents.len())
            .field("scopes", &self.fleet.scopes.len())
            .field("servers", &self.fleet.servers.len())
            .field("guardrails", &self.shared.guardrails.len())
            .finish()
    }
}

impl PolicyEngine {
    /// Builds an engine. Each agent's entity is built once here (about 90 ms for 10,000 agents);
    /// per-principal slices are built on first use (or by [`Self::warm`]) and then cached.
    pub fn new(fleet: Fleet, guardrails: Vec<Guardrail>) -> Result<PolicyEngine, PolicyError> {
        let compiled = schema::compiled()?;
        let index = FleetIndex::new(fleet, &compiled.names)?;
        let shared = Shared::new(compiled, guardrails, &index)?;
        Ok(PolicyEngine::assemble(
            Arc::new(shared),
            Arc::new(index),
            HashMap::new(),
        ))
    }

    /// The engine after an agent record was added or changed (tags, status, scopes). Shares
    /// everything else with `self`, including the cached slices of other agents (all slices are
    /// dropped if a guardrail names this agent). Costs a copy of the agent map and the slice cache
    /// (of pointers): about 10 ms at 10,000 agents with every slice cached.
    pub fn with_agent(&self, agent: &Agent) -> Result<PolicyEngine, PolicyError> {
        let mut index = (*self.fleet).clone();
        index.upsert_agent(agent, &self.shared.compiled.names)?;
        Ok(PolicyEngine::assemble(
            self.shared.clone(),
            Arc::new(index),
            self.slices_without(&agent.id),
        ))
    }

    /// The engine after an agent record was removed.
    pub fn without_agent(&self, id: &AgentId) -> PolicyEngine {
        let mut index = (*self.fleet).clone();
        index.agents.remove(id);
        PolicyEngine::assemble(self.shared.clone(), Arc::new(index), self.slices_without(id))
    }

    /// The engine with another set of guardrails over the same fleet. Every slice is rebuilt lazily.
    pub fn with_guardrails(&self, guardrails: Vec<Guardrail>) -> Result<PolicyEngine, PolicyError> {
        let shared = Shared::new(self.shared.compiled, guardrails, &self.fleet)?;
        Ok(PolicyEngine::assemble(
            Arc::new(shared),
            self.fleet.clone(),
            HashMap::new(),
        ))
    }

    /// The guardrails in force.
    pub fn guardrails(&self) -> &[Guardrail] {
        &self.shared.guardrails
    }

    /// Decides a tool call: allowed only if a scope the agent holds covers the tool and no
    /// guardrail forbids it (or fails to evaluate). Unknown or inactive agents (or an inactive
    /// ancestor), unregistered servers and an hour outside 0-23 are denied before any policy.
    pub fn authorize_call(&self, call: &ToolCall) -> Decision {
        self.call(call, Mode::Sliced)
    }

    /// [`Self::authorize_call`] evaluated by Cedar over the whole policy set and the whole entity
    /// store, without slicing. Always the same decision, much slower: for tests and benchmarks.
    pub fn authorize_call_unsliced(&self, call: &ToolCall) -> Decision {
        self.call(call, Mode::Unsliced)
    }

    /// Decides whether `person` may grant `scope` to `agent` now (separation of duties): allowed
    /// unless a guardrail forbids `grant_scope` with the agent as it is and `context.scope`. The scope
    /// must be defined and the agent registered. Whether the person's role allows granting at all
    /// is `warden_core::Person::authorize`'s question, not this one.
    pub fn authorize_grant(&self, person: &Person, agent: &AgentId, scope: &Name) -> Decision {
        self.grant(person, agent, scope, Mode::Sliced)
    }

    /// [`Self::authorize_grant`] without slicing: for tests and benchmarks.
    pub fn authorize_grant_unsliced(&self, person: &Person, agent: &AgentId, scope: &Name) -> Decision {
        self.grant(person, agent, scope, Mode::Unsliced)
    }

    /// Decides whether `person` may tag `agent` with `tag` now: allowed unless a guardrail forbids
    /// `set_tag` with the agent as it is and `context.tag`.
    pub fn authorize_tag(&self, person: &Person, agent: &AgentId, tag: &Name) -> Decision {
        self.tag(person, agent, tag, Mode::Sliced)
    }

    /// [`Self::authorize_tag`] without slicing: for tests and benchmarks.
    pub fn authorize_tag_unsliced(&self, person: &Person, agent: &AgentId, tag: &Name) -> Decision {
        self.tag(person, agent, tag, Mode::Unsliced)
    }

    /// Decides whether agent `parent` may delegate to a subagent `name` with `scopes`.
    ///
    /// The parent must be registered and active (with its ancestors) and hold every requested
    /// scope. Then `delegate` is evaluated with the parent as principal and the subagent as it will
    /// be as resource (id `<parent>/<name>`, the parent's team, tags and purpose, status `active`,
    /// origin `delegated`, the requested scopes, depth one more than the parent's); the context has
    /// `scopes` (the requested scopes) and `depth` (the subagent's depth). Allowed unless a guardrail
    /// forbids it.
    pub fn authorize_delegate(&self, parent: &AgentId, name: &Name, scopes: &[Name]) -> Decision {
        self.delegate(parent, name, scopes, Mode::Sliced)
    }

    /// [`Self::authorize_delegate`] without slicing: for tests and benchmarks.
    pub fn authorize_delegate_unsliced(&self, parent: &AgentId, name: &Name, scopes: &[Name]) -> Decision {
        self.delegate(parent, name, scopes, Mode::Unsliced)
    }

    /// Every scope and tag agents hold now that `guardrail` would refuse if it were granted or set
    /// now: `grant_scope` for each held scope and `set_tag` for each tag, with the agent as it is,
    /// evaluated against this guardrail alone. The person is a synthetic platform-admin
    /// (`Warden::Person::"warden/recheck"`), so a guardrail that restricts only some people finds
    /// nothing here. An evaluation error counts as a violation. Sorted by agent, then by what is held.
    pub fn violations(&self, guardrail: &Guardrail) -> Vec<Violation> {
        let names = &self.shared.compiled.names;
        let applies = |action: Action| actions_of(&guardrail.policy, names).is_none_or(|list| list.contains(&action));
        let (check_scopes, check_tags) = (applies(Action::GrantScope), applies(Action::SetTag));
        if !check_scopes && !check_tags {
            return Vec::new();
        }
        let person = recheck_person(names);
        let literal_entities = resolve_literals(&self.fleet, names, &guardrail.policy.entity_literals());
        let mut policies = PolicySet::new();
        let built = policies
            .add(self.shared.builtin.clone())
            .map_err(|e| one_line(&e))
            .and_then(|()| policies.add(guardrail.policy.clone()).map_err(|e| one_line(&e)));
        let mut agents: Vec<&Arc<AgentNode>> = self.fleet.agents.values().collect();
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        let mut out = Vec::new();
        for node in agents {
            let mut held: Vec<Held> = Vec::new();
            if check_scopes {
                held.extend(node.scopes.iter().cloned().map(Held::Scope));
            }
            if check_tags {
                held.extend(node.tags.iter().cloned().map(Held::Tag));
            }
            for item in held {
                let reason = match &built {
                    Err(e) => Some(format!("internal policy error: {e}")),
                    Ok(()) => {
                        let (action, key, value) = match &item {
                            Held::Scope(scope) => (Action::GrantScope, "scope", scope),
                            Held::Tag(tag) => (Action::SetTag, "tag", tag),
                        };
                        let mut entities = vec![person.clone()];
                        entities.extend(self.agent_entities(&node.id));
                        entities.extend(literal_entities.iter().cloned());
                        let context = vec![(
                            key.to_owned(),
                            RestrictedExpression::new_string(value.as_str().to_owned()),
                        )];
                        let decision = self.evaluate_with(
                            &policies,
                            dedup(entities),
                            Target {
                                action,
                                principal: names.uid(&names.person, RECHECK_PERSON),
                                resource: node.uid.clone(),
                                context,
                            },
                            guardrail,
                        );
                        (!decision.allow).then_some(decision.reason)
                    }
                };
                if let Some(reason) = reason {
                    out.push(Violation {
                        agent: node.id.clone(),
                        held: item,
                        reason,
                    });
                }
            }
        }
        out
    }

    /// Builds every agent's `call_tool` slice now instead of on first use (e.g. before serving):
    /// about 25 µs per agent. The cache holds one slice per (principal, action) ever decided.
    pub fn warm(&self) {
        for (id, node) in &self.fleet.agents {
            let key = SliceKey {
                action: Action::CallTool,
                principal: id.as_str().to_owned(),
            };
            // A failure here surfaces again, as a deny, on the agent's first decision.
            let _ = self.slice(&key, &Self::lookup_for_agent(node), Some(node));
        }
    }

    fn assemble(shared: Arc<Shared>, fleet: Arc<FleetIndex>, slices: HashMap<SliceKey, Arc<Slice>>) -> PolicyEngine {
        PolicyEngine {
            shared,
            fleet,
            slices: RwLock::new(slices),
            full: OnceLock::new(),
        }
    }

    /// The cached slices minus those of `id` and its descendants, or none at all when a guardrail
    /// names the agent (every slice carrying that guardrail carries the agent's entity then).
    fn slices_without(&self, id: &AgentId) -> HashMap<SliceKey, Arc<Slice>> {
        let names = &self.shared.compiled.names;
        if self.shared.named.contains(&names.uid(&names.agent, id.as_str())) {
            return HashMap::new();
        }
        let prefix = format!("{id}/");
        let cache = self.slices.read().unwrap_or_else(PoisonError::into_inner);
        cache
            .iter()
            .filter(|(key, _)| {
                !matches!(key.action, Action::CallTool | Action::Delegate)
                    || (key.principal != id.as_str() && !key.principal.starts_with(&prefix))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn call(&self, call: &ToolCall, mode: Mode) -> Decision {
        let names = &self.shared.compiled.names;
        let node = match self.active_agent(&call.agent) {
            Ok(node) => node,
            Err(decision) => return decision,
        };
        let Some(server) = self.fleet.servers.get(&call.server) else {
            return Decision::deny(format!("mcp server `{}` is not registered", call.server));
        };
        if call.tool.is_empty() {
            return Decision::deny("the tool name is empty");
        }
        if call.hour > 23 {
            return Decision::deny(format!("hour `{}` is not between 0 and 23", call.hour));
        }
        let tool_id = format!("{}/{}", call.server, call.tool);
        let sensitive = self.fleet.tool_sensitive(server, &call.server, &call.tool);
        let request_entities = fleet::tool_entity(names, &call.server, &call.tool, sensitive)
            .and_then(|tool| Ok(vec![tool, fleet::arguments_entity(names, &call.arguments)?]));
        let from_request = match request_entities {
            Ok(entities) => entities,
            Err(e) => return internal(&e),
        };
        // Team entities have no attributes and no parents, so requests leave them out.
        let from_fleet = vec![server.entity.clone()];
        let context = vec![
            (
                "arguments".to_owned(),
                RestrictedExpression::new_entity_uid(names.uid(&names.arguments, "call")),
            ),
            ("hour".to_owned(), RestrictedExpression::new_long(i64::from(call.hour))),
            (
                "weekday".to_owned(),
                RestrictedExpression::new_long(i64::from(call.weekday.number())),
            ),
        ];
        let prepared = Prepared {
            key: SliceKey {
                action: Action::CallTool,
                principal: call.agent.as_str().to_owned(),
            },
            lookup: Self::lookup_for_agent(node),
            agent: Some(node.clone()),
            principal: node.uid.clone(),
            resource: names.uid(&names.tool, &tool_id),
            context: match Context::from_pairs(context) {
                Ok(context) => context,
                Err(e) => return internal(&e),
            },
            from_fleet,
            from_request,
        };
        let (agent_id, holder) = (&call.agent, node.clone());
        self.evaluate(prepared, mode, move || {
            if holder.scopes.is_empty() {
                return format!("agent `{agent_id}` holds no scopes");
            }
            let list = holder.scopes.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>();
            format!(
                "no scope held by agent `{agent_id}` ({}) covers tool `{tool_id}`",
                list.join(", ")
            )
        })
    }

    fn grant(&self, person: &Person, agent: &AgentId, scope: &Name, mode: Mode) -> Decision {
        if !self.fleet.scopes.contains_key(scope) {
            return Decision::deny(format!("scope `{scope}` is not defined"));
        }
        self.admin(person, agent, Action::GrantScope, ("scope", scope), mode)
    }

    fn tag(&self, person: &Person, agent: &AgentId, tag: &Name, mode: Mode) -> Decision {
        self.admin(person, agent, Action::SetTag, ("tag", tag), mode)
    }

    /// `grant_scope` and `set_tag`: a person acts on an agent as it is now.
    fn admin(
        &self,
        person: &Person,
        agent: &AgentId,
        action: Action,
        (key, value): (&str, &Name),
        mode: Mode,
    ) -> Decision {
        let names = &self.shared.compiled.names;
        let Some(node) = self.fleet.agents.get(agent) else {
            return Decision::deny(format!("agent `{agent}` is not registered"));
        };
        let person_entity = match fleet::person_entity(names, person) {
            Ok(entity) => entity,
            Err(e) => return internal(&e),
        };
        let principal = names.uid(&names.person, person.name.as_str());
        let from_fleet = self.agent_entities(agent);
        let context = match Context::from_pairs([(
            key.to_owned(),
            RestrictedExpression::new_string(value.as_str().to_owned()),
        )]) {
            Ok(context) => context,
            Err(e) => return internal(&e),
        };
        let prepared = Prepared {
            key: SliceKey {
                action,
                principal: person.name.as_str().to_owned(),
            },
            lookup: vec![principal.clone()],
            agent: None,
            principal,
            resource: node.uid.clone(),
            context,
            from_fleet,
            from_request: vec![person_entity],
        };
        self.evaluate(prepared, mode, String::new)
    }

    fn delegate(&self, parent: &AgentId, name: &Name, scopes: &[Name], mode: Mode) -> Decision {
        let names = &self.shared.compiled.names;
        let node = match self.active_agent(parent) {
            Ok(node) => node,
            Err(decision) => return decision,
        };
        if let Some(missing) = scopes.iter().find(|s| !node.scopes.contains(s)) {
            return Decision::deny(format!(
                "agent `{parent}` does not hold scope `{missing}`, so it cannot delegate it"
            ));
        }
        let child = parent.child(name);
        let child_uid = names.uid(&names.agent, child.as_str());
        let depth = i64::try_from(child.depth()).unwrap_or(i64::MAX);
        let team_uid = names.uid(&names.team, node.team.as_str());
        let subagent = fleet::agent_entity(
            child_uid.clone(),
            fleet::ancestors(&child, &node.team, names),
            AgentAttrs {
                team: team_uid,
                tags: &node.tags,
                purpose: &node.purpose,
                status: AgentStatus::Active.as_str(),
                origin: warden_core::Origin::Delegated.as_str(),
                scopes,
                depth,
            },
        );
        let subagent = match subagent {
            Ok(entity) => entity,
            Err(e) => return internal(&e),
        };
        let requested: BTreeSet<&str> = scopes.iter().map(Name::as_str).collect();
        let context = Context::from_pairs([
            (
                "scopes".to_owned(),
                RestrictedExpression::new_set(
                    requested
                        .into_iter()
                        .map(|s| RestrictedExpression::new_string(s.to_owned())),
                ),
            ),
            ("depth".to_owned(), RestrictedExpression::new_long(depth)),
        ]);
        let context = match context {
            Ok(context) => context,
            Err(e) => return internal(&e),
        };
        let prepared = Prepared {
            key: SliceKey {
                action: Action::Delegate,
                principal: parent.as_str().to_owned(),
            },
            lookup: Self::lookup_for_agent(node),
            agent: Some(node.clone()),
            principal: node.uid.clone(),
            resource: child_uid,
            context,
            from_fleet: Vec::new(),
            from_request: vec![subagent],
        };
        self.evaluate(prepared, mode, String::new)
    }

    /// The agent if it and every ancestor in the fleet are active; otherwise the deny.
    fn active_agent(&self, id: &AgentId) -> Result<&Arc<AgentNode>, Decision> {
        let Some(node) = self.fleet.agents.get(id) else {
            return Err(Decision::deny(format!("agent `{id}` is not registered")));
        };
        if node.status != AgentStatus::Active {
            return Err(Decision::deny(format!("agent `{id}` is {}", node.status)));
        }
        if let Some(ancestor) = self
            .fleet
            .chain(id)
            .into_iter()
            .find(|n| n.status != AgentStatus::Active)
        {
            return Err(Decision::deny(format!(
                "agent `{id}` cannot act: its ancestor `{}` is {}",
                ancestor.id, ancestor.status
            )));
        }
        Ok(node)
    }

    /// The agent's entity, if registered. Its ancestors need not be present: the entity lists all of
    /// them as parents, and nothing in the schema leads from an agent to another agent's attributes.
    fn agent_entities(&self, id: &AgentId) -> Vec<Entity> {
        self.fleet
            .agents
            .get(id)
            .map(|n| n.entity.clone())
            .into_iter()
            .collect()
    }

    /// The uids a guardrail's principal scope may name for this agent: itself, its teams and its
    /// ancestor agents.
    fn lookup_for_agent(node: &AgentNode) -> Vec<EntityUid> {
        let mut out = Vec::with_capacity(node.ancestors.len() + 1);
        out.push(node.uid.clone());
        out.extend(node.ancestors.iter().cloned());
        out
    }

    /// Evaluates a prepared request on the chosen path and turns Cedar's answer into a decision.
    fn evaluate(&self, prepared: Prepared, mode: Mode, default_deny: impl FnOnce() -> String) -> Decision {
        let action = prepared.key.action;
        let request = match Request::new(
            prepared.principal,
            action.uid(&self.shared.compiled.names).clone(),
            prepared.resource,
            prepared.context,
            None,
        ) {
            Ok(request) => request,
            Err(e) => return internal(&e),
        };
        let response = match mode {
            Mode::Sliced => {
                let slice = match self.slice(&prepared.key, &prepared.lookup, prepared.agent.as_ref()) {
                    Ok(slice) => slice,
                    Err(e) => return internal(&e),
                };
                let mut added = prepared.from_request;
                added.extend(prepared.from_fleet);
                // Upsert: a request entity replaces a slice entity with the same id, as in the whole store.
                let entities = match slice.entities.clone().upsert_entities(dedup(added), None) {
                    Ok(entities) => entities,
                    Err(e) => return internal(&e),
                };
                Authorizer::new().is_authorized(&request, &slice.policies, &entities)
            }
            Mode::Unsliced => {
                let full = match self.full() {
                    Ok(full) => full,
                    Err(e) => return internal(&e),
                };
                let entities = match full.entities.clone().upsert_entities(prepared.from_request, None) {
                    Ok(entities) => entities,
                    Err(e) => return internal(&e),
                };
                Authorizer::new().is_authorized(&request, &full.policies, &entities)
            }
        };
        self.interpret(action, &response, None, default_deny)
    }

    /// Evaluates a request against an explicit policy set (used by `violations`).
    fn evaluate_with(
        &self,
        policies: &PolicySet,
        entities: Vec<Entity>,
        target: Target,
        candidate: &Guardrail,
    ) -> Decision {
        let names = &self.shared.compiled.names;
        let context = match Context::from_pairs(target.context) {
            Ok(context) => context,
            Err(e) => return internal(&e),
        };
        let request = match Request::new(
            target.principal,
            target.action.uid(names).clone(),
            target.resource,
            context,
            None,
        ) {
            Ok(request) => request,
            Err(e) => return internal(&e),
        };
        let entities = match Entities::from_entities(entities, None) {
            Ok(entities) => entities,
            Err(e) => return internal(&e),
        };
        let response = Authorizer::new().is_authorized(&request, policies, &entities);
        self.interpret(target.action, &response, Some(candidate), String::new)
    }

    /// Cedar's answer as a decision. A guardrail that failed to evaluate was skipped by Cedar; here
    /// it counts as a deny and is named.
    fn interpret(
        &self,
        action: Action,
        response: &Response,
        candidate: Option<&Guardrail>,
        default_deny: impl FnOnce() -> String,
    ) -> Decision {
        let message_of = |id: &str| -> Option<&str> {
            match candidate {
                Some(g) if g.id() == id => Some(g.message()),
                _ => self.shared.messages.get(id).map(String::as_str),
            }
        };
        let mut failed_guardrails: Vec<(String, String)> = Vec::new();
        let mut failed_other: Vec<String> = Vec::new();
        for error in response.diagnostics().errors() {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(error) = error;
            let id = error.policy_id().to_string();
            let text = one_line(error.inner());
            if message_of(&id).is_some() {
                failed_guardrails.push((id, text));
            } else {
                failed_other.push(format!("policy `{id}` failed to evaluate: {text}"));
            }
        }
        failed_guardrails.sort();
        let mut determining: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
        determining.sort();
        let allowed = response.decision() == cedar_policy::Decision::Allow && failed_guardrails.is_empty();
        if allowed {
            let reason = if action == Action::CallTool {
                let scopes: Vec<String> = determining
                    .iter()
                    .filter_map(|id| grant_scope_of(id))
                    .map(|s| format!("`{s}`"))
                    .collect();
                let plural = if scopes.len() == 1 { "" } else { "s" };
                format!("allowed by scope{plural} {}", scopes.join(", "))
            } else {
                "allowed: no guardrail forbids it".to_owned()
            };
            return Decision {
                allow: true,
                policy_ids: determining,
                reason,
            };
        }
        let mut parts: Vec<String> = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        let forbidding: Vec<&String> = if response.decision() == cedar_policy::Decision::Deny {
            determining.iter().collect()
        } else {
            Vec::new()
        };
        if !forbidding.is_empty() {
            let plural = if forbidding.len() == 1 { "" } else { "s" };
            let listed = forbidding
                .iter()
                .map(|id| match message_of(id.as_str()) {
                    Some(message) => format!("`{id}`: {message}"),
                    None => format!("`{id}`"),
                })
                .collect::<Vec<_>>()
                .join("; ");
            parts.push(format!("denied by guardrail{plural} {listed}"));
            ids.extend(forbidding.into_iter().cloned());
        }
        for (id, text) in failed_guardrails {
            let message = message_of(&id).unwrap_or_default();
            parts.push(format!(
                "guardrail `{id}` ({message}) failed to evaluate and counts as a deny: {text}"
            ));
            ids.push(id);
        }
        if parts.is_empty() {
            let text = default_deny();
            parts.push(if text.is_empty() {
                "denied: no policy allows it".to_owned()
            } else {
                text
            });
        }
        parts.extend(failed_other);
        ids.sort();
        ids.dedup();
        Decision {
            allow: false,
            policy_ids: ids,
            reason: parts.join("; "),
        }
    }

    /// The cached slice for `key`, built on a miss.
    fn slice(
        &self,
        key: &SliceKey,
        lookup: &[EntityUid],
        agent: Option<&Arc<AgentNode>>,
    ) -> Result<Arc<Slice>, String> {
        if let Some(hit) = self.slices.read().unwrap_or_else(PoisonError::into_inner).get(key) {
            return Ok(hit.clone());
        }
        let shared = &self.shared;
        let mut picked: BTreeSet<usize> = shared.unscoped.iter().copied().collect();
        for uid in lookup {
            if let Some(list) = shared.by_principal.get(uid) {
                picked.extend(list.iter().copied());
            }
        }
        let mut policies = PolicySet::new();
        let mut named: Vec<EntityUid> = Vec::new();
        for i in picked {
            let applies = shared
                .actions
                .get(i)
                .is_some_and(|a| a.as_ref().is_none_or(|list| list.contains(&key.action)));
            if let (true, Some(guardrail)) = (applies, shared.guardrails.get(i)) {
                policies.add(guardrail.policy.clone()).map_err(|e| one_line(&e))?;
                named.extend(shared.literals.get(i).into_iter().flatten().cloned());
            }
        }
        if key.action != Action::CallTool {
            policies.add(shared.builtin.clone()).map_err(|e| one_line(&e))?;
        }
        if let (Action::CallTool, Some(node)) = (key.action, agent) {
            add_grants(&mut policies, shared, node)?;
        }
        let mut base: Vec<Entity> = agent.map(|n| n.entity.clone()).into_iter().collect();
        base.extend(resolve_literals(&self.fleet, &shared.compiled.names, &named));
        let entities = Entities::from_entities(dedup(base), None).map_err(|e| one_line(&e))?;
        let slice = Arc::new(Slice { policies, entities });
        self.slices
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), slice.clone());
        Ok(slice)
    }

    /// The whole policy set and entity store, built on first use.
    fn full(&self) -> Result<Arc<Full>, String> {
        self.full
            .get_or_init(|| {
                let shared = &self.shared;
                let mut policies = PolicySet::new();
                for guardrail in &shared.guardrails {
                    policies.add(guardrail.policy.clone()).map_err(|e| one_line(&e))?;
                }
                policies.add(shared.builtin.clone()).map_err(|e| one_line(&e))?;
                let mut agents: Vec<&Arc<AgentNode>> = self.fleet.agents.values().collect();
                agents.sort_by(|a, b| a.id.cmp(&b.id));
                for node in &agents {
                    add_grants(&mut policies, shared, node)?;
                }
                let entities = agents
                    .iter()
                    .map(|n| n.entity.clone())
                    .chain(self.fleet.teams.values().cloned())
                    .chain(self.fleet.servers.values().map(|s| s.entity.clone()));
                let entities = Entities::from_entities(entities, None).map_err(|e| one_line(&e))?;
                Ok(Arc::new(Full { policies, entities }))
            })
            .clone()
    }
}

/// What `evaluate_with` asks.
struct Target {
    action: Action,
    principal: EntityUid,
    resource: EntityUid,
    context: Vec<(String, RestrictedExpression)>,
}

impl Shared {
    fn new(compiled: &'static Compiled, guardrails: Vec<Guardrail>, fleet: &FleetIndex) -> Result<Shared, PolicyError> {
        let names = &compiled.names;
        let mut messages = HashMap::new();
        for guardrail in &guardrails {
            if messages
                .insert(guardrail.id().to_owned(), guardrail.message().to_owned())
                .is_some()
            {
                return Err(PolicyError::DuplicateId(guardrail.id().to_owned()));
            }
        }
        let builtin = Policy::parse(Some(PolicyId::new(BUILTIN_ID)), BUILTIN_TEXT)
            .map_err(|e| PolicyError::Internal(one_line(&e)))?;
        let mut templates = HashMap::new();
        let mut check = PolicySet::new();
        for scope in fleet.scopes.values() {
            let condition = if scope.tools.is_empty() {
                "false".to_owned()
            } else {
                scope
                    .tools
                    .iter()
                    .map(fleet::pattern_condition)
                    .collect::<Vec<_>>()
                    .join(" || ")
            };
            let text = format!(
                "permit (principal == ?principal, action == Warden::Action::\"call_tool\", resource is Warden::Tool)\n  when {{ {condition} }};"
            );
            let template = Template::parse(Some(PolicyId::new(format!("scope/{}", scope.name))), &text)
                .map_err(|e| PolicyError::Internal(format!("scope `{}`: {}", scope.name, one_line(&e))))?;
            check
                .add_template(template.clone())
                .map_err(|e| PolicyError::Internal(one_line(&e)))?;
            templates.insert(scope.name.clone(), template);
        }
        check
            .add(builtin.clone())
            .map_err(|e| PolicyError::Internal(one_line(&e)))?;
        let res = compiled.validator.validate(&check, ValidationMode::Strict);
        if !res.validation_passed() {
            let reason = res
                .validation_errors()
                .map(|e| one_line(&e))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(PolicyError::Internal(format!(
                "generated policies do not validate: {reason}"
            )));
        }
        let mut unscoped = Vec::new();
        let mut by_principal: HashMap<EntityUid, Vec<usize>> = HashMap::new();
        let mut actions = Vec::new();
        let mut literals: Vec<Vec<EntityUid>> = Vec::new();
        let mut named: Vec<EntityUid> = Vec::new();
        for (i, guardrail) in guardrails.iter().enumerate() {
            match guardrail.policy.principal_constraint() {
                PrincipalConstraint::Any | PrincipalConstraint::Is(_) => unscoped.push(i),
                PrincipalConstraint::Eq(uid) | PrincipalConstraint::In(uid) | PrincipalConstraint::IsIn(_, uid) => {
                    by_principal.entry(uid).or_default().push(i);
                }
            }
            actions.push(actions_of(&guardrail.policy, names));
            let mine: Vec<EntityUid> = guardrail
                .policy
                .entity_literals()
                .into_iter()
                .filter(|uid| uid.type_name() == &names.agent || uid.type_name() == &names.server)
                .collect();
            for uid in &mine {
                if !named.contains(uid) {
                    named.push(uid.clone());
                }
            }
            literals.push(mine);
        }
        Ok(Shared {
            compiled,
            guardrails,
            messages,
            unscoped,
            by_principal,
            actions,
            literals,
            named,
            builtin,
            templates,
        })
    }
}

/// The actions a policy's action scope admits; `None` for any action.
fn actions_of(policy: &Policy, names: &Names) -> Option<Vec<Action>> {
    match policy.action_constraint() {
        ActionConstraint::Any => None,
        ActionConstraint::Eq(uid) => Some(Action::of(&uid, names).into_iter().collect()),
        ActionConstraint::In(uids) => Some(uids.iter().filter_map(|u| Action::of(u, names)).collect()),
    }
}

/// Adds the grant links of one agent (and the templates they need) to a policy set.
fn add_grants(set: &mut PolicySet, shared: &Shared, node: &AgentNode) -> Result<(), String> {
    let held: BTreeSet<&Name> = node.scopes.iter().collect();
    for scope in held {
        let Some(template) = shared.templates.get(scope) else {
            continue;
        };
        if set.template(template.id()).is_none() {
            set.add_template(template.clone()).map_err(|e| one_line(&e))?;
        }
        set.link(
            template.id().clone(),
            PolicyId::new(grant_id(scope, &node.id)),
            HashMap::from([(SlotId::principal(), node.uid.clone())]),
        )
        .map_err(|e| one_line(&e))?;
    }
    Ok(())
}

/// The policy id of a grant: `grant/<scope>/<agent id>`.
fn grant_id(scope: &Name, agent: &AgentId) -> String {
    format!("grant/{scope}/{agent}")
}

/// The scope of a grant's policy id.
fn grant_scope_of(id: &str) -> Option<&str> {
    id.strip_prefix("grant/")?.split('/').next()
}

/// The fleet agents and servers that guardrails name literally (teams have no attributes to read).
fn resolve_literals(fleet: &FleetIndex, names: &Names, literals: &[EntityUid]) -> Vec<Entity> {
    let mut out = Vec::new();
    for uid in literals {
        let ty = uid.type_name();
        let id = uid.id().unescaped();
        if ty == &names.agent {
            let node = AgentId::parse(id).ok().and_then(|a| fleet.agents.get(&a).cloned());
            out.extend(node.map(|n| n.entity.clone()));
        } else if ty == &names.server {
            out.extend(fleet.servers.get(id).map(|s| s.entity.clone()));
        }
    }
    dedup(out)
}

/// Keeps the first entity for each uid (request entities come first and win).
fn dedup(entities: Vec<Entity>) -> Vec<Entity> {
    let mut seen: Vec<EntityUid> = Vec::with_capacity(entities.len());
    let mut out = Vec::with_capacity(entities.len());
    for entity in entities {
        let uid = entity.uid();
        if !seen.contains(&uid) {
            seen.push(uid);
            out.push(entity);
        }
    }
    out
}

fn recheck_person(names: &Names) -> Entity {
    let attrs = [(
        "role".to_owned(),
        RestrictedExpression::new_string(warden_core::Role::PlatformAdmin.as_str().to_owned()),
    )];
    Entity::new(
        names.uid(&names.person, RECHECK_PERSON),
        attrs.into_iter().collect(),
        Default::default(),
    )
    .unwrap_or_else(|_| Entity::with_uid(names.uid(&names.person, RECHECK_PERSON)))
}

fn internal(err: &dyn std::fmt::Display) -> Decision {
    Decision::deny(format!("internal policy error, denied: {}", one_line(err)))
}
