//! The model's parameters are exactly the checkpoint key set of its config,
//! and a forward/backward pass runs for configs the fixtures do not cover.

use std::collections::BTreeMap;
use std::sync::Arc;

use pixel_engine::{Rng, Tape, Tensor};
use pixel_model::checkpoint::expected_pretraining_keys;
use pixel_model::{ForwardMode, PatchMasking, PixelConfig, PixelForPreTraining};

fn param_shapes(m: &PixelForPreTraining) -> BTreeMap<String, Vec<usize>> {
    m.params
        .iter()
        .map(|p| (p.name.clone(), p.value.shape().to_vec()))
        .collect()
}

#[test]
fn parameters_match_the_checkpoint_keys_with_and_without_qkv_bias() {
    for qkv_bias in [true, false] {
        let mut cfg = PixelConfig::tiny(12);
        cfg.qkv_bias = qkv_bias;
        let model = PixelForPreTraining::new(cfg.clone(), &mut Rng::new(0));
        let expected: BTreeMap<String, Vec<usize>> =
            expected_pretraining_keys(&cfg).into_iter().collect();
        assert_eq!(param_shapes(&model), expected, "qkv_bias {qkv_bias}");

        // One pass with every gradient finite and the loss positive.
        let (loss, grads) = loss_and_grads(&model);
        assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
        assert!(grads.iter().flatten().all(|v| v.is_finite()));
        assert!(grads.len() >= model.params.iter().filter(|p| p.trainable).count() - 1);
    }
}

#[test]
fn base_parameter_count_matches_spec() {
    let model = PixelForPreTraining::new(PixelConfig::base(529), &mut Rng::new(0));
    let (all, trainable) = model.params.count();
    assert_eq!(all, 112_334_080);
    assert_eq!(trainable, 111_655_680);
}

/// Loss and every gradient that reached a parameter, of one training pass
/// of `model` on two fixed random strips.
fn loss_and_grads(model: &PixelForPreTraining) -> (f32, Vec<Vec<f32>>) {
    let l = model.config.num_patches();
    let mut pixels = Tensor::zeros(&[2, 3, 16, 16 * l]);
    Rng::new(1).fill_uniform(pixels.data_mut(), 0.0, 1.0);
    let attn: Vec<f32> = (0..2 * l)
        .map(|i| if i % l < 9 { 1.0 } else { 0.0 })
        .collect();
    let mut rng = Rng::new(2);
    let ratio = model.config.mask_ratio;
    let masking = PatchMasking::controlled(&vec![0.0; 2 * l], 2, l, ratio, &mut rng);
    let mut tape = Tape::new();
    let params = model.params.vars(&mut tape);
    let x = tape.leaf(Arc::new(pixels));
    let mode = ForwardMode {
        training: true,
        rng: &mut rng,
    };
    let out = model.forward(&mut tape, &params, &x, &attn, &masking, mode);
    let loss = out.loss.value().item();
    let mut grads = tape.backward(&out.loss);
    let g = model.params.take_grads(&params, &mut grads);
    (
        loss,
        g.into_iter().flatten().map(|t| t.data().to_vec()).collect(),
    )
}

/// With dropout on, so the recomputed path must regenerate nothing random of
/// its own.
#[test]
fn recomputing_the_mlps_gives_the_same_bits() {
    let mut cfg = PixelConfig::tiny(12);
    cfg.hidden_dropout_prob = 0.1;
    cfg.attention_probs_dropout_prob = 0.1;
    let model = PixelForPreTraining::new(cfg, &mut Rng::new(0));
    use pixel_model::layer::{set_recompute_mlp, RecomputeMlp};
    set_recompute_mlp(RecomputeMlp::None);
    let kept = loss_and_grads(&model);
    for which in [RecomputeMlp::Decoder, RecomputeMlp::All] {
        set_recompute_mlp(which);
        let recomputed = loss_and_grads(&model);
        set_recompute_mlp(RecomputeMlp::None);
        assert_eq!(kept.0.to_bits(), recomputed.0.to_bits(), "loss, {which:?}");
        assert_eq!(kept.1.len(), recomputed.1.len());
        for (i, (a, b)) in kept.1.iter().zip(&recomputed.1).enumerate() {
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "gradient {i} differs with {which:?} MLPs recomputed"
            );
        }
    }
}
