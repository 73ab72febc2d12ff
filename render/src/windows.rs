//! Overflow windows of a (question, context) pair for extractive QA (SPEC 1.3,
//! `return_overflowing_patches` with `stride`): a context longer than the strip is
//! cut into several renderings, each with the question and separator first and the
//! context continued `stride` patches before where the previous window was cut.
//! Every window carries, per patch, the character span of the *whole* context drawn
//! there (the pair's offset mapping shifted by where the window's context starts).

use crate::{Renderer, Rendering};

/// At most this many windows per pair (a guard; 19,872 characters at L = 400 take ~40).
const MAX_WINDOWS: usize = 10_000;

/// One window of a pair.
#[derive(Clone, Debug)]
pub struct PairWindow {
    pub rendering: Rendering,
    /// L entries: `Some((start, end))` (characters `start..end` of the context,
    /// counted in Unicode scalar values) for the patches showing context text,
    /// `None` for the question, separator, blank, EOS and padding patches.
    pub context_offsets: Vec<Option<(usize, usize)>>,
    /// First context character drawn in this window.
    pub context_start: usize,
    /// The pair was drawn right to left: context patches run from the end of
    /// the text (left) to its start (right).
    pub rtl: bool,
}

impl PairWindow {
    /// Indices of the patches that show context text, in order.
    pub fn context_patches(&self) -> impl Iterator<Item = usize> + '_ {
        self.context_offsets
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.map(|_| i))
    }
}

impl Renderer {
    /// Renders `(question, context)` as one or more windows: the first shows the
    /// context from its start; while the context is cut by the end of the strip, the
    /// next window starts at the first character of the patch `stride` context patches
    /// before the cut (at least one patch further than the window before). A question
    /// so long that no context fits gives a single window without context patches.
    /// Needs the continuous rendering (the others give no offset mapping, so their
    /// windows would have no context patches).
    pub fn render_pair_windows(
        &mut self,
        question: &str,
        context: &str,
        stride: usize,
    ) -> Vec<PairWindow> {
        // Control characters become spaces one for one (the renderer would drop
        // them), so that character indices stay those of the caller's context.
        let chars: Vec<char> = context
            .chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect();
        // No more characters than pixels fit in a window (each advances >= 1 px).
        let max_chars = self.max_seq_length() * crate::PATCH;
        let mut windows = Vec::new();
        let mut start = 0usize;
        while windows.len() < MAX_WINDOWS {
            let end = (start + max_chars).min(chars.len());
            let sub: String = chars[start..end].iter().collect();
            let rendering = self.render_pair(question, &sub);
            let context_offsets = shifted_context_offsets(&rendering, start, end);
            let mut patches: Vec<(usize, usize)> =
                context_offsets.iter().flatten().copied().collect();
            let rtl = patches.len() >= 2 && patches[0].0 > patches[patches.len() - 1].0;
            // In text order (right-to-left strips show it mirrored).
            patches.sort_unstable();
            let covered = patches.iter().map(|s| s.1).max().unwrap_or(start);
            windows.push(PairWindow {
                rendering,
                context_offsets,
                context_start: start,
                rtl,
            });
            if covered >= chars.len() || patches.is_empty() {
                break;
            }
            let k = patches.len().saturating_sub(stride).max(1);
            let next = if k < patches.len() {
                patches[k].0
            } else {
                covered
            };
            start = if next > start {
                next
            } else {
                covered.max(start + 1)
            };
        }
        windows
    }
}

/// The context spans of a pair rendering whose text B is characters
/// `start..end` of the context: patches after the separator and before the EOS
/// with a non-empty span, shifted by `start` and clamped to `end`.
fn shifted_context_offsets(r: &Rendering, start: usize, end: usize) -> Vec<Option<(usize, usize)>> {
    let l = r.max_seq_length;
    let mut out = vec![None; l];
    let (Some(mapping), [sep, .., eos]) = (&r.offset_mapping, r.black_patches.as_slice()) else {
        return out;
    };
    for i in sep + 1..(*eos).min(l) {
        let (a, b) = mapping[i];
        if a < 0 || b < 0 {
            continue; // the blank patch before the EOS
        }
        // Right-to-left spans count from the end: (n - start, n - end).
        let (a, b) = (
            a.min(b) as usize + start,
            (a.max(b) as usize + start).min(end),
        );
        if b > a {
            out[i] = Some((a, b));
        }
    }
    out
}
