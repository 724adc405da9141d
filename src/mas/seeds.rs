//! Seed prompts, role descriptions and summary (compression) prompts, per role type and task
//! kind. Written for maspo to the intent described in the MASPO paper and reference code (docs/design/algorithm.md
//! §6): solvers reason step by step and put the final answer once in `<answer>` tags (code:
//! one fenced Python block); reviewers check the upstream work and restate a corrected answer.
//!
//! Owns prompt text only; graph shapes are in [`super::topology`].

use crate::tasks::TaskKind;

/// How the final answer must be written, per task kind (also the optimizer's requirement).
pub fn answer_format(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Math => "End with the final answer, written once inside <answer></answer> tags, in its simplest form (for example <answer>\\frac{3}{4}</answer>).",
        TaskKind::Choice => "End with the letter of the correct option, written once inside <answer></answer> tags (for example <answer>B</answer>).",
        TaskKind::Code => "End with the complete Python function in one ```python code block, without example usage or tests.",
    }
}

/// One-line description of a role type, for the optimizer and the judges.
pub fn role_description(role: &str, kind: TaskKind) -> String {
    let solver = match kind {
        TaskKind::Code => "writes a complete Python implementation of the task",
        _ => "solves the problem step by step and states the final answer",
    };
    match role {
        "predictor" | "solver" => format!("Solver: {solver}."),
        "reflector" => "Reviewer: checks the given solution, corrects its mistakes and states the final result.".into(),
        "summarizer" => "Analyst: restates the problem's givens, unknowns and constraints without solving it.".into(),
        "debator" => "Debater: compares the solutions of several agents and decides which is right.".into(),
        "aggregator" => "Aggregator: reads all agents' answers and commits to the single best final answer.".into(),
        "critic" => "Critic: points out concrete errors and gaps in a solution, without rewriting it.".into(),
        "refiner" => "Refiner: rewrites the solution using the critic's feedback and states the final result.".into(),
        "math_agent" => format!("Mathematician: {solver} with rigorous mathematical reasoning."),
        "science_agent" => format!("Scientist: {solver} using domain knowledge and careful checks."),
        "code_agent" => format!("Programmer: {solver}, reasoning like a programmer about exact computation."),
        "task_summarizer" => "Lead: combines the specialists' work into one final answer.".into(),
        "vote" => "Majority vote over the predecessors' answers (no LLM).".into(),
        other => format!("Agent `{other}`."),
    }
}

/// The seed prompt of a role type for a task kind. `None` for role types without a built-in
/// seed (custom graphs must then give a template).
pub fn seed_template(role: &str, kind: TaskKind) -> Option<String> {
    let fmt = answer_format(kind);
    let (thing, solve) = match kind {
        TaskKind::Code => ("task", "Write a correct Python function for the task below. Think briefly about the approach and the edge cases the task implies."),
        TaskKind::Choice => ("question", "Answer the multiple-choice question below. Reason step by step, then pick one option."),
        TaskKind::Math => ("problem", "Solve the problem below. Reason step by step and check each computation."),
    };
    let t = match role {
        "predictor" | "solver" => format!("You are an expert problem solver. {solve} {fmt}\n\nThe {thing}:\n{{question}}"),
        "reflector" => format!(
            "You are a careful reviewer. Below is a {thing} and a summary of another agent's solution. Check its reasoning and result; if you find a mistake, fix it, otherwise confirm it. {fmt}\n\nThe {thing}:\n{{question}}\n\nThe other agent's solution:\n{{context}}"
        ),
        "summarizer" => format!(
            "Read the {thing} below and restate it concisely: list the given facts, what is asked and any constraints. Do not solve it.\n\nThe {thing}:\n{{question}}"
        ),
        "debator" => format!(
            "Several agents worked on the {thing} below; their solutions are separated by ---. Compare them, find the errors, and decide what is correct (it may be none of them). {fmt}\n\nThe {thing}:\n{{question}}\n\nTheir solutions:\n{{context}}"
        ),
        "aggregator" => format!(
            "You are the final decision maker. Several agents answered the {thing} below; their answers are separated by ---. Weigh them, check the most promising one, and commit to one final answer. {fmt}\n\nThe {thing}:\n{{question}}\n\nThe agents' answers:\n{{context}}"
        ),
        "critic" => format!(
            "You are a strict critic. Below is a {thing} and a draft solution. List the concrete errors, gaps or unchecked steps in the draft in a few short bullet points. Do not write a new solution.\n\nThe {thing}:\n{{question}}\n\nThe draft:\n{{context}}"
        ),
        "refiner" => format!(
            "Improve a draft solution using a critic's feedback. Below are the {thing}, the draft and the feedback (separated by ---). Fix every valid point and keep what was right. {fmt}\n\nThe {thing}:\n{{question}}\n\nDraft and feedback:\n{{context}}"
        ),
        "math_agent" => format!("You are a mathematician. {solve} Use rigorous mathematical reasoning. {fmt}\n\nThe {thing}:\n{{question}}"),
        "science_agent" => format!("You are a scientist. {solve} Use domain knowledge and sanity-check units and magnitudes. {fmt}\n\nThe {thing}:\n{{question}}"),
        "code_agent" => format!("You are a programmer. {solve} Reason as you would when writing a program: exact, explicit steps. {fmt}\n\nThe {thing}:\n{{question}}"),
        "task_summarizer" => format!(
            "You lead a team of specialists (a mathematician, a scientist and a programmer) who each worked on the {thing} below; their work is separated by ---. Compare their results, resolve disagreements by checking the reasoning, and give the team's final answer. {fmt}\n\nThe {thing}:\n{{question}}\n\nThe specialists' work:\n{{context}}"
        ),
        _ => return None,
    };
    Some(t)
}

/// The summary prompt of the two-call protocol (`{raw}` is the agent's full output): at most 30
/// words of key steps plus the final answer (50 words of key logic for code).
pub fn summary_prompt(kind: TaskKind, raw: &str) -> String {
    match kind {
        TaskKind::Code => format!(
            "Summarize the following solution in at most 50 words: the key logic of the code. Output only the summary.\n\n{raw}"
        ),
        _ => format!(
            "Summarize the following solution in at most 30 words: the key steps and the final answer. Output only the summary.\n\n{raw}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mas::graph::check_template;

    #[test]
    fn every_seed_is_a_valid_template() {
        let roles = [
            ("predictor", false),
            ("reflector", true),
            ("summarizer", false),
            ("debator", true),
            ("aggregator", true),
            ("critic", true),
            ("refiner", true),
            ("math_agent", false),
            ("science_agent", false),
            ("code_agent", false),
            ("task_summarizer", true),
        ];
        for kind in [TaskKind::Math, TaskKind::Choice, TaskKind::Code] {
            for (role, inputs) in roles {
                let t = seed_template(role, kind).unwrap();
                check_template(role, &t, inputs).unwrap();
                assert!(!role_description(role, kind).is_empty());
            }
        }
        assert!(seed_template("nobody", TaskKind::Math).is_none());
    }
}
