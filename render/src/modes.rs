//! The continuous rendering: the three inputs of SPEC 1.3 (a single text, a sentence pair and a
//! word list) with PIXEL's patch arithmetic (x = 2 start, +2 px gaps, next-patch boundaries
//! clamped to the last patch).

use crate::canvas::{ink_box, PATCH};
use crate::offsets::{pad_or_truncate, text_offset_mapping, MappedText};
use crate::shape::{clean_text, ShapeOptions, ShapedLine};
use crate::{Layout, Renderer, Rendering};

/// Where text starts: PIXEL's 2 px left pad, also the gap before separators.
pub(crate) const PAD: i32 = 2;
/// PyGame words: pad_top 3 + half a patch puts the baseline at row 11.
const PYGAME_WORD_BASELINE: i32 = 11;

/// PIXEL's `is_rtl`: majority vote of the first, middle and last character after dropping
/// ASCII whitespace, punctuation and digits.
pub fn is_rtl(text: &str) -> bool {
    let kept: Vec<char> = text
        .chars()
        .filter(|c| !(c.is_ascii_whitespace() || c.is_ascii_punctuation() || c.is_ascii_digit()))
        .collect();
    if kept.is_empty() {
        return false;
    }
    let votes = [kept[0], kept[kept.len() - 1], kept[kept.len() / 2]]
        .iter()
        .filter(|&&c| {
            matches!(
                unicode_bidi::bidi_class(c),
                unicode_bidi::BidiClass::R | unicode_bidi::BidiClass::AL
            )
        })
        .count();
    votes >= 2
}

/// Start of the next patch at or after `x`, clamped to the patch starting at column `last`;
/// also whether it had to be clamped.
pub(crate) fn next_patch_within(x: i32, last: i32) -> (i32, bool) {
    let p = PATCH as i32;
    let unclamped = (x + p - 1).div_euclid(p) * p;
    (unclamped.min(last), unclamped > last)
}

/// A word list drawn from some column: where it ends and what was drawn.
pub(crate) struct WordRun {
    /// Column of the black patch after the words (clamped to the run's last patch).
    pub end: i32,
    /// Patch of each drawn word, then the patch of `end`.
    pub word_starts: Vec<usize>,
    pub missing: usize,
    /// Words left out because the run reached its last patch.
    pub dropped: usize,
    /// The run reached its last patch.
    pub full: bool,
}

impl Renderer {
    fn strip_width(&self) -> i32 {
        (PATCH * self.max_seq_length) as i32
    }

    /// Pixel column of the strip's last patch (where a truncated text's EOS goes).
    pub(crate) fn last_patch_px(&self) -> i32 {
        self.strip_width() - PATCH as i32
    }

    /// Start of the next patch at or after `x`, clamped to the last patch; also whether it
    /// had to be clamped (the text did not fit).
    pub(crate) fn next_patch(&self, x: i32) -> (i32, bool) {
        next_patch_within(x, self.last_patch_px())
    }

    fn shape(&mut self, text: &str, force_rtl: bool) -> ShapedLine {
        let opts = ShapeOptions {
            force_rtl,
            kerning: self.layout == Layout::Pango,
        };
        self.scratch.shaper.shape_line(&self.fonts, text, opts)
    }

    /// Draws `line` starting at column `x`; returns (width to advance by, column of the line
    /// origin). Pango advances by the logical width; PyGame puts the ink box's left edge at `x`
    /// and advances by the ink width.
    fn place(&mut self, line: &ShapedLine, x: i32, is_word: bool) -> (i32, i32) {
        let s = &mut self.scratch;
        match self.layout {
            Layout::Pango => {
                s.canvas
                    .draw_line(line, x, self.pango_baseline, &self.fonts, &mut s.cache);
                (line.width, x)
            }
            Layout::Pygame => {
                let ink = ink_box(line, &self.fonts, &mut s.cache);
                if ink.is_empty() {
                    return (0, x);
                }
                let origin = x - ink.left;
                let baseline = if is_word {
                    PYGAME_WORD_BASELINE
                } else {
                    // Rect.midleft = (x, 8): top = 8 - height // 2.
                    PATCH as i32 / 2 - ink.height() / 2 - ink.top
                };
                s.canvas
                    .draw_line(line, origin, baseline, &self.fonts, &mut s.cache);
                (ink.width(), origin)
            }
        }
    }

    /// Renders one text: drawn from x = 2, EOS at the next patch after text end + 2.
    pub(crate) fn continuous_text(&mut self, text: &str) -> Rendering {
        let text = clean_text(text);
        let line = self.shape(&text, false);
        let (width, origin) = self.place(&line, PAD, false);
        let (eos, truncated) = self.next_patch(PAD + width + PAD);
        let mapped = MappedText {
            char_x: &line.char_x,
            origin,
            width: width + PAD,
            shift: 0,
            rtl: false,
        };
        let mut mapping = text_offset_mapping(&mapped, self.strip_width());
        mapping.push((0, 0));
        let mapping = pad_or_truncate(mapping, self.max_seq_length);
        self.finish(&[eos], truncated, line.missing, None, 0, Some(mapping))
    }

    /// Renders a sentence pair: A at x = 2, black separator, B two pixels after it, EOS.
    /// Right-to-left when both texts vote RTL (text B is then cut to fit the strip).
    pub(crate) fn continuous_pair(&mut self, text_a: &str, text_b: &str) -> Rendering {
        let (a, b) = (clean_text(text_a), clean_text(text_b));
        let rtl = is_rtl(&a) && is_rtl(&b);
        let full_a = self.shape(&a, rtl);
        let mut truncated = false;
        let mut line_a = full_a.clone();
        if let Some(max) = self.text_a_max_patches {
            if patches_ceil(PAD + full_a.width) > max as i32 {
                line_a = self.shape_prefix_to_patches(&a, rtl, PAD, max as i32);
                truncated = true;
            }
        }
        // Quirk kept from the reference: the separator goes after the *untruncated* text A.
        let (_, origin_a) = self.place(&line_a, PAD, false);
        let width_a = self.measure(&full_a);
        let (sep, sep_clamped) = self.next_patch(PAD + width_a + PAD);
        let x_b = sep + PATCH as i32 + PAD;

        let mut line_b = self.shape(&b, rtl);
        if rtl {
            let last_patch = self.max_seq_length as i32 - 1;
            if patches_ceil(x_b + self.measure(&line_b)) > last_patch {
                line_b = self.shape_prefix_to_patches(&b, rtl, x_b, last_patch);
                truncated = true;
            }
        }
        let (width_b, origin_b) = self.place(&line_b, x_b, false);
        let (eos, eos_clamped) = self.next_patch(x_b + width_b + PAD);

        let map_a = MappedText {
            char_x: &line_a.char_x,
            origin: origin_a,
            width: width_a + PAD,
            shift: 0,
            rtl,
        };
        let map_b = MappedText {
            char_x: &line_b.char_x,
            origin: origin_b,
            width: width_b + PAD,
            shift: x_b - PAD,
            rtl,
        };
        let mut mapping = text_offset_mapping(&map_a, self.strip_width());
        mapping.push((0, 0));
        mapping.extend(text_offset_mapping(&map_b, self.strip_width()));
        let mapping = pad_or_truncate(mapping, self.max_seq_length);
        let missing = line_a.missing + line_b.missing;
        let truncated = truncated || sep_clamped || eos_clamped;
        self.finish(&[sep, eos], truncated, missing, None, 0, Some(mapping))
    }

    /// Renders words for token classification: word 0 at x = 2, every later word on a patch
    /// boundary, non-final words with a trailing space. Words that do not fit are dropped.
    pub(crate) fn continuous_words<S: AsRef<str>>(&mut self, words: &[S]) -> Rendering {
        let run = self.draw_word_run(words, PAD, self.last_patch_px());
        let truncated = run.dropped > 0 || run.full;
        self.finish(
            &[run.end],
            truncated,
            run.missing,
            Some(run.word_starts),
            run.dropped,
            None,
        )
    }

    /// Draws `words` as the word-list layout does, word 0 at column `x0`; patch boundaries are
    /// clamped to the patch at column `last`, and the words after one that reaches it are
    /// dropped.
    pub(crate) fn draw_word_run<S: AsRef<str>>(
        &mut self,
        words: &[S],
        x0: i32,
        last: i32,
    ) -> WordRun {
        let mut x = x0;
        let mut word_starts = vec![x0.max(0) as usize / PATCH];
        let mut missing = 0;
        let mut rendered = 0;
        let mut full = false;
        if words.is_empty() {
            let (end, _) = next_patch_within(x0 + PAD, last);
            return WordRun {
                end,
                word_starts: vec![end as usize / PATCH],
                missing: 0,
                dropped: 0,
                full: false,
            };
        }
        for word in &words[..words.len() - 1] {
            let line = self.shape(&format!("{} ", clean_text(word.as_ref())), false);
            missing += line.missing;
            let (width, _) = self.place(&line, x, true);
            rendered += 1;
            x = next_patch_within(x + width, last).0;
            word_starts.push(x as usize / PATCH);
            if x == last {
                full = true;
                break;
            }
        }
        if !full {
            let line = self.shape(&clean_text(words[words.len() - 1].as_ref()), false);
            missing += line.missing;
            let (width, _) = self.place(&line, x, true);
            rendered += 1;
            let (end, clamped) = next_patch_within(x + PAD + width, last);
            x = end;
            full = clamped;
            word_starts.push(x as usize / PATCH);
        }
        WordRun {
            end: x,
            word_starts,
            missing,
            dropped: words.len() - rendered,
            full,
        }
    }

    /// Width the layout advances by, without drawing.
    fn measure(&mut self, line: &ShapedLine) -> i32 {
        match self.layout {
            Layout::Pango => line.width,
            Layout::Pygame => ink_box(line, &self.fonts, &mut self.scratch.cache).width(),
        }
    }

    /// PIXEL's truncation: binary search over the character prefix length for a prefix whose
    /// end, drawn from `offset`, covers exactly `max_patches` patches (or the last one tried).
    fn shape_prefix_to_patches(
        &mut self,
        text: &str,
        rtl: bool,
        offset: i32,
        max_patches: i32,
    ) -> ShapedLine {
        let ends: Vec<usize> = text
            .char_indices()
            .map(|(b, _)| b)
            .skip(1)
            .chain(std::iter::once(text.len()))
            .collect();
        let prefix = |n: usize| if n == 0 { "" } else { &text[..ends[n - 1]] };
        let (mut lo, mut hi) = (0i64, ends.len() as i64);
        let mut line = ShapedLine::default();
        while lo <= hi {
            let mid = ((lo + hi) / 2) as usize;
            line = self.shape(prefix(mid), rtl);
            let patches = patches_ceil(offset + self.measure(&line));
            if patches < max_patches {
                lo = mid as i64 + 1;
            } else if patches > max_patches {
                hi = mid as i64 - 1;
            } else {
                break;
            }
        }
        line
    }

    pub(crate) fn finish(
        &mut self,
        black_patches_px: &[i32],
        truncated: bool,
        missing: usize,
        word_starts: Option<Vec<usize>>,
        dropped_words: usize,
        offset_mapping: Option<Vec<(i32, i32)>>,
    ) -> Rendering {
        let black: Vec<usize> = black_patches_px.iter().map(|&p| p as usize).collect();
        let (gray, used) = self.scratch.canvas.take_gray(&black);
        Rendering::new(
            gray,
            used,
            self.max_seq_length,
            &black,
            truncated,
            missing,
            word_starts,
            dropped_words,
            offset_mapping,
        )
    }
}

fn patches_ceil(px: i32) -> i32 {
    (px + PATCH as i32 - 1).div_euclid(PATCH as i32)
}
