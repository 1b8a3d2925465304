//! Character-level text data: a vocabulary of the characters a corpus uses, the corpus as
//! token ids split into training and validation parts, and random `[batch, block]` windows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::DataError;
use crate::rng::Rng;

/// The distinct characters of a text, sorted, each with an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharVocab {
    chars: Vec<char>,
    ids: BTreeMap<char, usize>,
}

impl CharVocab {
    /// The vocabulary of `text`.
    pub fn from_text(text: &str) -> CharVocab {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        let ids = chars.iter().enumerate().map(|(i, &c)| (c, i)).collect();
        CharVocab { chars, ids }
    }

    /// Number of distinct characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// True for the vocabulary of an empty text.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The ids of `text`; a character outside the vocabulary is an error naming it.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>, String> {
        text.chars()
            .enumerate()
            .map(|(i, c)| {
                self.ids
                    .get(&c)
                    .copied()
                    .ok_or_else(|| format!("character {c:?} at position {i} is not in the vocabulary"))
            })
            .collect()
    }

    /// The text of `ids` (ids outside the vocabulary print as U+FFFD).
    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter().map(|&i| self.chars.get(i).copied().unwrap_or('\u{FFFD}')).collect()
    }
}

/// A corpus as ids, split into a leading training part and a trailing validation part.
pub struct TextData {
    /// The corpus's characters.
    pub vocab: CharVocab,
    /// Ids of the first `1 - val_fraction` of the text.
    pub train: Vec<usize>,
    /// Ids of the rest.
    pub val: Vec<usize>,
}

impl TextData {
    /// Reads a UTF-8 text file and splits it.
    pub fn load(path: &Path, val_fraction: f64) -> Result<TextData, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::new(path, format!("cannot read: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| DataError::new(path, format!("not UTF-8 text: {e}")))?;
        TextData::from_text(&text, val_fraction).map_err(|m| DataError::new(path, m))
    }

    /// Splits `text` (the validation part is the last `val_fraction` of it).
    pub fn from_text(text: &str, val_fraction: f64) -> Result<TextData, String> {
        if !(0.0..1.0).contains(&val_fraction) {
            return Err(format!("validation fraction {val_fraction} is outside [0, 1)"));
        }
        let vocab = CharVocab::from_text(text);
        let mut ids = vocab.encode(text)?;
        let split = ids.len() - (ids.len() as f64 * val_fraction).round() as usize;
        let val = ids.split_off(split);
        Ok(TextData { vocab, train: ids, val })
    }
}

/// `batch` random windows of `block` ids from `tokens` (inputs) and the same windows shifted
/// by one (next-token targets), both flattened `[batch, block]`.
///
/// Panics if `tokens` is not longer than `block`.
pub fn random_windows(tokens: &[usize], batch: usize, block: usize, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    assert!(
        tokens.len() > block,
        "random_windows: {} tokens cannot fill a window of {block} plus a target",
        tokens.len()
    );
    let mut x = Vec::with_capacity(batch * block);
    let mut y = Vec::with_capacity(batch * block);
    for _ in 0..batch {
        let start = rng.below(tokens.len() - block);
        x.extend_from_slice(&tokens[start..start + block]);
        y.extend_from_slice(&tokens[start + 1..start + block + 1]);
    }
    (x, y)
}

/// `<CARGO_MANIFEST_DIR>/data/shakespeare/input.txt`, the committed corpus.
pub fn default_shakespeare_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data").join("shakespeare").join("input.txt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_unknown_chars_are_errors() {
        let v = CharVocab::from_text("hello world");
        assert_eq!(v.len(), 8);
        let ids = v.encode("low").unwrap();
        assert_eq!(v.decode(&ids), "low");
        assert!(v.encode("lowz").unwrap_err().contains("'z'"));
    }

    #[test]
    fn split_keeps_the_tail_for_validation_and_windows_shift_by_one() {
        let data = TextData::from_text("abcdefghij", 0.2).unwrap();
        assert_eq!((data.train.len(), data.val.len()), (8, 2));
        assert_eq!(data.vocab.decode(&data.val), "ij");
        let (x, y) = random_windows(&data.train, 3, 4, &mut Rng::new(1));
        for w in 0..3 {
            assert_eq!(&x[w * 4 + 1..w * 4 + 4], &y[w * 4..w * 4 + 3]);
        }
    }
}
