//! The words rendering (Lotz et al. 2023): every word shaped as a whole and started on a patch
//! boundary, so no patch spans two words. It is the continuous renderer's word-list layout
//! (word 0 at x = 2, a trailing space after every word but the last, the next word on the next
//! patch) applied to sentences (split on whitespace; right-to-left text reverses the word order)
//! and to both sides of a pair.

use crate::bigrams::{sentence_words, words_rtl};
use crate::canvas::PATCH;
use crate::modes::PAD;
use crate::{Renderer, Rendering};

/// Words as strings, in drawing order (reversed right to left).
fn drawing_order(words: &[Vec<char>], rtl: bool) -> Vec<String> {
    let mut out: Vec<String> = words.iter().map(|w| w.iter().collect()).collect();
    if rtl {
        out.reverse();
    }
    out
}

impl Renderer {
    /// A sentence in word-list layout; `word_starts` gives every word's patch.
    pub(crate) fn words_text(&mut self, text: &str) -> Rendering {
        let words = sentence_words(text);
        let words = drawing_order(&words, words_rtl(&words));
        self.continuous_words(&words)
    }

    /// A pair: A in word-list layout from x = 2 (within `text_a_max_patches`), the black
    /// separator after it, B from two pixels after the separator, the EOS after B. Right to left
    /// when both texts vote so (both word orders reversed).
    pub(crate) fn words_pair(&mut self, text_a: &str, text_b: &str) -> Rendering {
        let (a, b) = (sentence_words(text_a), sentence_words(text_b));
        let rtl = words_rtl(&a) && words_rtl(&b);
        let (a, b) = (drawing_order(&a, rtl), drawing_order(&b, rtl));
        let last = self.last_patch_px();
        let last_a = self
            .text_a_max_patches
            .map_or(last, |m| (m * PATCH) as i32)
            .min(last);
        let run_a = self.draw_word_run(&a, PAD, last_a);
        let sep = run_a.end;
        let (eos, run_b) = if sep + (PATCH as i32) <= last {
            let run_b = self.draw_word_run(&b, sep + PATCH as i32 + PAD, last);
            (run_b.end, Some(run_b))
        } else {
            (last, None)
        };
        let dropped = run_a.dropped + run_b.as_ref().map_or(b.len(), |r| r.dropped);
        let truncated = dropped > 0 || run_a.full || run_b.as_ref().is_none_or(|r| r.full);
        let missing = run_a.missing + run_b.as_ref().map_or(0, |r| r.missing);
        self.finish(&[sep, eos], truncated, missing, None, dropped, None)
    }
}
