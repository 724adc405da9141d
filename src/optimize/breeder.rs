//! PromptBreeder's mutation operators (Fernando et al., 2023, "Promptbreeder: Self-Referential
//! Self-Improvement via Prompt Evolution"), for one agent of the MAS. A population member
//! carries a mutation prompt; its mutants come from one of three operators drawn per proposal:
//! direct mutation (the member's mutation prompt and a thinking style applied to its prompt),
//! lineage-based mutation (the elites found so far, oldest first, continued by one more), and
//! first-order hypermutation (the mutation prompt is rewritten first, then applied; the child
//! inherits the new one). Every reply carries the result in `<prompt>` tags.

use super::meta::requirement;
use crate::rng::SplitMix64;
use crate::tasks::TaskKind;

/// Mutation prompts (in the style of the paper's appendix list).
pub const MUTATION_PROMPTS: [&str; 10] = [
    "Modify the instruction in a way that no self-respecting language model would fail to follow it.",
    "Rewrite the instruction so that it is clearer and more precise.",
    "Make the instruction shorter while keeping everything that matters.",
    "Add one piece of advice to the instruction that would prevent a common mistake.",
    "Change the instruction so that it encourages checking the work before answering.",
    "Rephrase the instruction as if an expert were explaining it to a capable student.",
    "Improve the instruction by making the steps of the work explicit.",
    "Rewrite the instruction to remove any ambiguity about the expected output.",
    "Make the instruction more motivating and confident without adding length.",
    "Simplify the instruction so that a beginner could follow it without mistakes.",
];

/// Thinking styles (the paper's cognitive heuristics, abridged).
pub const THINKING_STYLES: [&str; 10] = [
    "Let's think step by step.",
    "How could I devise an experiment to help solve that problem?",
    "How can I simplify the problem so that it is easier to solve?",
    "What are the key assumptions underlying this problem?",
    "Let's make a step by step plan and implement it with good explanation.",
    "How can I break down this problem into smaller, more manageable parts?",
    "Critical thinking: analyze the problem from different perspectives and question assumptions.",
    "Let's think about what could go wrong and how to avoid it.",
    "Use reflective thinking: step back and consider the approach before answering.",
    "What is the core of the problem, and what is the simplest correct way to reach it?",
];

/// The rewrite of the mutation prompt before a hypermutation (the paper's hyper-mutation prompt).
pub const HYPER_PROMPT: &str = "Please summarize and improve the following instruction.";

/// A mutation operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// Mutation prompt × thinking style applied to the member's prompt.
    Direct,
    /// The elites so far, oldest first, continued.
    Lineage,
    /// The mutation prompt rewritten first, then applied.
    Hyper,
}

impl Operator {
    /// Name for the candidate record.
    pub fn name(self) -> &'static str {
        match self {
            Operator::Direct => "direct",
            Operator::Lineage => "lineage",
            Operator::Hyper => "hypermutation",
        }
    }
}

/// One proposal's draws: the operator (direct 60%, lineage 20%, hypermutation 20%; lineage
/// needs two elites and falls back to direct), the thinking style, and the mutation prompt of
/// a member that carries none yet.
pub fn draw(seed: u64, elites: usize) -> (Operator, &'static str, &'static str) {
    let mut rng = SplitMix64::new(seed);
    let op = match rng.next_u64() % 10 {
        0..=5 => Operator::Direct,
        6 | 7 if elites >= 2 => Operator::Lineage,
        6 | 7 => Operator::Direct,
        _ => Operator::Hyper,
    };
    let style = THINKING_STYLES[(rng.next_u64() % THINKING_STYLES.len() as u64) as usize];
    let mutation = MUTATION_PROMPTS[(rng.next_u64() % MUTATION_PROMPTS.len() as u64) as usize];
    (op, style, mutation)
}

/// The agent whose prompt is mutated.
pub struct Agent<'a> {
    /// Task kind.
    pub kind: TaskKind,
    /// Role type.
    pub role: &'a str,
    /// Role description.
    pub description: &'a str,
    /// The member's prompt.
    pub prompt: &'a str,
}

fn frame(a: &Agent<'_>, body: &str) -> String {
    format!(
        "You edit the prompt (the instruction) of one agent in a team of language-model agents that solve problems together.\n\n\
         ## Agent\nType: {role}\nRole: {description}\n\n\
         {body}\n\n\
         ## Requirements\nKeep the agent's role and the way it receives its input. {req} The prompt must keep the placeholder {{question}} exactly once{ctx}.\n\n\
         Reply in this format:\n<prompt>(the whole new prompt, word for word)</prompt>",
        role = a.role,
        description = a.description,
        req = requirement(a.kind),
        ctx = if a.prompt.contains("{context}") {
            " and {context} exactly once"
        } else {
            ""
        },
    )
}

/// Direct mutation: `mutation` and `style` applied to the member's prompt.
pub fn direct_prompt(a: &Agent<'_>, mutation: &str, style: &str) -> String {
    frame(
        a,
        &format!(
            "## Mutation\n{mutation} {style}\n\nINSTRUCTION:\n<current_prompt>\n{}\n</current_prompt>\n\nWrite the INSTRUCTION MUTANT.",
            a.prompt
        ),
    )
}

/// Lineage-based mutation: the elites so far, oldest first, continued by a better one.
pub fn lineage_prompt(a: &Agent<'_>, elites: &[&str]) -> String {
    let mut list = String::new();
    for (i, e) in elites.iter().enumerate() {
        list.push_str(&format!("INSTRUCTION {}:\n<text>\n{e}\n</text>\n\n", i + 1));
    }
    frame(
        a,
        &format!(
            "## A list of instructions, each better than the one before\n{list}## The current member\n<current_prompt>\n{}\n</current_prompt>\n\nContinue the list with the next, even better instruction.",
            a.prompt
        ),
    )
}

/// The hypermutation's first call: the mutation prompt rewritten (reply in `<prompt>` tags).
pub fn hyper_prompt(mutation: &str) -> String {
    format!(
        "{HYPER_PROMPT} The instruction tells a writer how to change the prompt of a language-model agent; make it more useful for that.\n\nINSTRUCTION:\n<current_prompt>\n{mutation}\n</current_prompt>\n\nReply in this format:\n<prompt>(the improved instruction)</prompt>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_drawn_in_their_proportions_and_seeded() {
        let mut n = [0usize; 3];
        for s in 0..3000u64 {
            let (op, style, m) = draw(crate::rng::derive_seed(&[s]), 5);
            assert!(THINKING_STYLES.contains(&style) && MUTATION_PROMPTS.contains(&m));
            n[op as usize] += 1;
        }
        assert!((1600..2000).contains(&n[0]), "{n:?}");
        assert!((450..750).contains(&n[1]), "{n:?}");
        assert!((450..750).contains(&n[2]), "{n:?}");
        assert_eq!(draw(7, 5), draw(7, 5));
        // Without two elites there is no lineage.
        assert!((0..500u64).all(|s| draw(crate::rng::derive_seed(&[s]), 1).0 != Operator::Lineage));
    }

    #[test]
    fn every_operator_shows_the_member_and_asks_for_a_prompt_block() {
        let a = Agent {
            kind: TaskKind::Choice,
            role: "reflector",
            description: "checks",
            prompt: "Check {question} and {context}",
        };
        let d = direct_prompt(&a, MUTATION_PROMPTS[0], THINKING_STYLES[0]);
        let l = lineage_prompt(&a, &["old one", "newer one"]);
        for t in [&d, &l] {
            assert!(
                t.contains("<current_prompt>\nCheck {question} and {context}\n</current_prompt>")
            );
            assert!(t.contains("{context} exactly once") && t.ends_with("</prompt>"));
        }
        assert!(d.contains(MUTATION_PROMPTS[0]) && d.contains(THINKING_STYLES[0]));
        assert!(l.contains("INSTRUCTION 2:\n<text>\nnewer one\n</text>"));
        let h = hyper_prompt("Make it better.");
        assert!(h.contains("<current_prompt>\nMake it better.\n</current_prompt>"));
    }
}
