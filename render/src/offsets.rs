//! Per-patch character spans (for QA), following PIXEL's PangoCairo renderer arithmetic,
//! including its quirks (one span per character step, the remainder span ending one past the
//! character count, the merged span when a blank patch precedes the EOS).

use crate::canvas::PATCH;

/// Geometry of one drawn text for the offset mapping.
pub(crate) struct MappedText<'a> {
    /// Per character (logical order): cluster start x relative to the text origin.
    pub char_x: &'a [i32],
    /// Pixel column of the text origin on the strip.
    pub origin: i32,
    /// Width used for the mapping: the text's logical width + 2.
    pub width: i32,
    /// Pixel column where this text's first patch starts.
    pub shift: i32,
    /// Right-to-left text: spans count from the end.
    pub rtl: bool,
}

fn next_patch(x: i32, strip_width: i32) -> i32 {
    let p = PATCH as i32;
    ((x + p - 1).div_euclid(p) * p).min(strip_width - p)
}

fn previous_patch(x: i32) -> i32 {
    x.div_euclid(PATCH as i32) * PATCH as i32
}

/// Spans of one text, one per patch it covers.
pub(crate) fn text_offset_mapping(t: &MappedText, strip_width: i32) -> Vec<(i32, i32)> {
    let p = PATCH as i32;
    let n_chars = t.char_x.len() as i32;
    let mut positions: Vec<i32> = t.char_x.iter().map(|x| x + t.origin).collect();
    positions.push(next_patch(t.width + t.origin, strip_width));
    let flip = |i: i32| if t.rtl { n_chars - i } else { i };

    let mut mapping: Vec<(i32, i32)> = Vec::new();
    let mut start = 0i32;
    let mut cleared = 0i32;
    for (k, &v) in positions.iter().enumerate() {
        let boundary = p * (mapping.len() as i32 + 1);
        if v - t.shift >= boundary {
            let end = if v - t.shift == boundary {
                k as i32
            } else {
                k as i32 - 1
            };
            mapping.push((flip(start), flip(end)));
            start = end;
            cleared += 1;
        }
    }
    let covered = (t.width + t.origin - t.shift + p - 1).div_euclid(p);
    if cleared < covered {
        let end = if t.rtl { 0 } else { positions.len() as i32 };
        mapping.push((flip(start), end));
    }
    let blank_before_eos =
        next_patch(t.width, strip_width) - t.width < t.origin - previous_patch(t.origin);
    if blank_before_eos && mapping.len() >= 2 {
        let n = mapping.len();
        mapping[n - 2].1 = mapping[n - 1].1;
        mapping[n - 1] = (-1, -1);
    }
    mapping
}

/// Truncates to L entries (the last one (0, 0)) or pads with (0, 0).
pub(crate) fn pad_or_truncate(
    mut mapping: Vec<(i32, i32)>,
    max_seq_length: usize,
) -> Vec<(i32, i32)> {
    if mapping.len() >= max_seq_length {
        mapping.truncate(max_seq_length.saturating_sub(1));
        mapping.push((0, 0));
    }
    mapping.resize(max_seq_length, (0, 0));
    mapping
}
