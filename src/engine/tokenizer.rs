//! The tokenizer: built from the GGUF's own vocabulary (gpt2-style byte-level BPE), or loaded from
//! a `tokenizer.json` beside the weights.
//!
//! Owns text ↔ ids and the special-token table (end-of-turn ids come from here, never from
//! literals). Must not know about chat roles; that is the chat template's job.
//!
//! Why our own builder: candle's `TokenizerFromGguf` falls back to a ByteLevel pre-tokenizer with
//! `add_prefix_space = true` for every `tokenizer.ggml.pre` it does not know (e.g. SmolLM2's
//! `smollm`), which silently inserts "Ġ" after every special token (docs/design/engine.md §3.3).

use super::error::{EngineError, Result};
use super::gguf::GgufFile;
use std::collections::HashMap;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

/// GPT-2's pre-tokenizer pattern (also StarCoder/SmolLM's, after a digit split).
const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Qwen2's pattern (llama.cpp's expansion of HF's case-insensitive contractions).
const QWEN2_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama-3's pattern (`llama-bpe`).
const LLAMA3_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF `tokenizer.ggml.token_type` values.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;
const TOKEN_TYPE_UNUSED: i64 = 5;

/// A tokenizer plus the special ids the engine needs.
pub struct Tokenizer {
    /// Recognizes special-token text (for rendered chat prompts).
    with_specials: tokenizers::Tokenizer,
    /// Encodes special-token text as plain text (for untrusted content).
    plain: tokenizers::Tokenizer,
    /// Token strings by id, for piece-level display.
    vocab_size: usize,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_id: Option<u32>,
    /// Ids of control tokens (type 3), e.g. `<|im_end|>`.
    pub control_ids: Vec<u32>,
    /// Ids that must never be sampled (type 5, unused/padding slots).
    pub unused_ids: Vec<u32>,
    token_to_id: HashMap<String, u32>,
}

impl Tokenizer {
    /// Builds the tokenizer from GGUF metadata, or from `tokenizer.json` next to the model file
    /// when one exists (the special-id table still comes from the GGUF).
    pub fn load(gguf: &GgufFile) -> Result<Self> {
        let tokens = gguf.req_str_array("tokenizer.ggml.tokens");
        let model = gguf.opt_str("tokenizer.ggml.model");
        if model.is_none() {
            gguf.record_missing("tokenizer.ggml.model");
        }
        gguf.check("tokenizer")?;
        let types = gguf
            .opt_i64_array("tokenizer.ggml.token_type")
            .unwrap_or_else(|| vec![1; tokens.len()]);
        let eos_id = gguf
            .opt_u64("tokenizer.ggml.eos_token_id")
            .map(|v| v as u32);
        let bos_id = gguf
            .opt_u64("tokenizer.ggml.bos_token_id")
            .map(|v| v as u32);
        let control_ids = ids_of_type(&types, TOKEN_TYPE_CONTROL);
        let unused_ids = ids_of_type(&types, TOKEN_TYPE_UNUSED);

        let beside = gguf.path().with_file_name("tokenizer.json");
        let base = if beside.is_file() {
            tokenizers::Tokenizer::from_file(&beside).map_err(|e| {
                EngineError::Tokenizer(format!(
                    "{}: {e} (delete it to use the GGUF's own vocabulary)",
                    beside.display()
                ))
            })?
        } else {
            match model.as_deref() {
                Some("gpt2") => build_bpe(gguf, &tokens, &types)?,
                Some(other) => {
                    return Err(EngineError::Tokenizer(format!(
                        "{}: tokenizer.ggml.model `{other}` is not supported (supported: gpt2); put a tokenizer.json beside the model file",
                        gguf.path().display()
                    )))
                }
                None => unreachable!("checked above"),
            }
        };
        let mut plain = base.clone();
        plain.set_encode_special_tokens(true);
        let token_to_id = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Ok(Self {
            with_specials: base,
            plain,
            vocab_size: tokens.len(),
            eos_id,
            bos_id,
            control_ids,
            unused_ids,
            token_to_id,
        })
    }

    /// The tokenizer of a Hugging Face checkpoint directory: `tokenizer.json`, with eos/bos and
    /// the chat template from `tokenizer_config.json` (or `chat_template.jinja`); `config_eos`
    /// (config.json's `eos_token_id`) when the tokenizer config names none. Returns the
    /// template too (`None`: the checkpoint has none).
    pub fn from_hf_dir(
        dir: &std::path::Path,
        config_eos: Option<u32>,
    ) -> Result<(Self, Option<String>)> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(EngineError::Tokenizer(format!(
                "{}: missing (a Hugging Face checkpoint needs its tokenizer.json)",
                path.display()
            )));
        }
        let base = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| EngineError::Tokenizer(format!("{}: {e}", path.display())))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: serde_json::Value = match std::fs::read_to_string(&cfg_path) {
            Ok(t) => serde_json::from_str(&t)
                .map_err(|e| EngineError::Tokenizer(format!("{}: {e}", cfg_path.display())))?,
            Err(_) => serde_json::Value::Null,
        };
        let token_to_id: HashMap<String, u32> = base.get_vocab(true).into_iter().collect();
        let named = |key: &str| -> Option<u32> {
            let v = &cfg[key];
            let text = v.as_str().or_else(|| v["content"].as_str())?;
            token_to_id.get(text).copied()
        };
        let eos_id = named("eos_token").or(config_eos);
        let bos_id = named("bos_token");
        let mut control_ids: Vec<u32> = base
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| *id)
            .collect();
        control_ids.sort_unstable();
        let template = match &cfg["chat_template"] {
            serde_json::Value::String(t) => Some(t.clone()),
            serde_json::Value::Array(named) => named
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str().map(String::from)),
            _ => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
        };
        let mut plain = base.clone();
        plain.set_encode_special_tokens(true);
        Ok((
            Self {
                vocab_size: base.get_vocab_size(true),
                with_specials: base,
                plain,
                eos_id,
                bos_id,
                control_ids,
                unused_ids: Vec::new(),
                token_to_id,
            },
            template,
        ))
    }

    /// A byte-level tokenizer of exactly `vocab` ids for synthetic models: the 256 byte
    /// tokens, then `<|endoftext|>`, `<|im_start|>`, `<|im_end|>` (control; eos is
    /// `<|im_end|>`), then plain filler tokens up to `vocab`. No merges: one token per byte.
    pub fn byte_level(vocab: usize) -> Result<Self> {
        let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
        if vocab < 256 + specials.len() {
            return Err(EngineError::Tokenizer(format!(
                "a byte-level vocabulary needs at least {} ids, not {vocab}",
                256 + specials.len()
            )));
        }
        let mut tokens = byte_alphabet();
        tokens.extend(specials.map(String::from));
        let fill = vocab - tokens.len();
        tokens.extend((0..fill).map(|i| format!("<|synthetic_{i}|>")));
        let mut types = vec![1i64; vocab];
        types[256..256 + specials.len()].fill(TOKEN_TYPE_CONTROL);
        let base = bpe_tokenizer(
            "synthetic",
            "gpt2",
            vec![GPT2_PATTERN],
            false,
            Vec::new(),
            &tokens,
            &types,
        )?;
        let mut plain = base.clone();
        plain.set_encode_special_tokens(true);
        Ok(Self {
            with_specials: base,
            plain,
            vocab_size: vocab,
            eos_id: Some(258),
            bos_id: None,
            control_ids: vec![256, 257, 258],
            unused_ids: Vec::new(),
            token_to_id: tokens
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i as u32))
                .collect(),
        })
    }

    /// Number of ids in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Encodes text in which special-token text (`<|im_start|>`) becomes the special id.
    pub fn encode_with_specials(&self, text: &str) -> Result<Vec<u32>> {
        encode(&self.with_specials, text)
    }

    /// Encodes text treating special-token text as plain characters (for untrusted content).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        encode(&self.plain, text)
    }

    /// Decodes ids to text, special tokens included as their text.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.with_specials
            .decode(ids, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// Writes the tokenizer as a HF `tokenizer.json` (placed beside a GGUF, it replaces the
    /// tokenizer built from the GGUF's metadata).
    pub fn save_json(&self, path: &std::path::Path) -> Result<()> {
        self.with_specials
            .save(path, true)
            .map_err(|e| EngineError::Tokenizer(format!("{}: {e}", path.display())))
    }

    /// The id of an exact token string (e.g. `<|im_end|>`), if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.token_to_id.get(token).copied()
    }
}

fn encode(tok: &tokenizers::Tokenizer, text: &str) -> Result<Vec<u32>> {
    tok.encode_fast(text, false)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| EngineError::Tokenizer(e.to_string()))
}

/// GPT-2's byte → printable-character table (the alphabet of byte-level BPE vocabularies).
fn byte_alphabet() -> Vec<String> {
    let direct =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            let c = if direct(b) {
                b
            } else {
                extra += 1;
                255 + extra
            };
            char::from_u32(c).expect("below 512").to_string()
        })
        .collect()
}

fn ids_of_type(types: &[i64], ty: i64) -> Vec<u32> {
    types
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == ty)
        .map(|(i, _)| i as u32)
        .collect()
}

/// The split regexes and NFC flag for a `tokenizer.ggml.pre` value.
fn pre_tokenizer_rules(pre: &str) -> Option<(Vec<&'static str>, bool)> {
    match pre {
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            Some((vec![r"\p{N}", GPT2_PATTERN], false))
        }
        "gpt-2" | "gpt2" | "default" => Some((vec![GPT2_PATTERN], false)),
        "qwen2" => Some((vec![QWEN2_PATTERN], true)),
        "llama-bpe" | "llama3" | "smaug-bpe" => Some((vec![LLAMA3_PATTERN], false)),
        _ => None,
    }
}

fn build_bpe(gguf: &GgufFile, tokens: &[String], types: &[i64]) -> Result<tokenizers::Tokenizer> {
    let path = gguf.path().display().to_string();
    let pre = gguf
        .opt_str("tokenizer.ggml.pre")
        .unwrap_or_else(|| "default".into());
    let (patterns, nfc) = pre_tokenizer_rules(&pre).ok_or_else(|| {
        EngineError::Tokenizer(format!(
            "{path}: tokenizer.ggml.pre `{pre}` is not supported (supported: smollm, starcoder, gpt-2, qwen2, llama-bpe); put a tokenizer.json beside the model file"
        ))
    })?;
    let merges_raw = gguf.req_str_array("tokenizer.ggml.merges");
    gguf.check("tokenizer")?;
    let merges = merges_raw
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    EngineError::Tokenizer(format!(
                        "{path}: tokenizer.ggml.merges: merge `{m}` has no space"
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    bpe_tokenizer(&path, &pre, patterns, nfc, merges, tokens, types)
}

/// A byte-level BPE tokenizer from its parts (`path` names the source in errors).
fn bpe_tokenizer(
    path: &str,
    pre: &str,
    patterns: Vec<&str>,
    nfc: bool,
    merges: Vec<(String, String)>,
    tokens: &[String],
    types: &[i64],
) -> Result<tokenizers::Tokenizer> {
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre == "llama-bpe" || pre == "llama3")
        .build()
        .map_err(|e| {
            EngineError::Tokenizer(format!(
                "{path}: building BPE from tokenizer.ggml.tokens and tokenizer.ggml.merges: {e}"
            ))
        })?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    let mut pieces: Vec<PreTokenizerWrapper> = Vec::new();
    for p in patterns {
        let split = Split::new(
            SplitPattern::Regex(p.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| EngineError::Tokenizer(format!("pre-tokenizer regex: {e}")))?;
        pieces.push(split.into());
    }
    pieces.push(ByteLevel::new(false, false, false).into());
    tok.with_pre_tokenizer(Some(Sequence::new(pieces)));
    tok.with_decoder(Some(ByteLevel::default()));
    if nfc {
        tok.with_normalizer(Some(NFC))
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    }
    let added: Vec<AddedToken> = types
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let content = tokens.get(i)?.clone();
            match *t {
                TOKEN_TYPE_CONTROL | TOKEN_TYPE_UNUSED => Some(AddedToken::from(content, true)),
                TOKEN_TYPE_USER_DEFINED => Some(AddedToken::from(content, false).normalized(false)),
                _ => None,
            }
        })
        .collect();
    let specials: Vec<AddedToken> = added.iter().filter(|a| a.special).cloned().collect();
    let users: Vec<AddedToken> = added.into_iter().filter(|a| !a.special).collect();
    tok.add_special_tokens(specials)
        .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    tok.add_tokens(users)
        .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    Ok(tok)
}
