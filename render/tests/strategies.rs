//! The rendering strategies: layout invariants of bigrams, mono and words (patch boundaries,
//! word starts, truncation, pairs, right to left) and the continuous word lists kept as they were.

use pixel_render::{Input, Layout, RenderConfig, Renderer, Rendering, RenderingStrategy};

fn renderer(rendering: RenderingStrategy, max_seq_length: usize) -> Renderer {
    Renderer::new(RenderConfig {
        rendering,
        max_seq_length,
        ..RenderConfig::default()
    })
    .expect("embedded fonts load")
}

fn bigrams() -> Renderer {
    renderer(RenderingStrategy::Bigrams, 529)
}

/// Patch `k` as (16, 16) grayscale.
fn patch(r: &Rendering, k: usize) -> Vec<u8> {
    (0..16)
        .flat_map(|y| (0..16).map(move |x| (y, k * 16 + x)))
        .map(|(y, x)| r.pixel(y, x))
        .collect()
}

/// Patches `range` as one buffer.
fn patches(r: &Rendering, range: std::ops::Range<usize>) -> Vec<u8> {
    range.flat_map(|k| patch(r, k)).collect()
}

fn has_ink(r: &Rendering, k: usize) -> bool {
    patch(r, k).iter().any(|&p| p < 255)
}

fn strip_hash(r: &Rendering) -> u64 {
    r.gray_strip().iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

#[test]
fn defaults_are_the_continuous_rendering() {
    assert_eq!(
        RenderConfig::default().rendering,
        RenderingStrategy::Continuous
    );
    let r = Renderer::new(RenderConfig::default()).unwrap();
    assert_eq!(r.rendering(), RenderingStrategy::Continuous);
    assert_eq!(r.fork().rendering(), RenderingStrategy::Continuous);
    assert_eq!(bigrams().fork().rendering(), RenderingStrategy::Bigrams);
}

/// Word mode of the continuous rendering (whose code the words strategy shares) draws what it
/// drew before the strategies existed (hashes recorded then).
#[test]
fn continuous_word_lists_keep_their_pixels() {
    let words = [
        "President",
        "Bush",
        "on",
        "Tuesday",
        "nominated",
        "שלום",
        "北京",
    ];
    let mut pango = Renderer::new(RenderConfig::default()).unwrap();
    let mut pygame = Renderer::new(RenderConfig {
        layout: Layout::Pygame,
        ..RenderConfig::default()
    })
    .unwrap();
    assert_eq!(strip_hash(&pango.render_words(&words)), 0xd67b36170efebe6d);
    assert_eq!(strip_hash(&pygame.render_words(&words)), 0x5f9f2af905f477af);
}

#[test]
fn bigram_chunks_start_on_patch_boundaries_and_look_the_same_everywhere() {
    let mut r = bigrams();
    // "th" opens three words: the same two characters give the same patch wherever they are.
    let s = r.render_text("the thin theme");
    let starts = s.word_starts.clone().unwrap();
    assert_eq!(starts.len(), 4);
    let th = patch(&s, starts[0]);
    assert!(th.iter().any(|&p| p < 128), "ink in the first chunk");
    for &k in &starts[1..3] {
        assert_eq!(patch(&s, k), th, "patch {k}");
    }
    // Each word is drawn as it is alone: no patch spans two words, no space is drawn.
    for (w, word) in ["the", "thin", "theme"].iter().enumerate() {
        let alone = r.render_text(word);
        let n = starts[w + 1] - starts[w];
        assert_eq!(alone.num_text_patches, n, "{word}");
        assert_eq!(
            patches(&s, starts[w]..starts[w + 1]),
            patches(&alone, 0..n),
            "{word}"
        );
    }
    assert_eq!(s.num_text_patches, starts[3]);
    assert_eq!(s.black_patches, vec![starts[3]]);
    assert_eq!(s.attention_len(), starts[3] + 1);
}

/// The shift `s` (0..16) at which patch 0 of `pair` is `first` with `second` drawn `s` pixels
/// to the right (each pixel the darker of the two: their inks do not overlap in these tests).
fn second_shift(pair: &Rendering, first: &Rendering, second: &Rendering) -> Option<usize> {
    (0..16).find(|&s| {
        (0..16).all(|y| {
            (0..16).all(|x| {
                let a = first.pixel(y, x);
                let b = if x >= s { second.pixel(y, x - s) } else { 255 };
                pair.pixel(y, x) == a.min(b)
            })
        })
    })
}

#[test]
fn bigrams_draw_each_character_alone_and_wide_pairs_take_two_patches() {
    let mut r = bigrams();
    let mut continuous = renderer(RenderingStrategy::Continuous, 529);
    // x is drawn alone right after H's advance (10 px, as in the reference trace).
    let hx = r.render_text("Hx");
    let (h, x) = (r.render_text("H"), r.render_text("x"));
    assert_eq!(second_shift(&hx, &h, &x), Some(10));
    // "AV" kerns in a shaped line, not here.
    let av = r.render_text("AV");
    assert_ne!(patch(&av, 0), patch(&continuous.render_text("AV"), 0));
    // Two ideographs are wider than a patch: the chunk takes two, the next starts after them.
    let cjk = r.render_text("北京北京");
    assert_eq!(cjk.word_starts, Some(vec![0, 4]));
    assert_eq!(patches(&cjk, 0..2), patches(&cjk, 2..4));
    assert!(has_ink(&cjk, 1));
}

#[test]
fn bigram_sentences_split_on_any_whitespace_and_word_lists_are_kept() {
    let mut r = bigrams();
    let a = r.render_text("  two \t words\n");
    let b = r.render_text("two words");
    assert_eq!(strip_hash(&a), strip_hash(&b));
    assert_eq!(a.word_starts, b.word_starts);
    // A word list is not split: "a b" is one word with a space drawn inside.
    let w = r.render(&Input::Words(vec!["a b".into(), "c".into()]));
    assert_eq!(w.word_starts.as_ref().unwrap().len(), 3);
    // An empty word takes no room: it starts where the next does.
    let e = r.render_words(&["ab", "", "cd"]);
    assert_eq!(e.word_starts, Some(vec![0, 1, 1, 2]));
    assert!(!e.truncated);
}

#[test]
fn bigram_truncation_drops_words_from_the_end() {
    let mut r = renderer(RenderingStrategy::Bigrams, 8);
    // "ab" is one chunk narrower than a patch: word k starts on patch k.
    let words = vec!["ab"; 12];
    assert_eq!(
        bigrams().render_words(&words).word_starts,
        Some((0..=12).collect())
    );
    let s = r.render_words(&words);
    assert!(s.truncated);
    // The original keeps the words before the last one starting within L, less one more
    // (words 0..=7), and stops drawing once a word ends on the last patch (after word 6).
    assert_eq!(s.word_starts, Some((0..=7).collect()));
    assert_eq!(s.dropped_words, 5);
    assert_eq!(s.num_text_patches, 7);
    assert!(has_ink(&s, 6));
    assert!(
        patch(&s, 7).iter().all(|&v| v == 0),
        "EOS on the last patch"
    );
    // A single word longer than the strip is drawn cut, the EOS on the last patch.
    let long = r.render_text(&"x".repeat(40));
    assert_eq!(long.word_starts, Some(vec![0, 20]));
    assert_eq!(long.num_text_patches, 7);
    assert_eq!(long.attention_len(), 8);
    assert!(long.truncated);
}

#[test]
fn bigram_pairs_put_b_after_a_black_separator() {
    let mut r = bigrams();
    let p = r.render_pair("A man sings.", "Someone sings.");
    let a = r.render_text("A man sings.");
    let b = r.render_text("Someone sings.");
    let sep = a.num_text_patches;
    assert_eq!(p.black_patches, vec![sep, sep + 1 + b.num_text_patches]);
    assert_eq!(p.num_text_patches, sep + 1 + b.num_text_patches);
    assert!(patch(&p, sep).iter().all(|&v| v == 0), "separator is black");
    assert_eq!(patches(&p, 0..sep), patches(&a, 0..sep));
    assert_eq!(
        patches(&p, sep + 1..p.num_text_patches),
        patches(&b, 0..b.num_text_patches)
    );
    assert!(p.word_starts.is_none());
    // Text A's limit (QA's question length) applies to whole words.
    r.text_a_max_patches = Some(3);
    let q = r.render_pair("A man sings.", "Someone sings.");
    assert!(q.black_patches[0] <= 3, "{:?}", q.black_patches);
    assert!(q.truncated && q.dropped_words > 0);
}

#[test]
fn bigram_right_to_left_reverses_words_and_the_characters_of_each_word() {
    let mut r = bigrams();
    // Hebrew: the word order is reversed, so the last word comes first.
    let s = r.render_text("אבג דה");
    let first = r.render_text("דה");
    let second = r.render_text("אבג");
    let starts = s.word_starts.clone().unwrap();
    assert_eq!(starts, vec![0, first.num_text_patches, s.num_text_patches]);
    assert_eq!(
        patches(&s, 0..starts[1]),
        patches(&first, 0..first.num_text_patches)
    );
    assert_eq!(
        patches(&s, starts[1]..starts[2]),
        patches(&second, 0..second.num_text_patches)
    );
    // The characters of a right-to-left word are drawn reversed: in a left-to-right sentence
    // the same word appears mirrored in chunk order.
    let ltr = r.render_text("x הד y");
    let ltr_starts = ltr.word_starts.clone().unwrap();
    assert_eq!(
        patches(&ltr, ltr_starts[1]..ltr_starts[2]),
        patches(&first, 0..first.num_text_patches),
        "הד drawn left to right shows as דה drawn right to left"
    );
    // Word lists keep their order but reverse each word's characters.
    let w = r.render_words(&["אבג", "דה"]);
    let ws = w.word_starts.clone().unwrap();
    assert_eq!(
        patches(&w, ws[0]..ws[1]),
        patches(&second, 0..second.num_text_patches)
    );
}

#[test]
fn empty_inputs_draw_only_the_eos() {
    for rendering in RenderingStrategy::ALL {
        let mut r = renderer(rendering, 16);
        for input in [
            Input::Text(String::new()),
            Input::Text(" \t\n".into()),
            Input::Words(vec![]),
            Input::Pair(String::new(), String::new()),
        ] {
            let s = r.render(&input);
            assert!(s.num_text_patches <= 3, "{rendering} {input:?}");
            assert_eq!(s.pixel_values().len(), 3 * 16 * 256);
            assert!(!s.truncated, "{rendering} {input:?}");
        }
    }
}

#[test]
fn mono_puts_two_characters_in_every_patch() {
    let mut r = renderer(RenderingStrategy::Mono, 529);
    // Six characters = three patches; each character centred in its 8 px cell.
    let s = r.render_text("abcabc");
    assert_eq!(s.num_text_patches, 3);
    assert!(s.word_starts.is_none());
    // "ab" at cells 0-1 and "ab" at cells 6-7... the same pair in the same cell pair: same patch.
    let t = r.render_text("ab ab ab");
    // cells: a b _ a b _ a b -> patches "ab", "_a", "b_", "ab".
    assert_eq!(t.num_text_patches, 4);
    assert_eq!(patch(&t, 0), patch(&t, 3));
    assert_ne!(patch(&t, 0), patch(&t, 1));
    // A narrow glyph sits in the middle of its cell.
    let i = r.render_text("l");
    let cols: Vec<usize> = (0..16)
        .filter(|&x| (0..16).any(|y| i.pixel(y, x) < 128))
        .collect();
    let centre = (cols[0] + cols[cols.len() - 1]) as f64 / 2.0;
    assert!((2.5..=5.5).contains(&centre), "ink centre {centre}");
    assert!(cols.iter().all(|&c| c < 8));
}

#[test]
fn mono_word_lists_start_every_word_on_a_patch_and_truncate() {
    let mut r = renderer(RenderingStrategy::Mono, 529);
    let s = r.render_words(&["abc", "de", "f"]);
    assert_eq!(s.word_starts, Some(vec![0, 2, 3, 4]));
    assert_eq!(patch(&s, 2), patch(&r.render_text("de"), 0));
    let mut short = renderer(RenderingStrategy::Mono, 4);
    let t = short.render_words(&["ab", "cd", "ef", "gh", "ij"]);
    assert_eq!(t.word_starts, Some(vec![0, 1, 2, 3]));
    assert_eq!(t.dropped_words, 2);
    assert!(t.truncated);
    let long = short.render_text(&"x".repeat(20));
    assert_eq!(long.num_text_patches, 3);
    assert!(long.truncated);
    let p = r.render_pair("ab cd", "ef");
    // A: a b _ c d -> 3 patches; separator at 3; B at 4.
    assert_eq!(p.black_patches, vec![3, 5]);
    assert_eq!(patch(&p, 4), patch(&r.render_text("ef"), 0));
}

#[test]
fn words_strategy_draws_sentences_as_word_lists() {
    let mut w = renderer(RenderingStrategy::Words, 529);
    let mut c = renderer(RenderingStrategy::Continuous, 529);
    let text = "President Bush  on\tTuesday";
    let s = w.render_text(text);
    let list = c.render_words(&["President", "Bush", "on", "Tuesday"]);
    assert_eq!(strip_hash(&s), strip_hash(&list));
    assert_eq!(s.word_starts, list.word_starts);
    // Word lists are the continuous renderer's.
    assert_eq!(
        strip_hash(&w.render_words(&["a", "b"])),
        strip_hash(&c.render_words(&["a", "b"]))
    );
    // Pairs: A as a word list, black separator, B as a word list from the next patch.
    let p = w.render_pair("a man", "sings");
    let a = c.render_words(&["a", "man"]);
    let b = c.render_words(&["sings"]);
    let sep = a.num_text_patches;
    assert_eq!(p.black_patches, vec![sep, sep + 1 + b.num_text_patches]);
    assert_eq!(patches(&p, 0..sep), patches(&a, 0..sep));
    assert_eq!(
        patches(&p, sep + 1..p.num_text_patches),
        patches(&b, 0..b.num_text_patches)
    );
    // Right to left: the word order is reversed.
    let rtl = w.render_text("אבג דה");
    let rev = c.render_words(&["דה", "אבג"]);
    assert_eq!(strip_hash(&rtl), strip_hash(&rev));
}

#[test]
fn batches_render_with_the_renderers_strategy() {
    for rendering in RenderingStrategy::ALL {
        let mut r = renderer(rendering, 64);
        let inputs = vec![
            Input::Text("This is a test.".into()),
            Input::Words(vec!["two".into(), "words".into()]),
            Input::Pair("A man.".into(), "Someone.".into()),
        ];
        let batch = r.render_batch(&inputs);
        for (input, b) in inputs.iter().zip(&batch) {
            assert_eq!(strip_hash(b), strip_hash(&r.render(input)), "{rendering}");
        }
    }
}
