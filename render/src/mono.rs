//! The mono rendering (Lotz et al. 2023): every character in a fixed-width cell, as a monospaced
//! font draws it. A cell is 8 px, half a patch (a monospaced font's advance of 0.6 em at PIXEL's
//! 13.33 px em), so every patch holds exactly two characters. Each character is shaped alone and
//! centred in its cell by its advance (wide glyphs overhang their cell).
//!
//! Sentences: whitespace-split words from x = 0 with one empty cell between words (right-to-left
//! text reverses the word order and every word's characters). Word lists: every word starts on
//! a patch boundary. Pairs: text A, the black separator on the next patch, text B from the patch
//! after it, the EOS.

use crate::bigrams::{list_words, sentence_words, words_rtl};
use crate::canvas::PATCH;
use crate::modes::next_patch_within;
use crate::{Renderer, Rendering};

/// Width of a character cell: two cells per patch.
pub const CELL: i32 = PATCH as i32 / 2;

/// A sentence's cells in drawing order: its words with an empty cell between words; right to
/// left, the word order and every word's characters are reversed.
fn sentence_cells(mut words: Vec<Vec<char>>, rtl: bool) -> Vec<Option<char>> {
    if rtl {
        words.reverse();
        for w in &mut words {
            w.reverse();
        }
    }
    let mut cells = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            cells.push(None);
        }
        cells.extend(w.iter().copied().map(Some));
    }
    cells
}

/// Cells drawn from some column.
struct CellRun {
    /// Column after the last drawn cell.
    end: i32,
    /// Not every cell fitted.
    cut: bool,
    missing: usize,
}

impl Renderer {
    /// Draws `cells` from column `x0` while a whole cell fits left of column `limit`.
    fn draw_cells(&mut self, cells: &[Option<char>], x0: i32, limit: i32) -> CellRun {
        let mut x = x0;
        let mut missing = 0;
        for (i, cell) in cells.iter().enumerate() {
            if x + CELL > limit {
                return CellRun {
                    end: x,
                    cut: cells.len() > i,
                    missing,
                };
            }
            if let Some(c) = *cell {
                let offset = (CELL - self.alone_width(c)).div_euclid(2);
                missing += self.draw_alone(c, x + offset);
            }
            x += CELL;
        }
        CellRun {
            end: x,
            cut: false,
            missing,
        }
    }

    /// A sentence from x = 0; the EOS goes on the patch after the last cell. Cells that would
    /// reach into the last patch are left out (truncated).
    pub(crate) fn mono_text(&mut self, text: &str) -> Rendering {
        let words = sentence_words(text);
        let rtl = words_rtl(&words);
        let cells = sentence_cells(words, rtl);
        let run = self.draw_cells(&cells, 0, self.last_patch_px());
        let (eos, _) = self.next_patch(run.end);
        self.finish(&[eos], run.cut, run.missing, None, 0, None)
    }

    /// A word list: every word from a patch boundary (right-to-left words drawn reversed, in the
    /// given order). Words that would start on the last patch are dropped.
    pub(crate) fn mono_words<S: AsRef<str>>(&mut self, words: &[S]) -> Rendering {
        let mut words = list_words(words);
        if words_rtl(&words) {
            for w in &mut words {
                w.reverse();
            }
        }
        let last = self.last_patch_px();
        let mut x = 0;
        let mut word_starts = Vec::with_capacity(words.len() + 1);
        let mut missing = 0;
        let mut drawn = 0;
        let mut cut = false;
        for w in &words {
            if x >= last || cut {
                break;
            }
            word_starts.push(x as usize / PATCH);
            let cells: Vec<Option<char>> = w.iter().copied().map(Some).collect();
            let run = self.draw_cells(&cells, x, last);
            missing += run.missing;
            cut = run.cut;
            drawn += 1;
            x = next_patch_within(run.end, last).0;
        }
        word_starts.push(x as usize / PATCH);
        let dropped = words.len() - drawn;
        self.finish(
            &[x],
            cut || dropped > 0,
            missing,
            Some(word_starts),
            dropped,
            None,
        )
    }

    /// A pair: A from x = 0 (within `text_a_max_patches`), the separator on the next patch, B
    /// from the patch after it, the EOS after B.
    pub(crate) fn mono_pair(&mut self, text_a: &str, text_b: &str) -> Rendering {
        let (a, b) = (sentence_words(text_a), sentence_words(text_b));
        // As for the other renderings, a pair is right to left when both texts are.
        let rtl = words_rtl(&a) && words_rtl(&b);
        let (cells_a, cells_b) = (sentence_cells(a, rtl), sentence_cells(b, rtl));
        let last = self.last_patch_px();
        let limit_a = self
            .text_a_max_patches
            .map_or(last, |m| (m * PATCH) as i32)
            .min(last);
        let run_a = self.draw_cells(&cells_a, 0, limit_a);
        let (sep, sep_clamped) = self.next_patch(run_a.end);
        let run_b = self.draw_cells(&cells_b, sep + PATCH as i32, last);
        let (eos, _) = self.next_patch(run_b.end.max(sep + PATCH as i32));
        let truncated = run_a.cut || run_b.cut || sep_clamped;
        self.finish(
            &[sep, eos],
            truncated,
            run_a.missing + run_b.missing,
            None,
            0,
            None,
        )
    }
}
