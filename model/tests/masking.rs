//! Span masking and the model-side masking decision (SPEC 2).

mod common;

use pixel_engine::Rng;
use pixel_model::checkpoint::read_npy;
use pixel_model::masking::{num_kept_patches, MaskingError, PatchMasking, SpanMaskingGenerator};

/// Lengths of the runs of ones in a 0/1 mask.
fn runs(mask: &[f32]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut run = 0;
    for &m in mask.iter().chain([0.0].iter()) {
        if m == 1.0 {
            run += 1;
        } else if run > 0 {
            out.push(run);
            run = 0;
        }
    }
    out
}

fn count(mask: &[f32]) -> usize {
    mask.iter().filter(|&&m| m == 1.0).count()
}

/// Checks the structural invariants of one PatchMasking.
fn check_consistent(m: &PatchMasking) {
    let l = m.num_patches;
    let restore = m.ids_restore();
    for b in 0..m.batch {
        let keep = m.keep_row(b);
        let removed = m.removed_row(b);
        assert_eq!(keep.len() + removed.len(), l);
        assert!(keep.windows(2).all(|w| w[0] < w[1]), "keep ascending");
        assert!(removed.windows(2).all(|w| w[0] < w[1]), "removed ascending");
        let mut seen = vec![false; l];
        for &p in keep.iter().chain(removed) {
            assert!(!seen[p], "patch {p} listed twice");
            seen[p] = true;
        }
        for &p in removed {
            assert_eq!(m.mask[b * l + p], 1.0);
        }
        for &p in keep {
            assert_eq!(m.mask[b * l + p], 0.0);
        }
        // ids_restore inverts [keep..., removed...].
        let order: Vec<usize> = keep.iter().chain(removed).copied().collect();
        for p in 0..l {
            assert_eq!(order[restore[b * l + p]], p);
        }
    }
}

#[test]
fn span_lengths_follow_the_cumulative_weights() {
    let generator = SpanMaskingGenerator::new(529, 0.25);
    let mut rng = Rng::new(11);
    let n = 200_000;
    let mut hist = [0usize; 7];
    for _ in 0..n {
        hist[generator.draw_span_length(&mut rng)] += 1;
    }
    assert_eq!(hist[0], 0);
    let expected = [0.0, 0.2, 0.2, 0.2, 0.2, 0.1, 0.1];
    for len in 1..=6 {
        let p = expected[len];
        let sd = (p * (1.0 - p) / n as f64).sqrt();
        let got = hist[len] as f64 / n as f64;
        assert!((got - p).abs() < 5.0 * sd, "length {len}: {got} vs {p}");
    }
}

#[test]
fn pretraining_masks_have_133_patches_in_runs_of_at_most_6() {
    let generator = SpanMaskingGenerator::new(529, 0.25);
    assert_eq!(generator.num_masking_patches, 133);
    let mut rng = Rng::new(3);
    let mut total_runs = 0;
    let mut total_len = 0;
    let mut full = 0;
    for i in 0..300 {
        let text = 1 + (i * 37) % 529;
        let mask = generator.generate(text, &mut rng);
        assert_eq!(mask.len(), 529);
        let c = count(&mask);
        assert!(c <= 133, "{c} masked");
        full += usize::from(c == 133);
        // The first span lies in text + EOS: an attended patch is always masked.
        let first_window = text.clamp(6, 529);
        assert!(
            mask[..first_window].contains(&1.0),
            "nothing masked in text"
        );
        let r = runs(&mask);
        assert!(r.iter().all(|&len| (1..=6).contains(&len)), "{r:?}");
        total_runs += r.len();
        total_len += r.iter().sum::<usize>();
    }
    // The spacing rule rarely blocks a 529-patch strip: nearly every mask is complete.
    assert!(full >= 290, "only {full} of 300 masks reached 133");
    // Mean run length: 2.79 with these weights (short spans pass the spacing check and
    // fit the end of the budget more often); uniform lengths 1-6 give 3.14.
    let mean = total_len as f64 / total_runs as f64;
    eprintln!("complete masks {full}/300, mean run length {mean:.3}");
    assert!((2.65..2.95).contains(&mean), "mean run length {mean}");
}

#[test]
fn placements_respect_spacing_and_the_first_span_is_inside_the_text() {
    let generator = SpanMaskingGenerator::new(100, 0.4);
    let mut rng = Rng::new(5);
    for trial in 0..500 {
        let text = 1 + trial % 30;
        let (mask, spans) = generator.generate_with_spans(text, &mut rng);
        let (left0, len0) = spans[0];
        assert!(
            left0 + len0 <= text.max(len0),
            "first span {spans:?} outside text {text}"
        );
        // Replay: every placement had clear space of its own length on both sides.
        let mut replay = [false; 100];
        for &(left, span) in &spans {
            let before = left.saturating_sub(span)..left;
            let after = (left + span).min(100)..(left + 2 * span).min(100);
            assert!(replay[before].iter().all(|&m| !m), "spacing before {left}");
            assert!(replay[after].iter().all(|&m| !m), "spacing after {left}");
            assert!(
                replay[left..left + span].iter().any(|&m| !m),
                "adds nothing"
            );
            replay[left..left + span].iter_mut().for_each(|m| *m = true);
        }
        let replayed: Vec<f32> = replay.iter().map(|&m| f32::from(u8::from(m))).collect();
        assert_eq!(replayed, mask);
        assert!(count(&mask) <= 40);
    }
}

#[test]
fn span_masking_is_deterministic_by_seed() {
    let generator = SpanMaskingGenerator::new(529, 0.25);
    let a = generator.generate_batch(&[100, 300], &mut Rng::new(9));
    let b = generator.generate_batch(&[100, 300], &mut Rng::new(9));
    let c = generator.generate_batch(&[100, 300], &mut Rng::new(10));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 2 * 529);
}

#[test]
fn crowded_strips_stop_early_and_controlled_masking_tops_up() {
    // 18 of 20 patches cannot be masked with spacing: the generator gives up.
    let generator = SpanMaskingGenerator::new(20, 0.9);
    let mut rng = Rng::new(1);
    let masks = generator.generate_batch(&[20, 5, 20], &mut rng);
    for row in masks.chunks(20) {
        assert!(count(row) < 18 && count(row) >= 1);
    }
    let m = PatchMasking::controlled(&masks, 3, 20, 0.9, &mut rng);
    assert_eq!(m.len_keep, num_kept_patches(20, 0.9));
    assert_eq!(m.len_keep, 1, "int(20 * 0.1) = int(1.9999999999999996) = 1");
    check_consistent(&m);
    for b in 0..3 {
        // Every span-masked patch is removed.
        for p in 0..20 {
            if masks[b * 20 + p] == 1.0 {
                assert_eq!(m.mask[b * 20 + p], 1.0);
            }
        }
    }
}

#[test]
fn controlled_top_up_is_uniform_over_unmasked_patches() {
    // Span mask with 2 patches; 6 must be removed, so 4 are drawn from the other 22.
    let l = 24;
    let mut span = vec![0.0f32; l];
    span[3] = 1.0;
    span[4] = 1.0;
    let mut rng = Rng::new(21);
    let trials = 20_000;
    let mut hits = vec![0usize; l];
    for _ in 0..trials {
        let m = PatchMasking::controlled(&span, 1, l, 0.25, &mut rng);
        assert_eq!(m.removed.len(), 6);
        assert!(m.removed.contains(&3) && m.removed.contains(&4));
        for &p in &m.removed {
            hits[p] += 1;
        }
    }
    let p = 4.0 / 22.0;
    let sd = (trials as f64 * p * (1.0 - p)).sqrt();
    for (patch, &h) in hits.iter().enumerate() {
        if patch == 3 || patch == 4 {
            assert_eq!(h, trials);
        } else {
            let dev = (h as f64 - trials as f64 * p).abs();
            assert!(
                dev < 5.0 * sd,
                "patch {patch}: {h} hits, expected ~{}",
                trials as f64 * p
            );
        }
    }
}

#[test]
fn random_masking_always_removes_an_attended_patch_and_is_uniform() {
    let l = 24;
    let mut rng = Rng::new(8);
    // One attended patch only: it must be removed every time.
    let mut attention = vec![0.0f32; 2 * l];
    attention[7] = 1.0;
    attention[l..].iter_mut().for_each(|a| *a = 1.0);
    let trials = 10_000;
    let mut hits = vec![0usize; l];
    for _ in 0..trials {
        let m = PatchMasking::random(&attention, 2, l, 0.25, &mut rng);
        check_consistent(&m);
        assert_eq!(m.len_keep, 18);
        assert!(m.removed_row(0).contains(&7));
        for &p in m.removed_row(1) {
            hits[p] += 1;
        }
    }
    let p = 6.0 / 24.0;
    let sd = (trials as f64 * p * (1.0 - p)).sqrt();
    for (patch, &h) in hits.iter().enumerate() {
        assert!(
            (h as f64 - trials as f64 * p).abs() < 5.0 * sd,
            "patch {patch}: {h}"
        );
    }
}

#[test]
fn explicit_masks_match_the_fixture_and_reject_bad_input() {
    let dir = common::fixture_dir();
    let patch_mask = read_npy(dir.join("patch_mask.npy")).unwrap();
    let [b, l] = patch_mask.shape() else {
        panic!("patch_mask shape {:?}", patch_mask.shape())
    };
    let m = PatchMasking::explicit(patch_mask.data(), *b, *l).unwrap();
    check_consistent(&m);
    assert_eq!(m.mask, patch_mask.data());
    // The fixture removes exactly L - int(L (1 - 0.25)) per row, so controlled masking
    // with any noise gives the same decision.
    assert_eq!(m.len_removed(), l - num_kept_patches(*l, 0.25));
    let controlled = PatchMasking::controlled(patch_mask.data(), *b, *l, 0.25, &mut Rng::new(0));
    assert_eq!(controlled, m);

    assert!(matches!(
        PatchMasking::explicit(&[1.0, 0.0, 0.0, 0.0], 2, 2),
        Err(MaskingError::UnequalRows {
            row: 1,
            found: 0,
            expected: 1
        })
    ));
    assert!(matches!(
        PatchMasking::explicit(&[0.5, 0.0], 1, 2),
        Err(MaskingError::NotBinary { index: 0, .. })
    ));
    assert!(matches!(
        PatchMasking::explicit(&[0.0; 3], 2, 2),
        Err(MaskingError::WrongLength { found: 3, .. })
    ));
}

#[test]
fn keep_all_and_gather() {
    let m = PatchMasking::keep_all(2, 5);
    check_consistent(&m);
    assert_eq!(m.len_keep, 5);
    assert_eq!(m.ids_restore(), vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    let e = PatchMasking::explicit(&[0., 1., 0., 0., 1., 1., 0., 0., 0., 1.], 2, 5).unwrap();
    let attention: Vec<f32> = (0..10).map(|i| i as f32).collect();
    assert_eq!(e.gather_kept(&attention), vec![0., 2., 3., 6., 7., 8.]);
    assert_eq!(e.ids_restore(), vec![0, 3, 1, 2, 4, 3, 0, 1, 2, 4]);
    assert_eq!(e.mask_tensor().shape(), &[2, 5]);
}
