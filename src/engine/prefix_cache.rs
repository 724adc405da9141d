//! Reuse of already computed KV for token prefixes (system prompts, shared questions, upstream
//! context, earlier turns of a conversation).
//!
//! Owns a bounded set of frozen KV segment chains keyed by their token ids. A lookup finds the
//! longest common prefix with any cached chain (the match may end inside a segment: sequences
//! can use a prefix of a segment), clamped so at least one prompt token is still computed
//! (the model must produce logits for it). Memory is the bytes of the distinct segments the
//! cache keeps alive; past the cap, least recently used entries go first. Segments still used
//! by a running sequence stay alive through their `Arc` until it finishes.

use super::kv::KvSegment;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;

/// Hit/miss counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PrefixStats {
    /// Lookups that reused at least one position.
    pub hits: u64,
    /// Lookups that reused nothing.
    pub misses: u64,
    /// Prompt tokens whose KV was reused.
    pub reused_tokens: u64,
    /// Entries evicted to stay under the memory cap.
    pub evictions: u64,
}

struct Entry {
    seg: Arc<KvSegment>,
    tokens: Vec<u32>,
    last_used: u64,
}

/// The cache.
pub struct PrefixCache {
    entries: Vec<Entry>,
    cap_bytes: usize,
    clock: u64,
    stats: PrefixStats,
}

/// Length of the common prefix of two token sequences.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    /// An empty cache holding at most `cap_bytes` of KV (0 disables caching).
    pub fn new(cap_bytes: usize) -> Self {
        Self {
            entries: Vec::new(),
            cap_bytes,
            clock: 0,
            stats: PrefixStats::default(),
        }
    }

    /// Whether the cache keeps anything (a zero cap turns reuse off).
    pub fn enabled(&self) -> bool {
        self.cap_bytes > 0
    }

    /// Counters so far.
    pub fn stats(&self) -> PrefixStats {
        self.stats
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Longest reusable prefix of `prompt`: the segment chain and how many positions to use
    /// (always < `prompt.len()`). Ties go to the earliest entry, so lookups are deterministic.
    pub fn lookup(&mut self, prompt: &[u32]) -> Option<(Arc<KvSegment>, usize)> {
        let limit = prompt.len().saturating_sub(1);
        let mut best: Option<(usize, usize)> = None;
        for (i, e) in self.entries.iter().enumerate() {
            let n = common_prefix(&e.tokens, prompt).min(limit);
            if n > 0 && best.is_none_or(|(_, b)| n > b) {
                best = Some((i, n));
            }
        }
        self.clock += 1;
        match best {
            Some((i, n)) => {
                self.entries[i].last_used = self.clock;
                self.stats.hits += 1;
                self.stats.reused_tokens += n as u64;
                Some((self.entries[i].seg.clone(), n))
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// How many leading tokens of `prompt` a lookup would reuse, without counting a lookup.
    pub fn peek(&self, prompt: &[u32]) -> usize {
        let limit = prompt.len().saturating_sub(1);
        self.entries
            .iter()
            .map(|e| common_prefix(&e.tokens, prompt).min(limit))
            .max()
            .unwrap_or(0)
    }

    /// Adds a frozen chain. An entry whose tokens are a prefix of the new one is replaced (the
    /// new chain covers it).
    pub fn insert(&mut self, seg: Arc<KvSegment>) {
        if self.cap_bytes == 0 {
            return;
        }
        let tokens = seg.tokens_up_to(seg.end());
        if tokens.is_empty() {
            return;
        }
        self.clock += 1;
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.tokens.len() >= tokens.len() && e.tokens.starts_with(&tokens))
        {
            e.last_used = self.clock;
            return;
        }
        self.entries.retain(|e| !tokens.starts_with(&e.tokens));
        self.entries.push(Entry {
            seg,
            tokens,
            last_used: self.clock,
        });
        self.evict();
    }

    /// Bytes of the distinct segments the entries keep alive.
    pub fn bytes(&self) -> usize {
        let mut seen = HashSet::new();
        let mut total = 0;
        for e in &self.entries {
            let mut cur = Some(&e.seg);
            while let Some(s) = cur {
                if !seen.insert(Arc::as_ptr(s)) {
                    break;
                }
                total += s.bytes();
                cur = s.parent();
            }
        }
        total
    }

    fn evict(&mut self) {
        while self.entries.len() > 1 && self.bytes() > self.cap_bytes {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i)
                .unwrap_or(0);
            self.entries.remove(oldest);
            self.stats.evictions += 1;
        }
        if self.bytes() > self.cap_bytes {
            self.stats.evictions += self.entries.len() as u64;
            self.entries.clear();
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kv::KvCache;

    fn segment(tokens: &[u32]) -> Arc<KvSegment> {
        let mut c = KvCache::new(1, 2);
        c.push_tokens(tokens);
        let kv = vec![0.5f32; tokens.len() * 2];
        c.append(0, &kv, &kv);
        c.freeze().unwrap()
    }

    #[test]
    fn miss_then_hit_with_clamp() {
        let mut pc = PrefixCache::new(1 << 20);
        assert!(pc.lookup(&[1, 2, 3]).is_none());
        pc.insert(segment(&[1, 2, 3, 4]));
        let (_, n) = pc.lookup(&[1, 2, 3, 9]).unwrap();
        assert_eq!(n, 3);
        // A prompt equal to the cached tokens still computes its last token.
        let (_, n) = pc.lookup(&[1, 2, 3, 4]).unwrap();
        assert_eq!(n, 3);
        assert!(pc.lookup(&[7]).is_none());
        assert_eq!(
            pc.stats(),
            PrefixStats {
                hits: 2,
                misses: 2,
                reused_tokens: 6,
                evictions: 0
            }
        );
    }

    #[test]
    fn longest_match_wins_and_covered_entries_merge() {
        let mut pc = PrefixCache::new(1 << 20);
        pc.insert(segment(&[1, 2]));
        pc.insert(segment(&[1, 2, 3, 4, 5]));
        assert_eq!(pc.len(), 1, "[1,2] is covered by [1..5]");
        pc.insert(segment(&[1, 9, 9]));
        assert_eq!(pc.len(), 2);
        assert_eq!(pc.lookup(&[1, 2, 3, 4, 8]).unwrap().1, 4);
        assert_eq!(pc.lookup(&[1, 9, 9, 9]).unwrap().1, 3);
    }

    #[test]
    fn eviction_under_a_tiny_cap_is_lru() {
        // Each 4-token segment holds 4 × 2 values × 2 (k, v) × 2 bytes (f16) = 32 bytes.
        let mut pc = PrefixCache::new(65);
        pc.insert(segment(&[1, 1, 1, 1]));
        pc.insert(segment(&[2, 2, 2, 2]));
        assert_eq!(pc.bytes(), 64);
        pc.lookup(&[1, 1, 1, 1, 0]); // touch [1...]
        pc.insert(segment(&[3, 3, 3, 3]));
        assert_eq!(pc.len(), 2);
        assert!(
            pc.peek(&[2, 2, 2, 2, 0]) == 0,
            "the least recently used entry went first"
        );
        assert_eq!(pc.peek(&[1, 1, 1, 1, 0]), 4);
        assert_eq!(pc.stats().evictions, 1);
        // A single entry bigger than the cap is not kept.
        let mut small = PrefixCache::new(10);
        small.insert(segment(&[4, 4, 4, 4]));
        assert!(small.is_empty());
        // A zero cap disables the cache.
        let mut off = PrefixCache::new(0);
        off.insert(segment(&[5]));
        assert!(off.is_empty());
    }

    #[test]
    fn shared_parents_are_counted_once() {
        let mut base = KvCache::new(1, 2);
        base.push_tokens(&[1, 2]);
        base.append(0, &[0.0; 4], &[0.0; 4]);
        let root = base.freeze().unwrap();
        let mut pc = PrefixCache::new(1 << 20);
        for t in [7u32, 8] {
            let mut c = KvCache::from_prefix(root.clone(), 2, 2);
            c.push_tokens(&[t]);
            c.append(0, &[0.0; 2], &[0.0; 2]);
            pc.insert(c.freeze().unwrap());
        }
        assert_eq!(pc.len(), 2);
        assert_eq!(pc.bytes(), root.bytes() + 2 * 8);
    }
}
