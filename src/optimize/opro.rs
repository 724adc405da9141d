//! OPRO's meta-prompt (Yang et al., 2023, "Large Language Models as Optimizers"), for one agent
//! of the MAS: the trajectory of prompts already judged with their scores, worst first, a few of
//! the batch's questions as exemplars, and the request for a new prompt that scores higher.
//! Scores are label-free here: a prompt's win rate against the prompt that was current when it
//! was judged (the same pairwise evaluator every method uses).

use super::meta::{requirement, shown};
use super::state::Scored;
use crate::tasks::TaskKind;

/// Prompts of the trajectory the meta-prompt shows (OPRO keeps the best 20 of 8-token-long
/// instructions; ours are paragraphs, so fewer).
pub const SHOWN: usize = 8;

/// The best [`SHOWN`] prompts of `trajectory` (distinct texts; a later score of the same prompt
/// replaces an earlier one), worst first, as OPRO orders them.
pub fn shown_trajectory(trajectory: &[Scored]) -> Vec<&Scored> {
    let mut latest: Vec<&Scored> = Vec::new();
    for t in trajectory {
        match latest.iter().position(|x| x.prompt == t.prompt) {
            Some(i) => latest[i] = t,
            None => latest.push(t),
        }
    }
    // Best first (later first among equal scores), keep SHOWN, then worst first.
    let mut order: Vec<usize> = (0..latest.len()).collect();
    order.sort_by(|&a, &b| latest[b].score.total_cmp(&latest[a].score).then(b.cmp(&a)));
    order.truncate(SHOWN);
    order.reverse();
    order.into_iter().map(|i| latest[i]).collect()
}

/// What OPRO's meta-prompt shows.
pub struct OproInput<'a> {
    /// Task kind.
    pub kind: TaskKind,
    /// The agent's role type.
    pub role: &'a str,
    /// The role's description.
    pub description: &'a str,
    /// Scored prompts, worst first.
    pub trajectory: &'a [&'a Scored],
    /// Exemplar questions.
    pub questions: &'a [&'a str],
    /// The agent's current prompt.
    pub prompt: &'a str,
}

/// OPRO's meta-prompt.
pub fn opro_prompt(p: &OproInput<'_>) -> String {
    let mut traj = String::new();
    for t in p.trajectory {
        traj.push_str(&format!(
            "<text>\n{}\n</text>\nscore: {:.0}\n\n",
            t.prompt,
            100.0 * t.score
        ));
    }
    let mut ex = String::new();
    for (i, q) in p.questions.iter().enumerate() {
        ex.push_str(&format!("### Problem {}\n{}\n\n", i + 1, shown(q)));
    }
    format!(
        "You write the prompt of one agent in a team of language-model agents that solve problems together.\n\n\
         ## Agent\nType: {role}\nRole: {description}\n\n\
         ## Prompts written so far, with their scores\nEach score (0 to 100) is how often the agent's outputs with that prompt were judged better than with the prompt in use at the time; 50 means as good. They are in ascending order of score.\n\n{traj}\
         ## Problems the agent solves (examples)\n{ex}\
         ## Requirements\nKeep the agent's role and the way it receives its input. {req} The prompt must keep the placeholder {{question}} exactly once{ctx}.\n\n\
         ## The prompt in use now\n<current_prompt>\n{prompt}\n</current_prompt>\n\n\
         ## Your task\nWrite a new prompt that is different from all the prompts above and scores higher than all of them.\n\n\
         Reply in this format:\n<prompt>(the whole new prompt, word for word)</prompt>",
        role = p.role,
        description = p.description,
        req = requirement(p.kind),
        prompt = p.prompt,
        ctx = if p.prompt.contains("{context}") {
            " and {context} exactly once"
        } else {
            ""
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(p: &str, s: f64) -> Scored {
        Scored {
            prompt: p.into(),
            score: s,
            step: 0,
        }
    }

    #[test]
    fn the_trajectory_keeps_the_best_distinct_prompts_worst_first() {
        let mut t: Vec<Scored> = (0..12)
            .map(|i| sc(&format!("p{i}"), i as f64 / 20.0))
            .collect();
        t.push(sc("p11", 0.0)); // re-judged: its latest score counts
        let shown = shown_trajectory(&t);
        assert_eq!(shown.len(), SHOWN);
        let names: Vec<&str> = shown.iter().map(|s| s.prompt.as_str()).collect();
        assert_eq!(names, ["p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10"]);
        assert!(shown.windows(2).all(|w| w[0].score <= w[1].score));
        let text = opro_prompt(&OproInput {
            kind: TaskKind::Math,
            role: "predictor",
            description: "solves",
            trajectory: &shown,
            questions: &["What is 2+2?"],
            prompt: "Solve {question}",
        });
        assert!(text.contains("<text>\np10\n</text>\nscore: 50"));
        assert!(text.contains("<current_prompt>\nSolve {question}\n</current_prompt>"));
        assert!(text.contains("What is 2+2?") && !text.contains("{context} exactly"));
    }
}
