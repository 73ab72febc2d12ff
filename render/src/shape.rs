//! One line of text to positioned glyphs: cleaning, font fallback, bidi, rustybuzz shaping and
//! Pango-style whole-pixel advances.

use std::collections::HashMap;

use rustybuzz::{BufferFlags, Direction, Feature, Script, ShapePlan, UnicodeBuffer};
use unicode_bidi::{Level, ParagraphBidiInfo};

use crate::fonts::FontSet;

/// A glyph ready to draw: its pen position is whole pixels from the line start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PlacedGlyph {
    pub face: u16,
    pub glyph: u16,
    /// Pixels from the line origin to the glyph origin (advance sum plus x offset).
    pub x: i32,
    /// Pixels below the baseline (negated y offset; marks stacked above are negative).
    pub dy: i32,
}

/// A shaped line in visual order.
#[derive(Clone, Debug, Default)]
pub(crate) struct ShapedLine {
    pub glyphs: Vec<PlacedGlyph>,
    /// Logical width: the sum of the rounded advances, whole pixels.
    pub width: i32,
    /// Per character of the input (logical order): x of the start of the cluster it belongs to.
    pub char_x: Vec<i32>,
    /// Characters no face has, drawn as the main font's .notdef.
    pub missing: usize,
}

/// How the line is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ShapeOptions {
    /// Force a right-to-left paragraph (RTL pairs); otherwise the first strong character decides.
    pub force_rtl: bool,
    /// Apply kerning and ligatures (Pango does; pygame.freetype does not).
    pub kerning: bool,
}

/// Replaces what Pango turns into spaces (newlines) and drops other control characters, which
/// have no glyph and would otherwise be drawn as .notdef boxes.
pub(crate) fn clean_text(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' => Some(' '),
            '\t' => Some('\t'),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// Characters HarfBuzz hides when no font has them (they take no width and are not "unknown").
fn is_default_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// Combining marks that must stay in their base character's face.
fn is_combining_mark(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x0483..=0x0489 | 0x0591..=0x05C7 | 0x0610..=0x061A | 0x064B..=0x065F
        | 0x0670 | 0x06D6..=0x06ED | 0x0900..=0x0903 | 0x093A..=0x094F | 0x0951..=0x0957
        | 0x0962..=0x0963 | 0x0B82 | 0x0BBE..=0x0BCD | 0x0BD7 | 0x1AB0..=0x1AFF
        | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0x302A..=0x302F | 0x3099..=0x309A | 0xFE20..=0xFE2F)
}

/// Code points that can start a right-to-left run; text without them skips the bidi pass.
fn may_be_rtl(c: char) -> bool {
    matches!(c as u32,
        0x0590..=0x08FF | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFF | 0x10800..=0x10FFF
        | 0x1E800..=0x1EFFF | 0x200F | 0x202B | 0x202E | 0x2067)
}

/// Picks a face per character: letters take the first face that has them (so Latin after CJK
/// goes back to the main font), everything else (spaces, punctuation, digits, marks) stays in
/// the current face when it can. Returns (face per char, missing count).
fn assign_faces(fonts: &FontSet, chars: &[(usize, char)]) -> (Vec<u16>, usize) {
    let mut faces = Vec::with_capacity(chars.len());
    let mut missing = 0;
    let mut current: Option<usize> = None;
    for &(_, c) in chars {
        let sticky = !c.is_alphabetic() || is_combining_mark(c);
        let chosen = match current {
            Some(f) if sticky && fonts.has_char(f, c) => Some(f),
            _ => fonts.face_for_char(c),
        };
        let face = match chosen {
            Some(f) => f,
            // Tabs and hidden characters take no glyph of their own; keep the run together.
            None if c == '\t' || is_default_ignorable(c) => current.unwrap_or(0),
            None => {
                missing += 1;
                0
            }
        };
        current = Some(face);
        faces.push(face as u16);
    }
    (faces, missing)
}

/// Reusable shaping state (one per renderer; not shared between threads).
#[derive(Default)]
pub(crate) struct Shaper {
    buffer: Option<UnicodeBuffer>,
    /// Compiled lookups per (face, right-to-left, script, kerning): building a plan costs more
    /// than shaping a sentence, so plans are made once.
    plans: HashMap<(usize, bool, Script, bool), ShapePlan>,
    /// Shaped words per (face, kerning, word with its trailing space).
    words: HashMap<(u16, bool, String), Vec<ChunkGlyph>>,
}

/// Bound on cached words (a cleared cache only costs re-shaping).
const WORD_CACHE_LIMIT: usize = 100_000;

/// A shaped glyph in whole pixels, relative to its chunk.
#[derive(Clone, Copy, Debug)]
struct ChunkGlyph {
    glyph: u16,
    /// Byte offset of its cluster in the chunk.
    cluster: u32,
    is_tab: bool,
    advance: i32,
    x_offset: i32,
    dy: i32,
}

/// Appends a shaped chunk that starts at byte `base` of the line at `pen`; returns the new pen.
fn append_chunk(
    glyphs: &[ChunkGlyph],
    face: usize,
    base: usize,
    mut pen: i32,
    tab_stop: i32,
    char_at_byte: &[usize],
    line: &mut ShapedLine,
) -> i32 {
    for g in glyphs {
        let advance = if g.is_tab && tab_stop > 0 {
            // Pango's default tab stops: every 8 space widths from the line start.
            (pen / tab_stop + 1) * tab_stop - pen
        } else {
            g.advance
        };
        let char_index = char_at_byte[base + g.cluster as usize];
        if let Some(slot) = line.char_x.get_mut(char_index) {
            *slot = if *slot == i32::MIN {
                pen
            } else {
                (*slot).min(pen)
            };
        }
        if !g.is_tab {
            line.glyphs.push(PlacedGlyph {
                face: face as u16,
                glyph: g.glyph,
                x: pen + g.x_offset,
                dy: g.dy,
            });
        }
        pen += advance;
    }
    pen
}

impl Shaper {
    /// Shapes `text` (already cleaned) into one line.
    pub fn shape_line(&mut self, fonts: &FontSet, text: &str, opts: ShapeOptions) -> ShapedLine {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let (faces, missing) = assign_faces(fonts, &chars);
        // Byte index -> char index, to turn cluster byte offsets into characters.
        let mut char_at_byte = vec![usize::MAX; text.len() + 1];
        for (i, &(b, _)) in chars.iter().enumerate() {
            char_at_byte[b] = i;
        }

        let runs = visual_runs(text, &chars, opts.force_rtl);
        let features = if opts.kerning {
            Vec::new()
        } else {
            ["kern", "liga", "clig"]
                .iter()
                .map(|t| {
                    Feature::new(
                        rustybuzz::ttf_parser::Tag::from_bytes_lossy(t.as_bytes()),
                        0,
                        ..,
                    )
                })
                .collect()
        };
        let tab_stop = 8 * self.space_advance(fonts);

        let mut line = ShapedLine {
            char_x: vec![i32::MIN; chars.len()],
            missing,
            ..Default::default()
        };
        let mut pen = 0i32;
        for (range, rtl) in runs {
            // Face segments of this bidi run, in visual order.
            let first = char_at_byte[range.start];
            let last = char_at_byte_end(&char_at_byte, range.end, chars.len());
            let mut segments = Vec::new();
            let mut seg_start = first;
            for i in first + 1..=last {
                if i == last || faces[i] != faces[seg_start] {
                    segments.push((seg_start, i));
                    seg_start = i;
                }
            }
            if rtl {
                segments.reverse();
            }
            for (c0, c1) in segments {
                let face = faces[c0] as usize;
                let b0 = chars[c0].0;
                let b1 = if c1 < chars.len() {
                    chars[c1].0
                } else {
                    text.len()
                };
                if rtl {
                    let shaped = self.shape_chunk(
                        fonts,
                        &text[b0..b1],
                        face,
                        true,
                        &features,
                        BufferFlags::empty(),
                    );
                    pen = append_chunk(&shaped, face, b0, pen, tab_stop, &char_at_byte, &mut line);
                    continue;
                }
                // Left-to-right text is shaped word by word (each with its trailing space) so
                // repeated words hit the cache; no Latin/Indic/CJK lookup crosses a space.
                let mut chunk_start = b0;
                while chunk_start < b1 {
                    let chunk_end = text[chunk_start..b1]
                        .find(' ')
                        .map_or(b1, |i| chunk_start + i + 1);
                    let chunk = &text[chunk_start..chunk_end];
                    let key = (face as u16, opts.kerning, chunk.to_string());
                    if !self.words.contains_key(&key) {
                        let shaped = self.shape_chunk(
                            fonts,
                            chunk,
                            face,
                            false,
                            &features,
                            BufferFlags::empty(),
                        );
                        if self.words.len() >= WORD_CACHE_LIMIT {
                            self.words.clear();
                        }
                        self.words.insert(key.clone(), shaped);
                    }
                    let shaped = &self.words[&key];
                    pen = append_chunk(
                        shaped,
                        face,
                        chunk_start,
                        pen,
                        tab_stop,
                        &char_at_byte,
                        &mut line,
                    );
                    chunk_start = chunk_end;
                }
            }
        }
        line.width = pen;
        // Characters inside a cluster share the cluster's start (filled in logical order).
        let mut last_x = 0;
        for x in line.char_x.iter_mut() {
            if *x == i32::MIN {
                *x = last_x;
            }
            last_x = *x;
        }
        line
    }

    /// Shapes one character on its own, as a Pango layout holding only that character: with
    /// kerning features, as a whole paragraph (so a lone combining mark gets HarfBuzz's dotted
    /// circle), right to left for a strong right-to-left character.
    pub fn shape_alone(&mut self, fonts: &FontSet, c: char) -> ShapedLine {
        let mut utf8 = [0u8; 4];
        let text: &str = c.encode_utf8(&mut utf8);
        let (faces, missing) = assign_faces(fonts, &[(0, c)]);
        let face = faces[0] as usize;
        let rtl = matches!(
            unicode_bidi::bidi_class(c),
            unicode_bidi::BidiClass::R | unicode_bidi::BidiClass::AL
        );
        let flags = BufferFlags::BEGINNING_OF_TEXT | BufferFlags::END_OF_TEXT;
        let shaped = self.shape_chunk(fonts, text, face, rtl, &[], flags);
        let mut line = ShapedLine {
            char_x: vec![i32::MIN],
            missing,
            ..Default::default()
        };
        let char_at_byte = [0usize; 4];
        line.width = append_chunk(&shaped, face, 0, 0, 0, &char_at_byte, &mut line);
        line.char_x[0] = 0;
        line
    }

    /// Shapes `chunk` with face `face` into whole-pixel glyphs.
    fn shape_chunk(
        &mut self,
        fonts: &FontSet,
        chunk: &str,
        face: usize,
        rtl: bool,
        features: &[Feature],
        flags: BufferFlags,
    ) -> Vec<ChunkGlyph> {
        let mut buffer = self.buffer.take().unwrap_or_default();
        buffer.push_str(chunk);
        // Set every time: the buffer is reused between calls.
        buffer.set_flags(flags);
        buffer.set_direction(if rtl {
            Direction::RightToLeft
        } else {
            Direction::LeftToRight
        });
        buffer.guess_segment_properties();
        let shaper_face = &fonts.faces[face].shaper;
        let key = (face, rtl, buffer.script(), features.is_empty());
        let plan = self.plans.entry(key).or_insert_with(|| {
            let direction = buffer.direction();
            ShapePlan::new(shaper_face, direction, Some(key.2), None, features)
        });
        let shaped = rustybuzz::shape_with_plan(shaper_face, plan, buffer);
        let scale = fonts.scale(face);
        let glyphs = shaped
            .glyph_infos()
            .iter()
            .zip(shaped.glyph_positions())
            .map(|(info, pos)| ChunkGlyph {
                glyph: info.glyph_id as u16,
                cluster: info.cluster,
                is_tab: chunk.as_bytes().get(info.cluster as usize) == Some(&b'\t'),
                advance: round_px(pos.x_advance as f32 * scale),
                x_offset: round_px(pos.x_offset as f32 * scale),
                dy: -round_px(pos.y_offset as f32 * scale),
            })
            .collect();
        self.buffer = Some(shaped.clear());
        glyphs
    }

    /// Whole-pixel advance of the main font's space.
    fn space_advance(&self, fonts: &FontSet) -> i32 {
        let face = &fonts.faces[0].shaper;
        face.glyph_index(' ')
            .and_then(|g| face.glyph_hor_advance(g))
            .map(|a| round_px(a as f32 * fonts.scale(0)))
            .unwrap_or(0)
    }
}

/// Index of the char that starts at byte `end` (or `n_chars` at the end of the text).
fn char_at_byte_end(char_at_byte: &[usize], end: usize, n_chars: usize) -> usize {
    if end >= char_at_byte.len() - 1 {
        n_chars
    } else {
        char_at_byte[end]
    }
}

/// Pixel rounding of Pango units: halves go up.
fn round_px(v: f32) -> i32 {
    (v + 0.5).floor() as i32
}

/// Bidi runs in visual order as (byte range, right-to-left).
fn visual_runs(
    text: &str,
    chars: &[(usize, char)],
    force_rtl: bool,
) -> Vec<(std::ops::Range<usize>, bool)> {
    if text.is_empty() {
        return Vec::new();
    }
    if !force_rtl && !chars.iter().any(|&(_, c)| may_be_rtl(c)) {
        return vec![(0..text.len(), false)];
    }
    let level = force_rtl.then(Level::rtl);
    let info = ParagraphBidiInfo::new(text, level);
    let (levels, runs) = info.visual_runs(0..text.len());
    runs.into_iter()
        .map(|r| {
            let rtl = levels[r.start].is_rtl();
            (r, rtl)
        })
        .collect()
}
