//! QA overflow windows: per-patch context offsets, the question repeated in every
//! window, the stride overlap, and the whole context covered.

use pixel_render::{RenderConfig, Renderer};

fn renderer(l: usize) -> Renderer {
    Renderer::new(RenderConfig {
        max_seq_length: l,
        ..RenderConfig::default()
    })
    .expect("embedded fonts load")
}

const QUESTION: &str = "Who founded the company?";

fn long_context() -> String {
    (0..40)
        .map(|i| format!("Sentence {i} tells about ships and the yard."))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_short_context_is_one_window_whose_spans_tile_the_context() {
    let context = "Brothers Amos and Wilfrid Ayre founded it in 1918.";
    let w = renderer(64).render_pair_windows(QUESTION, context, 8);
    assert_eq!(w.len(), 1);
    let r = &w[0].rendering;
    let sep = r.black_patches[0];
    let patches: Vec<usize> = w[0].context_patches().collect();
    assert_eq!(
        patches[0],
        sep + 1,
        "context starts right after the separator"
    );
    let spans: Vec<(usize, usize)> = w[0].context_offsets.iter().flatten().copied().collect();
    assert_eq!(spans[0].0, 0);
    assert_eq!(spans.last().unwrap().1, context.chars().count());
    for pair in spans.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "spans are contiguous: {spans:?}");
    }
    assert!(patches.iter().all(|&p| p < r.num_text_patches));
}

#[test]
fn long_contexts_overflow_into_windows_overlapping_by_the_stride() {
    let context = long_context();
    let n = context.chars().count();
    let stride = 8;
    let w = renderer(64).render_pair_windows(QUESTION, &context, stride);
    assert!(w.len() >= 3, "{} windows", w.len());
    let first = &w[0].rendering;
    let question_px = 16 * (first.black_patches[0] + 1);
    for (k, win) in w.iter().enumerate() {
        let r = &win.rendering;
        assert_eq!(r.black_patches[0], first.black_patches[0]);
        for y in 0..16 {
            for x in 0..question_px {
                assert_eq!(
                    r.pixel(y, x),
                    first.pixel(y, x),
                    "window {k}: question region differs"
                );
            }
        }
        let spans: Vec<(usize, usize)> = win.context_offsets.iter().flatten().copied().collect();
        assert_eq!(spans[0].0, win.context_start);
        if let Some(next) = w.get(k + 1) {
            // The next window starts at the patch `stride` context patches before the cut.
            assert_eq!(
                next.context_start,
                spans[spans.len() - stride].0,
                "window {k}"
            );
            assert!(next.context_start > win.context_start);
        } else {
            assert_eq!(
                spans.last().unwrap().1,
                n,
                "the last window reaches the end"
            );
        }
    }
}

#[test]
fn a_question_filling_the_strip_gives_one_window_without_context() {
    let question = "why ".repeat(200);
    let w = renderer(32).render_pair_windows(&question, &long_context(), 4);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].context_patches().count(), 0);
}

#[test]
fn offsets_count_characters_and_survive_control_characters() {
    let context = "Ünïcödé\u{7}text\nmore text here";
    let w = renderer(64).render_pair_windows("q?", context, 4);
    let spans: Vec<(usize, usize)> = w[0].context_offsets.iter().flatten().copied().collect();
    assert_eq!(spans.last().unwrap().1, context.chars().count());
}

/// Only the windowing: the right-to-left spans themselves (one character per
/// patch, then one wide span) are not verified against the original.
#[test]
fn right_to_left_pairs_mirror_the_spans_and_still_overflow() {
    let context = (0..30)
        .map(|i| format!("الجملة رقم {i} عن السفن والميناء."))
        .collect::<Vec<_>>()
        .join(" ");
    let n = context.chars().count();
    let w = renderer(64).render_pair_windows("من أسس الشركة؟", &context, 8);
    assert!(w.len() >= 2, "{} windows", w.len());
    for win in &w {
        assert!(win.rtl);
        let spans: Vec<(usize, usize)> = win.context_offsets.iter().flatten().copied().collect();
        assert!(spans[0].0 > spans[spans.len() - 1].0, "mirrored: {spans:?}");
    }
    for pair in w.windows(2) {
        assert!(pair[1].context_start > pair[0].context_start);
    }
    let last: Vec<(usize, usize)> = w
        .last()
        .unwrap()
        .context_offsets
        .iter()
        .flatten()
        .copied()
        .collect();
    assert_eq!(last.iter().map(|s| s.1).max(), Some(n));
}
