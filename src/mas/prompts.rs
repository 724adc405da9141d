//! `PromptSet`: the prompts of every LLM agent (agent id → template), its content hash, and
//! prompt files in the reference implementation's JSON shape.
//!
//! The reference writes `{"0": "...", "1": "..."}` keyed by integer agent ids (positions in its
//! agent list). maspo writes the same shape so files move between the two, and reads files keyed
//! either by those integers or by agent ids.

use super::error::MasError;
use super::graph::{check_template, AgentGraph, AgentKind};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// Prompts of a MAS, keyed by agent id (sorted, so hashing and serialization are stable).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PromptSet(pub BTreeMap<String, String>);

impl PromptSet {
    /// The graph's own templates (the seed prompts).
    pub fn seeds(graph: &AgentGraph) -> Self {
        Self(
            graph
                .agents()
                .iter()
                .filter(|a| a.kind == AgentKind::Llm)
                .map(|a| (a.id.clone(), a.template.clone()))
                .collect(),
        )
    }

    /// The prompt of agent `id`.
    pub fn get(&self, id: &str) -> Option<&str> {
        self.0.get(id).map(String::as_str)
    }

    /// A copy with one agent's prompt replaced.
    pub fn with(&self, id: &str, prompt: &str) -> Self {
        let mut out = self.clone();
        out.0.insert(id.to_string(), prompt.to_string());
        out
    }

    /// sha256 over the sorted (id, prompt) pairs, hex; identifies a candidate.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.0 {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// Checks that every LLM agent of `graph` has a usable prompt and nothing else is present.
    pub fn validate(&self, graph: &AgentGraph) -> Result<(), MasError> {
        for (i, a) in graph.agents().iter().enumerate() {
            if a.kind != AgentKind::Llm {
                continue;
            }
            let p = self.get(&a.id).ok_or_else(|| MasError::Template {
                agent: a.id.clone(),
                reason: "no prompt for this agent in the prompt set".into(),
            })?;
            check_template(&a.id, p, !graph.predecessors(i).is_empty())?;
        }
        Ok(())
    }

    /// Reads a prompts file (reference shape). Keys are agent ids or the reference's integer
    /// ids; agents the file does not mention keep their seed prompt.
    pub fn load(path: &Path, graph: &AgentGraph) -> Result<Self, MasError> {
        let io = |source| MasError::Io {
            path: path.to_path_buf(),
            source,
        };
        // `.gz` files (best prompts of a run on a protected dataset) are read decompressed.
        let text = if path.extension().is_some_and(|e| e == "gz") {
            let bytes = std::fs::read(path).map_err(io)?;
            let mut t = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
                &mut t,
            )
            .map_err(io)?;
            t
        } else {
            std::fs::read_to_string(path).map_err(io)?
        };
        let map: BTreeMap<String, String> =
            serde_json::from_str(&text).map_err(|e| MasError::Parse {
                path: path.to_path_buf(),
                reason: format!("expected a JSON object of agent id → prompt string: {e}"),
            })?;
        let mut set = Self::seeds(graph);
        for (key, prompt) in map {
            let idx = graph.index_of(&key).or_else(|| {
                key.parse::<usize>()
                    .ok()
                    .filter(|&i| i < graph.agents().len())
            });
            let Some(i) = idx.filter(|&i| graph.agent(i).kind == AgentKind::Llm) else {
                let known = graph
                    .agents()
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.kind == AgentKind::Llm)
                    .map(|(i, a)| format!("{} ({i})", a.id))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(MasError::UnknownAgent {
                    path: path.to_path_buf(),
                    key,
                    known,
                });
            };
            set.0.insert(graph.agent(i).id.clone(), prompt);
        }
        set.validate(graph).map_err(|e| MasError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(set)
    }

    /// The reference JSON shape: integer agent ids (positions) → prompt, pretty-printed.
    pub fn to_reference_json(&self, graph: &AgentGraph) -> String {
        let map: BTreeMap<usize, &str> = graph
            .agents()
            .iter()
            .enumerate()
            .filter_map(|(i, a)| self.get(&a.id).map(|p| (i, p)))
            .collect();
        let obj: serde_json::Map<String, serde_json::Value> = map
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        serde_json::to_string_pretty(&obj).unwrap_or_default()
    }

    /// Writes the reference JSON shape atomically.
    pub fn save(&self, path: &Path, graph: &AgentGraph) -> Result<(), MasError> {
        crate::fsutil::write_atomic(path, self.to_reference_json(graph).as_bytes()).map_err(
            |source| MasError::Io {
                path: path.to_path_buf(),
                source,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mas::topology::{build, Topology, TopologyOptions};
    use crate::tasks::TaskKind;

    #[test]
    fn round_trip_reference_shape_and_names() {
        let g = build(
            Topology::Reflect,
            TaskKind::Math,
            &TopologyOptions::default(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.json");
        let set = PromptSet::seeds(&g).with("reflector", "Check: {question}\n{context}");
        set.save(&p, &g).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"1\": \"Check: {question}\\n{context}\""));
        assert_eq!(PromptSet::load(&p, &g).unwrap(), set);
        std::fs::write(&p, r#"{"predictor": "Solve {question}"}"#).unwrap();
        assert_eq!(
            PromptSet::load(&p, &g).unwrap().get("predictor"),
            Some("Solve {question}")
        );
        std::fs::write(&p, r#"{"7": "x {question}"}"#).unwrap();
        let e = PromptSet::load(&p, &g).unwrap_err().to_string();
        assert!(
            e.contains("unknown agent `7`") && e.contains("reflector (1)"),
            "{e}"
        );
        std::fs::write(&p, r#"{"1": "no placeholders"}"#).unwrap();
        assert!(PromptSet::load(&p, &g)
            .unwrap_err()
            .to_string()
            .contains("{question}"));
        assert_ne!(set.hash(), PromptSet::seeds(&g).hash());
    }
}
