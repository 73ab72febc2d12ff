//! The bigrams rendering (Lotz et al. 2023), laid out as PIXEL's PangoCairoBigramsRenderer:
//!
//! - sentences are split on whitespace (Python's `str.split()`), word lists are used as given;
//!   right-to-left text (PIXEL's majority vote) reverses the word order of sentences and pairs
//!   and draws the characters of every word in reverse;
//! - every word is cut into 2-character chunks from its start (an odd word ends with one
//!   character); each chunk starts on a patch boundary, each character is shaped alone and
//!   drawn at the pen, the second right after the first's advance; the pen then moves to the
//!   next patch boundary, unclamped (a wide pair takes two patches). No space is drawn: the
//!   next word starts on the next patch;
//! - a measuring pass finds each word's start patch; when the text ends past the strip's limit,
//!   words are dropped from the end as the original does (one more than needed);
//! - the black EOS patch goes at the patch after the text, clamped to the last patch.
//!
//! Every character is drawn on the main font's baseline (row 12 for Noto Sans), as in PIXEL
//! with GoNotoCurrent, whose scripts all share Noto Sans' line metrics.

use crate::canvas::PATCH;
use crate::modes::is_rtl;
use crate::shape::{clean_text, ShapedLine};
use crate::{Renderer, Rendering};

/// Python's `str.isspace()`: Unicode White_Space plus the separators U+001C..U+001F.
pub(crate) fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Sentence words as the original tokenizes them (`text.strip().split()`), control characters
/// removed (they have no glyph); words left empty by that are dropped.
pub(crate) fn sentence_words(text: &str) -> Vec<Vec<char>> {
    text.split(is_python_space)
        .map(|w| w.chars().filter(|c| !c.is_control()).collect::<Vec<char>>())
        .filter(|w| !w.is_empty())
        .collect()
}

/// A given word list: control characters become spaces (`\n`) or go, as in the continuous
/// renderer; empty words are kept (they take no room).
pub(crate) fn list_words<S: AsRef<str>>(words: &[S]) -> Vec<Vec<char>> {
    words
        .iter()
        .map(|w| clean_text(w.as_ref()).chars().collect())
        .collect()
}

/// Right-to-left by PIXEL's vote over the words joined with spaces.
pub(crate) fn words_rtl(words: &[Vec<char>]) -> bool {
    let joined: Vec<String> = words.iter().map(|w| w.iter().collect()).collect();
    is_rtl(&joined.join(" "))
}

/// One chunk in drawing order: the first character and the optional second.
type Chunk = (char, Option<char>);

/// The chunks of `word` in drawing order. Right to left, each chunk is reversed and so is their
/// order (the word's last character, alone when the word is odd, comes first).
fn chunks(word: &[char], rtl: bool) -> Vec<Chunk> {
    let mut out: Vec<Chunk> = word
        .chunks(2)
        .map(|c| match (c, rtl) {
            ([a, b], false) => (*a, Some(*b)),
            ([a, b], true) => (*b, Some(*a)),
            (c, _) => (c[0], None),
        })
        .collect();
    if rtl {
        out.reverse();
    }
    out
}

/// The first patch boundary at or after `x` (not clamped).
fn ceil_patch(x: i32) -> i32 {
    let p = PATCH as i32;
    (x + p - 1).div_euclid(p) * p
}

/// Number of words the original draws: all when the text ends within `max_patches`; else it
/// goes back from the last word to the last one before it that starts within the limit, and one
/// word further (at least word 0 is drawn).
pub(crate) fn words_kept(starts: &[usize], end: usize, max_patches: usize) -> usize {
    if end <= max_patches || starts.is_empty() {
        return starts.len();
    }
    let mut index = starts.len() as isize - 1;
    let mut patches = end;
    while patches > max_patches {
        index -= 1;
        patches = if index < 0 {
            max_patches
        } else {
            starts[index as usize]
        };
    }
    index -= 1;
    (index.max(0) + 1) as usize
}

/// What drawing a word sequence gave.
struct Drawn {
    /// Start patch of each drawn word, then the patch after the last.
    word_starts: Vec<usize>,
    /// Pen after the last chunk (a patch boundary, possibly past the strip).
    end: i32,
    dropped: usize,
    missing: usize,
}

impl Renderer {
    /// The character shaped alone (cached per renderer).
    pub(crate) fn alone(&mut self, c: char) -> &ShapedLine {
        let s = &mut self.scratch;
        if !s.alone.contains_key(&c) {
            if s.alone.len() >= 100_000 {
                s.alone.clear();
            }
            let line = s.shaper.shape_alone(&self.fonts, c);
            s.alone.insert(c, line);
        }
        &s.alone[&c]
    }

    /// Pango logical width of the character alone, in whole pixels.
    pub(crate) fn alone_width(&mut self, c: char) -> i32 {
        self.alone(c).width
    }

    /// Draws the character alone with its origin at column `x` on the main baseline; returns
    /// its missing-glyph count.
    pub(crate) fn draw_alone(&mut self, c: char, x: i32) -> usize {
        self.alone(c);
        let s = &mut self.scratch;
        let line = &s.alone[&c];
        s.canvas
            .draw_line(line, x, self.pango_baseline, &self.fonts, &mut s.cache);
        line.missing
    }

    /// Pen after `chunk` drawn (or measured) from `x`.
    fn chunk_end(&mut self, (a, b): Chunk, x: i32) -> i32 {
        let w = self.alone_width(a) + b.map_or(0, |b| self.alone_width(b));
        ceil_patch(x + w)
    }

    /// Draws `words` from column `x0` (a patch boundary) within `max_patches` patches from the
    /// strip start, as the original: measuring pass, truncation, drawing pass.
    fn draw_bigram_words(
        &mut self,
        words: &[Vec<char>],
        x0: i32,
        rtl: bool,
        max_patches: usize,
    ) -> Drawn {
        let word_chunks: Vec<Vec<Chunk>> = words.iter().map(|w| chunks(w, rtl)).collect();
        let mut starts = Vec::with_capacity(words.len());
        let mut pen = x0;
        for chunks in &word_chunks {
            starts.push(ceil_patch(pen) as usize / PATCH);
            for &c in chunks {
                pen = self.chunk_end(c, pen);
            }
        }
        let end = ceil_patch(pen) as usize / PATCH;
        let kept = words_kept(&starts, end, max_patches);

        let mut pen = x0;
        let mut drawn = 0;
        let mut missing = 0;
        for chunks in &word_chunks[..kept] {
            for &(a, b) in chunks {
                missing += self.draw_alone(a, pen);
                if let Some(b) = b {
                    let x = pen + self.alone_width(a);
                    missing += self.draw_alone(b, x);
                }
                pen = self.chunk_end((a, b), pen);
            }
            drawn += 1;
            // The original stops drawing once a word (not the last kept) ends on the last
            // patch.
            if drawn < kept && pen == self.last_patch_px() {
                break;
            }
        }
        let mut word_starts = starts[..drawn].to_vec();
        word_starts.push(ceil_patch(pen) as usize / PATCH);
        Drawn {
            word_starts,
            end: pen,
            dropped: words.len() - drawn,
            missing,
        }
    }

    /// A sentence: whitespace-split words from x = 0, RTL reversing the word order.
    pub(crate) fn bigrams_text(&mut self, text: &str) -> Rendering {
        let mut words = sentence_words(text);
        let rtl = words_rtl(&words);
        if rtl {
            words.reverse();
        }
        self.bigrams_sequence(&words, rtl)
    }

    /// A word list, as given (RTL draws each word's characters in reverse but keeps the word
    /// order, as the original).
    pub(crate) fn bigrams_words<S: AsRef<str>>(&mut self, words: &[S]) -> Rendering {
        let words = list_words(words);
        let rtl = words_rtl(&words);
        self.bigrams_sequence(&words, rtl)
    }

    fn bigrams_sequence(&mut self, words: &[Vec<char>], rtl: bool) -> Rendering {
        let d = self.draw_bigram_words(words, 0, rtl, self.max_seq_length);
        let (eos, clamped) = self.next_patch(d.end);
        let truncated = d.dropped > 0 || clamped;
        self.finish(
            &[eos],
            truncated,
            d.missing,
            Some(d.word_starts),
            d.dropped,
            None,
        )
    }

    /// A pair: text A from x = 0 (at most `text_a_max_patches`), the black separator on the
    /// patch after it, text B from the patch after the separator, the EOS after B. Right to
    /// left when both texts vote RTL (both word orders reversed).
    pub(crate) fn bigrams_pair(&mut self, text_a: &str, text_b: &str) -> Rendering {
        let mut a = sentence_words(text_a);
        let mut b = sentence_words(text_b);
        let rtl = words_rtl(&a) && words_rtl(&b);
        if rtl {
            a.reverse();
            b.reverse();
        }
        let max_a = self.text_a_max_patches.unwrap_or(self.max_seq_length);
        let da = self.draw_bigram_words(&a, 0, rtl, max_a);
        let (sep, sep_clamped) = self.next_patch(da.end);
        let db = self.draw_bigram_words(&b, sep + PATCH as i32, rtl, self.max_seq_length);
        let (eos, eos_clamped) = self.next_patch(db.end);
        let truncated = da.dropped + db.dropped > 0 || sep_clamped || eos_clamped;
        self.finish(
            &[sep, eos],
            truncated,
            da.missing + db.missing,
            None,
            da.dropped + db.dropped,
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{chunks, sentence_words, words_kept};

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn chunks_are_pairs_from_the_start_and_reversed_right_to_left() {
        assert_eq!(
            chunks(&chars("Hello"), false),
            vec![('H', Some('e')), ('l', Some('l')), ('o', None)]
        );
        // RTL "abcde": chunks ab, cd, e -> ba, dc, e -> drawn e, dc, ba.
        assert_eq!(
            chunks(&chars("abcde"), true),
            vec![('e', None), ('d', Some('c')), ('b', Some('a'))]
        );
        assert!(chunks(&[], false).is_empty());
    }

    #[test]
    fn sentences_split_like_python_str_split() {
        let w = sentence_words("  two\tlead\u{a0}x \u{1f}y\n\u{7}z  ");
        let w: Vec<String> = w.iter().map(|w| w.iter().collect()).collect();
        assert_eq!(w, ["two", "lead", "x", "y", "z"]);
        assert!(sentence_words(" \t\n").is_empty());
    }

    #[test]
    fn truncation_drops_one_word_more_than_needed() {
        // Fits: all words.
        assert_eq!(words_kept(&[0, 2, 5], 9, 9), 3);
        // ["a", "b", "x" * 1100]: only "a" is kept.
        assert_eq!(words_kept(&[0, 1, 2], 552, 529), 1);
        // Word 3 starts within the limit but ends after it: words 0 and 1 are kept.
        assert_eq!(words_kept(&[0, 3, 6, 8], 12, 10), 2);
        // One word too long for the strip is still drawn.
        assert_eq!(words_kept(&[0], 1000, 529), 1);
        assert_eq!(words_kept(&[0, 700], 900, 529), 1);
        assert_eq!(words_kept(&[], 0, 529), 0);
    }
}
