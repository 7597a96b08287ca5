//! Token counting with the model's own tokenizer.
//!
//! Counts come from `bpe-openai`'s vocabularies and byte-pair encoder with tiktoken's
//! pre-tokenizer rules: identical counts to OpenAI's tiktoken (the tests check that
//! against `tiktoken-rs` itself), faster, which matters for bulk imports.
//! Loading an encoding takes a noticeable moment and memory, so each is loaded once:
//! at startup if a configured model uses it, else on first use.

use std::{cell::RefCell, collections::HashMap, sync::LazyLock};

use regex_automata::{
    Anchored, Input,
    meta::{Cache, Regex},
};

use crate::domain::message::Role;

mod chat;
pub mod image;

pub use chat::{AUDIO_PART_TOKENS, FILE_PART_TOKENS};

/// Every chat message costs this much on top of its role and content tokens
/// (the `<|start|>role … <|end|>` framing OpenAI documents).
pub const TOKENS_PER_MESSAGE: u32 = 3;

/// Every reply is primed with `<|start|>assistant<|message|>`.
pub const REPLY_PRIMING_TOKENS: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tokenizer {
    O200kBase,
    Cl100kBase,
}

impl Tokenizer {
    pub fn from_name(name: &str) -> Option<Tokenizer> {
        match name {
            "o200k_base" => Some(Tokenizer::O200kBase),
            "cl100k_base" => Some(Tokenizer::Cl100kBase),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tokenizer::O200kBase => "o200k_base",
            Tokenizer::Cl100kBase => "cl100k_base",
        }
    }

    /// Only the GPT-4 and GPT-3.5 families use cl100k. Everything newer, and every
    /// model we know nothing about, is counted with o200k: an estimate from a modern
    /// vocabulary is closer than one from an older one.
    pub fn for_model(model_name: &str) -> Tokenizer {
        let name = bare_model_name(model_name);
        let is_gpt4_classic = name == "gpt-4" || name.starts_with("gpt-4-");
        if is_gpt4_classic || name.starts_with("gpt-3.5") {
            Tokenizer::Cl100kBase
        } else {
            Tokenizer::O200kBase
        }
    }

    fn encoding(self) -> &'static Encoding {
        match self {
            Tokenizer::O200kBase => &O200K_BASE,
            Tokenizer::Cl100kBase => &CL100K_BASE,
        }
    }
}

/// A vocabulary and the split rules that cut text into the pieces it encodes one by one.
///
/// `bpe-openai` splits with a regex whose scratch space sits in a shared pool: every
/// piece takes it out and puts it back, which on any thread but the first costs a lock
/// each time, about a fifth of the counting work in an import. Here each thread keeps
/// its own scratch space. The patterns are tiktoken's, written as `bpe-openai` writes
/// them: the negative look-ahead `\s+(?!\S)` becomes the pattern `\s+\s` whose last
/// character is given back.
struct Encoding {
    tokenizer: &'static bpe_openai::Tokenizer,
    /// `None` only if the regex could not be built; counting then goes through
    /// `bpe-openai`'s own (slower, equal) path.
    split: Option<Regex>,
    /// This encoding's place in the per-thread [`SCRATCH`].
    slot: usize,
}

/// The split patterns are the encoding's word rule, `\s+\s` and `\s+`; the second ends
/// in a look-ahead character.
const LOOKAHEAD: [bool; 3] = [false, true, false];

static CL100K_BASE: LazyLock<Encoding> = LazyLock::new(|| {
    let words = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+$";
    Encoding::new(bpe_openai::cl100k_base(), words, 0)
});

static O200K_BASE: LazyLock<Encoding> = LazyLock::new(|| {
    let words = [
        "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        "\\p{N}{1,3}",
        " ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*",
        "\\s*[\\r\\n]+",
        "\\s+$",
    ]
    .join("|");
    Encoding::new(bpe_openai::o200k_base(), &words, 1)
});

/// What one thread keeps per encoding: the split regex's scratch space, and the counts of
/// pieces it has seen. Text repeats its words, so most pieces are found there instead of
/// being encoded again (tokenizer libraries keep the same kind of word cache).
struct Scratch {
    cache: Cache,
    known: HashMap<Box<[u8]>, usize>,
}

/// Longer pieces rarely repeat; remembering them would only take memory.
const KNOWN_PIECE_MAX_BYTES: usize = 24;
/// About a megabyte per thread and encoding at most; emptied when full.
const KNOWN_PIECES_MAX: usize = 16_384;

thread_local! {
    static SCRATCH: [RefCell<Option<Scratch>>; 2] = const { [RefCell::new(None), RefCell::new(None)] };
}

impl Encoding {
    fn new(tokenizer: &'static bpe_openai::Tokenizer, words: &str, slot: usize) -> Encoding {
        let split = Regex::new_many(&[words, "\\s+\\s", "\\s+"])
            .map_err(|reason| tracing::warn!(%reason, "tokenizer split rules unavailable"))
            .ok();
        Encoding {
            tokenizer,
            split,
            slot,
        }
    }

    fn count(&self, text: &str) -> usize {
        let Some(split) = &self.split else {
            return self.tokenizer.count(text);
        };
        SCRATCH.with(|scratch| {
            let mut scratch = scratch[self.slot].borrow_mut();
            let scratch = scratch.get_or_insert_with(|| Scratch {
                cache: split.create_cache(),
                known: HashMap::new(),
            });
            let (mut total, mut start) = (0, 0);
            while start < text.len() {
                let rest = Input::new(&text[start..]).anchored(Anchored::Yes);
                let Some(found) = split.search_with(&mut scratch.cache, &rest) else {
                    break;
                };
                let mut end = start + found.end();
                if LOOKAHEAD[found.pattern().as_usize()] {
                    end -= text[start..end]
                        .chars()
                        .next_back()
                        .map_or(0, char::len_utf8);
                }
                total += self.count_piece(&text.as_bytes()[start..end], &mut scratch.known);
                start = end;
            }
            total
        })
    }

    fn count_piece(&self, piece: &[u8], known: &mut HashMap<Box<[u8]>, usize>) -> usize {
        if piece.len() > KNOWN_PIECE_MAX_BYTES {
            return self.tokenizer.bpe.count(piece);
        }
        if let Some(&count) = known.get(piece) {
            return count;
        }
        let count = self.tokenizer.bpe.count(piece);
        if known.len() >= KNOWN_PIECES_MAX {
            known.clear();
        }
        known.insert(piece.into(), count);
        count
    }
}

/// `openai/gpt-4-turbo` and `ft:gpt-3.5-turbo:org:id` use their base model's tokenizer.
fn bare_model_name(model_name: &str) -> String {
    let name = model_name.rsplit('/').next().unwrap_or(model_name);
    let name = name.strip_prefix("ft:").unwrap_or(name);
    name.to_ascii_lowercase()
}

/// The process's token counter; the encodings themselves are process-wide.
pub struct TokenCounter;

static SHARED: TokenCounter = TokenCounter;

impl TokenCounter {
    pub fn shared() -> &'static TokenCounter {
        &SHARED
    }

    /// Loads the encodings the configured models use now (in parallel), so that no
    /// request pays for it. Another one (a session on a model not configured, say) loads
    /// on first use: each vocabulary costs memory, and most deployments need one.
    pub fn warm_up(tokenizers: impl IntoIterator<Item = Tokenizer>) {
        let mut needed: Vec<Tokenizer> = tokenizers.into_iter().collect();
        needed.sort_by_key(|t| t.name());
        needed.dedup();
        std::thread::scope(|scope| {
            for tokenizer in needed {
                scope.spawn(move || tokenizer.encoding());
            }
        });
    }

    /// Tokens of `text` alone. Special-token markers in user text are counted as the
    /// plain text they are, never as control tokens (the encodings know no special tokens).
    pub fn count_text(&self, tokenizer: Tokenizer, text: &str) -> u32 {
        u32::try_from(tokenizer.encoding().count(text)).unwrap_or(u32::MAX)
    }

    /// What one message costs inside a chat prompt: framing, role and content.
    pub fn count_message(&self, tokenizer: Tokenizer, role: Role, content: &str) -> u32 {
        TOKENS_PER_MESSAGE
            .saturating_add(self.count_text(tokenizer, role.as_str()))
            .saturating_add(self.count_text(tokenizer, content))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const BOTH: [Tokenizer; 2] = [Tokenizer::O200kBase, Tokenizer::Cl100kBase];

    #[test]
    fn hello_world_is_two_tokens_in_both_encodings() {
        for tokenizer in BOTH {
            assert_eq!(
                TokenCounter::shared().count_text(tokenizer, "hello world"),
                2
            );
        }
    }

    #[test]
    fn empty_text_is_zero_tokens() {
        for tokenizer in BOTH {
            assert_eq!(TokenCounter::shared().count_text(tokenizer, ""), 0);
        }
    }

    #[test]
    fn chinese_is_cheaper_in_the_larger_vocabulary() {
        let text = "我们今天去公园散步，然后一起吃晚饭。";
        let o200k = TokenCounter::shared().count_text(Tokenizer::O200kBase, text);
        let cl100k = TokenCounter::shared().count_text(Tokenizer::Cl100kBase, text);
        assert!(o200k > 0 && o200k <= text.chars().count() as u32 * 2);
        assert!(o200k < cl100k, "o200k {o200k} vs cl100k {cl100k}");
    }

    #[test]
    fn emoji_counts_are_positive_and_bounded_by_bytes() {
        let text = "🎉🚀👩‍💻";
        for tokenizer in BOTH {
            let count = TokenCounter::shared().count_text(tokenizer, text);
            assert!(
                count > 0 && count <= text.len() as u32,
                "{tokenizer:?}: {count}"
            );
        }
    }

    #[test]
    fn special_token_markers_in_user_text_are_plain_text() {
        let count = TokenCounter::shared().count_text(Tokenizer::Cl100kBase, "<|endoftext|>");
        assert!(count > 1, "counted as a single special token");
    }

    #[test]
    fn message_cost_adds_framing_and_role() {
        let counter = TokenCounter::shared();
        let cost = counter.count_message(Tokenizer::O200kBase, Role::User, "hello world");
        // 3 framing + "user" (1) + "hello world" (2)
        assert_eq!(cost, 6);
    }

    #[test]
    fn tokenizer_names_round_trip() {
        for tokenizer in BOTH {
            assert_eq!(Tokenizer::from_name(tokenizer.name()), Some(tokenizer));
        }
        assert_eq!(Tokenizer::from_name("p50k_base"), None);
    }

    #[test]
    fn models_map_to_their_tokenizer() {
        let o200k = [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-5",
            "o1",
            "o3-mini",
            "o4-mini",
        ];
        let cl100k = [
            "gpt-4",
            "gpt-4-turbo",
            "gpt-4-0613",
            "gpt-3.5-turbo",
            "ft:gpt-3.5-turbo:x",
        ];
        for model in o200k
            .iter()
            .chain(["claude-sonnet-4", "llama3", "openai/gpt-4o"].iter())
        {
            assert_eq!(Tokenizer::for_model(model), Tokenizer::O200kBase, "{model}");
        }
        for model in cl100k.iter().chain(["openai/GPT-4"].iter()) {
            assert_eq!(
                Tokenizer::for_model(model),
                Tokenizer::Cl100kBase,
                "{model}"
            );
        }
    }

    /// The reference: tiktoken's own rules, as `tiktoken-rs` implements them.
    fn tiktoken_count(tokenizer: Tokenizer, text: &str) -> usize {
        let reference = match tokenizer {
            Tokenizer::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Tokenizer::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        };
        reference.encode_ordinary(text).len()
    }

    fn assert_counts_like_tiktoken(text: &str) {
        for tokenizer in BOTH {
            assert_eq!(
                TokenCounter::shared().count_text(tokenizer, text) as usize,
                tiktoken_count(tokenizer, text),
                "{tokenizer:?} on {text:?}"
            );
        }
    }

    /// The places where pre-tokenizers usually disagree: whitespace runs before words and
    /// at the end, line breaks, contractions, digit groups, case changes, scripts without
    /// spaces, combining marks, emoji sequences and special-token markers.
    #[test]
    fn counts_equal_tiktoken_on_tricky_text() {
        let cases = [
            "",
            " ",
            "   ",
            "hello  world",
            "hello   \n\n  world   ",
            "trailing spaces   ",
            "\r\n\r\n\tindented\n",
            "I'm sure they'll say it's what we'd've DONE'S",
            "1234567 + 89 = 1234656, 3.14159",
            "camelCaseWordsAndHTTPServer XMLHttpRequest",
            "我们今天去公园散步，然后一起吃晚饭。",
            "日本語のテキストとカタカナ",
            "Ünïcödé naïve café e\u{301} ﬁ",
            "🎉🚀👩‍💻 👍🏽 🇫🇷",
            "<|endoftext|> <|im_start|>user",
            "fn main() { println!(\"{}\", 1 + 2); }\n// path/to/file.rs",
            "مرحبا بالعالم שלום עולם",
        ];
        for text in cases {
            assert_counts_like_tiktoken(text);
        }
    }

    proptest::proptest! {
        #[test]
        fn counts_equal_tiktoken_on_any_unicode(text in "\\PC{0,200}") {
            assert_counts_like_tiktoken(&text);
        }

        #[test]
        fn counts_equal_tiktoken_on_words_spaces_and_digits(
            text in "([a-zA-Z']{1,8}|[0-9]{1,5}|[ \t\n\r]{1,4}|[.,!?/]{1,2}|[é中🎉]){0,60}"
        ) {
            assert_counts_like_tiktoken(&text);
        }
    }
}
