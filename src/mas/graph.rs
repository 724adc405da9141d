//! `AgentGraph`: a validated DAG of agents with topological order, execution levels,
//! predecessors/successors and the terminal agent.
//!
//! Owns structure and validation only; what an agent says is in [`super::seeds`], how the
//! graph runs is in [`super::run`].

use super::error::MasError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};

/// How an agent produces its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// An LLM call (then a summary call under the two-call protocol).
    #[default]
    Llm,
    /// Majority vote over the predecessors' extracted answers; no LLM call, no prompt.
    Vote,
}

/// One agent of a MAS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Stable id, unique in the graph (prompt files and traces are keyed by it).
    pub id: String,
    /// Role type (e.g. `predictor`, `reflector`); selects the role description shown to the
    /// optimizer and judges.
    pub role: String,
    /// One-line role description.
    #[serde(default)]
    pub description: String,
    /// Seed prompt with `{question}` and (for agents with predecessors) `{context}`.
    #[serde(default)]
    pub template: String,
    /// LLM or vote.
    #[serde(default)]
    pub kind: AgentKind,
    /// Sampling temperature of this agent's answer call (0 = greedy).
    #[serde(default)]
    pub temperature: f32,
    /// Most tokens of this agent's answer (default: the run's setting).
    #[serde(default)]
    pub max_tokens: Option<usize>,
}

impl AgentSpec {
    /// A greedy LLM agent.
    pub fn llm(id: &str, role: &str, description: &str, template: &str) -> Self {
        Self {
            id: id.to_string(),
            role: role.to_string(),
            description: description.to_string(),
            template: template.to_string(),
            kind: AgentKind::Llm,
            temperature: 0.0,
            max_tokens: None,
        }
    }
}

/// A validated DAG of agents.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentGraph {
    name: String,
    agents: Vec<AgentSpec>,
    succ: Vec<Vec<usize>>,
    pred: Vec<Vec<usize>>,
    order: Vec<usize>,
    levels: Vec<Vec<usize>>,
    terminal: usize,
}

impl AgentGraph {
    /// Builds and validates a graph: unique ids, edges between known agents, no self-loops or
    /// cycles, usable templates, exactly one sink (the terminal agent).
    pub fn new(
        name: &str,
        agents: Vec<AgentSpec>,
        edges: &[(String, String)],
    ) -> Result<Self, MasError> {
        if agents.is_empty() {
            return Err(MasError::Graph(format!("`{name}` has no agents")));
        }
        let index = |id: &str| agents.iter().position(|a| a.id == id);
        for (i, a) in agents.iter().enumerate() {
            if a.id.trim().is_empty() {
                return Err(MasError::Graph(format!("agent #{i} has an empty id")));
            }
            if index(&a.id) != Some(i) {
                return Err(MasError::Graph(format!("duplicate agent id `{}`", a.id)));
            }
        }
        let n = agents.len();
        let mut succ = vec![Vec::new(); n];
        let mut pred = vec![Vec::new(); n];
        let known = || {
            agents
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (from, to) in edges {
            let f = index(from).ok_or_else(|| {
                MasError::Graph(format!(
                    "edge {from} -> {to}: unknown agent `{from}` (agents: {})",
                    known()
                ))
            })?;
            let t = index(to).ok_or_else(|| {
                MasError::Graph(format!(
                    "edge {from} -> {to}: unknown agent `{to}` (agents: {})",
                    known()
                ))
            })?;
            if f == t {
                return Err(MasError::Graph(format!("self-loop on `{from}`")));
            }
            if !succ[f].contains(&t) {
                succ[f].push(t);
                pred[t].push(f);
            }
        }
        let levels = kahn_levels(&succ, &pred).ok_or_else(|| {
            MasError::Graph(format!(
                "`{name}` has a cycle; an agent graph must be acyclic"
            ))
        })?;
        let order: Vec<usize> = levels.iter().flatten().copied().collect();
        let sinks: Vec<usize> = (0..n).filter(|&i| succ[i].is_empty()).collect();
        if sinks.len() != 1 {
            let names: Vec<&str> = sinks.iter().map(|&i| agents[i].id.as_str()).collect();
            return Err(MasError::Graph(format!(
                "`{name}` must have exactly one terminal agent (no successors); found {}: {} — add edges so every other agent feeds into the final one",
                sinks.len(),
                names.join(", ")
            )));
        }
        let graph = Self {
            name: name.to_string(),
            terminal: sinks[0],
            agents,
            succ,
            pred,
            order,
            levels,
        };
        for i in 0..n {
            graph.check_agent(i)?;
        }
        Ok(graph)
    }

    fn check_agent(&self, i: usize) -> Result<(), MasError> {
        let a = &self.agents[i];
        if a.kind == AgentKind::Vote {
            if self.pred[i].is_empty() {
                return Err(MasError::Template {
                    agent: a.id.clone(),
                    reason: "a vote agent needs predecessors to vote over".into(),
                });
            }
            return Ok(());
        }
        check_template(&a.id, &a.template, !self.pred[i].is_empty())
    }

    /// The graph's name (topology or config file).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// All agents, in definition order (the reference's integer ids are these positions).
    pub fn agents(&self) -> &[AgentSpec] {
        &self.agents
    }

    /// The agent at `i`.
    pub fn agent(&self, i: usize) -> &AgentSpec {
        &self.agents[i]
    }

    /// Position of the agent with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.agents.iter().position(|a| a.id == id)
    }

    /// Direct predecessors of `i`, in edge order.
    pub fn predecessors(&self, i: usize) -> &[usize] {
        &self.pred[i]
    }

    /// Direct successors of `i`, in edge order.
    pub fn successors(&self, i: usize) -> &[usize] {
        &self.succ[i]
    }

    /// Every agent reachable from `i` (not including `i`), in topological order.
    pub fn descendants(&self, i: usize) -> Vec<usize> {
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<usize> = self.succ[i].iter().copied().collect();
        while let Some(j) = queue.pop_front() {
            if seen.insert(j) {
                queue.extend(self.succ[j].iter().copied());
            }
        }
        self.order
            .iter()
            .copied()
            .filter(|j| seen.contains(j))
            .collect()
    }

    /// Topological order (Kahn, level by level).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Execution levels: agents of one level depend only on earlier levels.
    pub fn levels(&self) -> &[Vec<usize>] {
        &self.levels
    }

    /// The terminal agent (the only one without successors); its output is the answer.
    pub fn terminal(&self) -> usize {
        self.terminal
    }

    /// Agents whose prompts can be optimized (LLM agents), in topological order.
    pub fn optimizable(&self) -> Vec<usize> {
        self.order
            .iter()
            .copied()
            .filter(|&i| self.agents[i].kind == AgentKind::Llm)
            .collect()
    }

    /// Edges as (from id, to id) pairs.
    pub fn edges(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (f, ts) in self.succ.iter().enumerate() {
            for &t in ts {
                out.push((self.agents[f].id.clone(), self.agents[t].id.clone()));
            }
        }
        out
    }

    /// A copy with agent `i`'s template replaced (validated).
    pub fn with_template(&self, i: usize, template: &str) -> Result<Self, MasError> {
        let mut g = self.clone();
        g.agents[i].template = template.to_string();
        g.check_agent(i)?;
        Ok(g)
    }
}

/// Checks that a template has exactly one `{question}`, `{context}` when the agent has inputs,
/// and no other `{identifier}` placeholders.
pub fn check_template(agent: &str, template: &str, has_inputs: bool) -> Result<(), MasError> {
    let err = |reason: String| MasError::Template {
        agent: agent.to_string(),
        reason,
    };
    let mut question = 0;
    let mut context = 0;
    for name in placeholders(template) {
        match name.as_str() {
            "question" => question += 1,
            "context" => context += 1,
            other => {
                return Err(err(format!(
                    "unknown placeholder `{{{other}}}`; templates may use only {{question}} and {{context}}"
                )))
            }
        }
    }
    if question != 1 {
        return Err(err(format!(
            "the template must contain `{{question}}` exactly once (found {question})"
        )));
    }
    if context > 1 {
        return Err(err(format!(
            "`{{context}}` may appear at most once (found {context})"
        )));
    }
    if has_inputs && context == 0 {
        return Err(err(
            "this agent has predecessors but its template has no `{context}`: their outputs would be dropped (add a line like `Context:\\n{context}`)".into(),
        ));
    }
    Ok(())
}

/// `{name}` groups whose content is an identifier (letters, digits, `_`, starting with a letter
/// or `_`). Literal braces such as `{1,2}` or JSON are not placeholders.
fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let inner = &after[..close];
                let ident = !inner.is_empty()
                    && inner
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if ident {
                    out.push(inner.to_string());
                    rest = &after[close + 1..];
                } else {
                    rest = after;
                }
            }
            None => break,
        }
    }
    out
}

/// Kahn's algorithm by layers; `None` when there is a cycle.
fn kahn_levels(succ: &[Vec<usize>], pred: &[Vec<usize>]) -> Option<Vec<Vec<usize>>> {
    let n = succ.len();
    let mut indeg: Vec<usize> = pred.iter().map(|p| p.len()).collect();
    let mut level: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut levels = Vec::new();
    let mut seen = 0;
    while !level.is_empty() {
        seen += level.len();
        let mut next = Vec::new();
        for &i in &level {
            for &j in &succ[i] {
                indeg[j] -= 1;
                if indeg[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        levels.push(std::mem::take(&mut level));
        level = next;
    }
    (seen == n).then_some(levels)
}

/// Fills a template: literal replacement of `{question}` and `{context}` (other braces are
/// left alone, so code and JSON in prompts are safe).
pub fn fill(template: &str, question: &str, context: &str) -> String {
    // Replace via a placeholder-free split so a question containing "{context}" is not
    // substituted twice.
    let mut out = String::with_capacity(template.len() + question.len() + context.len());
    let mut rest = template;
    loop {
        let q = rest.find("{question}");
        let c = rest.find("{context}");
        let (at, len, value) = match (q, c) {
            (Some(q), Some(c)) if c < q => (c, "{context}".len(), context),
            (Some(q), _) => (q, "{question}".len(), question),
            (None, Some(c)) => (c, "{context}".len(), context),
            (None, None) => break,
        };
        out.push_str(&rest[..at]);
        out.push_str(value);
        rest = &rest[at + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(id: &str, t: &str) -> AgentSpec {
        AgentSpec::llm(id, "predictor", "", t)
    }

    fn e(f: &str, t: &str) -> (String, String) {
        (f.to_string(), t.to_string())
    }

    #[test]
    fn levels_terminal_descendants() {
        let g = AgentGraph::new(
            "h",
            vec![
                a("m", "{question}"),
                a("s", "{question}"),
                a("sum", "{question} {context}"),
            ],
            &[e("m", "sum"), e("s", "sum")],
        )
        .unwrap();
        assert_eq!(g.levels(), &[vec![0, 1], vec![2]]);
        assert_eq!(g.terminal(), 2);
        assert_eq!(g.descendants(0), vec![2]);
        assert_eq!(g.predecessors(2), &[0, 1]);
    }

    #[test]
    fn rejects_cycles_unknown_and_bad_templates() {
        let cyc = AgentGraph::new(
            "c",
            vec![a("x", "{question}{context}"), a("y", "{question}{context}")],
            &[e("x", "y"), e("y", "x")],
        );
        assert!(cyc.unwrap_err().to_string().contains("cycle"));
        let unk = AgentGraph::new("u", vec![a("x", "{question}")], &[e("x", "z")]);
        assert!(unk.unwrap_err().to_string().contains("unknown agent `z`"));
        let ph = AgentGraph::new("p", vec![a("x", "{question} {foo}")], &[]);
        assert!(ph.unwrap_err().to_string().contains("{foo}"));
        let noq = AgentGraph::new("q", vec![a("x", "hello")], &[]);
        assert!(noq.unwrap_err().to_string().contains("{question}"));
        let noctx = AgentGraph::new(
            "n",
            vec![a("x", "{question}"), a("y", "{question}")],
            &[e("x", "y")],
        );
        assert!(noctx.unwrap_err().to_string().contains("{context}"));
        let two_sinks = AgentGraph::new("t", vec![a("x", "{question}"), a("y", "{question}")], &[]);
        assert!(two_sinks
            .unwrap_err()
            .to_string()
            .contains("exactly one terminal"));
        // Literal braces are fine.
        assert!(AgentGraph::new("j", vec![a("x", "{question} {1,2} {\"a\": 1}")], &[]).is_ok());
    }

    #[test]
    fn fill_is_literal_and_single_pass() {
        assert_eq!(
            fill("Q: {question}\nC: {context}", "what is {context}?", "ctx"),
            "Q: what is {context}?\nC: ctx"
        );
    }
}
