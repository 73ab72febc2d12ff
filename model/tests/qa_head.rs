//! The extractive QA head (SPEC 5, trap 16): CLS last, the start/end split of
//! the logits, the loss as the mean of two cross-entropies, and that it learns.
//! Its finite-difference gradient check and its plain reference run with the
//! other heads in `heads.rs`.

use pixel_engine::gradcheck::randn;
use pixel_engine::{Rng, Tape, Var};
use pixel_model::heads::{FinetuneLabels, HeadKind, PixelForFinetuning};
use pixel_model::{ForwardMode, PixelConfig};

const L: usize = 5;

fn small_config() -> PixelConfig {
    let mut c = PixelConfig::tiny(L);
    c.hidden_size = 8;
    c.num_attention_heads = 2;
    c.intermediate_size = 16;
    c.num_hidden_layers = 1;
    c.hidden_dropout_prob = 0.0;
    c
}

fn head_out(
    model: &PixelForFinetuning,
    h: &pixel_engine::Tensor,
    labels: &FinetuneLabels,
) -> (Vec<f32>, Option<f32>) {
    let mut tape = Tape::no_grad();
    let params = model.params.vars(&mut tape);
    let mut rng = Rng::new(0);
    let mode = ForwardMode {
        training: false,
        rng: &mut rng,
    };
    let b = h.shape()[0];
    let out = model.forward_head(
        &mut tape,
        &params,
        &Var::constant(h.clone()),
        &vec![1.0; b * L],
        labels,
        mode,
    );
    assert_eq!(out.logits.shape(), &[b, L + 1, 2]);
    (
        out.logits.value().to_host().into_vec(),
        out.loss.map(|l| l.value().item()),
    )
}

#[test]
fn cls_is_the_last_position_and_only_it_sees_h0() {
    let model = PixelForFinetuning::new(
        small_config(),
        HeadKind::QuestionAnswering,
        &mut Rng::new(1),
    );
    let mut rng = Rng::new(2);
    let h = randn(&[1, L + 1, 8], &mut rng);
    let (base, none) = head_out(&model, &h, &FinetuneLabels::None);
    assert!(none.is_none(), "no labels, no loss");
    // Changing H[:, 0] (CLS) changes exactly the logits at index L.
    let mut h2 = h.clone();
    h2.data_mut()[..8].iter_mut().for_each(|v| *v += 1.0);
    let (moved, _) = head_out(&model, &h2, &FinetuneLabels::None);
    for pos in 0..=L {
        let same = base[pos * 2..pos * 2 + 2] == moved[pos * 2..pos * 2 + 2];
        assert_eq!(same, pos != L, "position {pos}");
    }
}

#[test]
fn loss_is_the_mean_of_the_start_and_end_cross_entropies() {
    let model = PixelForFinetuning::new(
        small_config(),
        HeadKind::QuestionAnswering,
        &mut Rng::new(3),
    );
    let h = randn(&[2, L + 1, 8], &mut Rng::new(4));
    let (start, end) = (vec![1i64, L as i64], vec![3i64, L as i64]);
    let labels = FinetuneLabels::Spans {
        start: start.clone(),
        end: end.clone(),
    };
    let (logits, loss) = head_out(&model, &h, &labels);
    let ce = |k: usize, y: &[i64]| -> f64 {
        (0..2)
            .map(|b| {
                let row: Vec<f64> = (0..=L)
                    .map(|p| logits[(b * (L + 1) + p) * 2 + k] as f64)
                    .collect();
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
                -(row[y[b] as usize] - m - z.ln())
            })
            .sum::<f64>()
            / 2.0
    };
    let want = 0.5 * (ce(0, &start) + ce(1, &end));
    assert!(
        (loss.unwrap() as f64 - want).abs() < 1e-5,
        "{loss:?} vs {want}"
    );
}

#[test]
#[should_panic(expected = "outside 0..=5")]
fn positions_beyond_cls_are_a_programming_error() {
    let model = PixelForFinetuning::new(
        small_config(),
        HeadKind::QuestionAnswering,
        &mut Rng::new(5),
    );
    let h = randn(&[1, L + 1, 8], &mut Rng::new(6));
    head_out(
        &model,
        &h,
        &FinetuneLabels::Spans {
            start: vec![L as i64 + 1],
            end: vec![0],
        },
    );
}
