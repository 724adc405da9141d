//! Chat prompts: the model's own jinja `tokenizer.chat_template`, rendered with minijinja the way
//! HF transformers renders it (trim_blocks, lstrip_blocks, Python string methods).
//!
//! Owns turning a list of messages into prompt text. Must not tokenize (the engine does, with
//! special tokens recognized) and must not guess a model family from its name.

use super::error::{EngineError, Result};
use serde::{Deserialize, Serialize};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System instructions.
    System,
    /// The user turn.
    User,
    /// A model turn.
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// Who says it.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// Used when a GGUF carries no template: plain ChatML, which both shipped models use.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A compiled chat template.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
    enable_thinking: bool,
}

impl ChatTemplate {
    /// Compiles a jinja chat template; `bos`/`eos` are the token strings the template may use.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| {
                EngineError::Template(format!("the model's chat template does not compile: {e:#}"))
            })?;
        Ok(Self {
            env,
            source: source.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            enable_thinking: false,
        })
    }

    /// The value of the template's `enable_thinking` variable (false unless set here: a
    /// hybrid-thinking template then closes an empty reasoning block in the generation prompt).
    pub fn with_thinking(mut self, on: bool) -> Self {
        self.enable_thinking = on;
        self
    }

    /// The template source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders messages; with `add_generation_prompt` the text ends where the assistant speaks.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, add_generation_prompt, self.enable_thinking)
    }

    /// [`ChatTemplate::render`] with this `enable_thinking` value (a per-request override).
    pub fn render_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        enable_thinking: bool,
    ) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| EngineError::Template(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
            enable_thinking => enable_thinking,
        })
        .map_err(|e| EngineError::Template(format!("rendering failed: {e:#}")))
    }

    /// The template's end-of-turn token strings that appear in the vocabulary (e.g.
    /// `<|im_end|>`), found by rendering a probe conversation and taking the special token that
    /// closes the assistant message.
    pub fn end_of_turn_markers(&self, specials: &[String]) -> Vec<String> {
        let probe = [
            Message::system("S"),
            Message::user("U"),
            Message::assistant("XYZZY"),
        ];
        let Ok(text) = self.render(&probe, false) else {
            return Vec::new();
        };
        let Some(at) = text.find("XYZZY") else {
            return Vec::new();
        };
        let after = &text[at + "XYZZY".len()..];
        specials
            .iter()
            .filter(|s| !s.is_empty() && after.trim_start().starts_with(s.as_str()))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback_renders_generation_prompt() {
        let t = ChatTemplate::new(CHATML_TEMPLATE, "", "").unwrap();
        let s = t
            .render(&[Message::system("sys"), Message::user("hi")], true)
            .unwrap();
        assert_eq!(
            s,
            "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        let eot = t.end_of_turn_markers(&["<|im_start|>".into(), "<|im_end|>".into()]);
        assert_eq!(eot, vec!["<|im_end|>".to_string()]);
    }

    #[test]
    fn broken_template_is_a_clear_error() {
        let err = ChatTemplate::new("{% for %}", "", "").err().unwrap();
        assert!(err.to_string().contains("does not compile"), "{err}");
    }

    #[test]
    fn raise_exception_surfaces() {
        let t = ChatTemplate::new("{{ raise_exception('no system role') }}", "", "").unwrap();
        let err = t.render(&[], true).unwrap_err();
        assert!(err.to_string().contains("no system role"), "{err}");
    }

    #[test]
    fn thinking_is_off_unless_asked_for() {
        // The generation-prompt tail of a hybrid-thinking (Qwen3-style) template: with the
        // switch off an empty reasoning block is closed before the model speaks.
        let hybrid = format!(
            "{}{}",
            CHATML_TEMPLATE.trim_end_matches("{% endif %}"),
            "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\n\n</think>\n\n' }}{% endif %}{% endif %}"
        );
        let msgs = [Message::user("hi")];
        let off = ChatTemplate::new(&hybrid, "", "").unwrap();
        assert!(off
            .render(&msgs, true)
            .unwrap()
            .ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
        let on = ChatTemplate::new(&hybrid, "", "")
            .unwrap()
            .with_thinking(true);
        assert!(on
            .render(&msgs, true)
            .unwrap()
            .ends_with("<|im_start|>assistant\n"));
        // Templates without the switch render the same either way.
        let plain = ChatTemplate::new(CHATML_TEMPLATE, "", "").unwrap();
        assert_eq!(
            plain.render(&msgs, true).unwrap(),
            plain.with_thinking(true).render(&msgs, true).unwrap()
        );
    }
}
