//! Span masking of one example (SPEC 2; `SpanMaskingGenerator` in the
//! reference): the data-side decision of which patches pretraining hides.

use pixel_engine::Rng;

/// How much unmasked space a new span needs on each side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spacing {
    /// As many patches as the span is long (PIXEL pretraining).
    Span,
    /// A fixed number of patches.
    Fixed(usize),
}

/// Span masking of one example (SPEC 2; `SpanMaskingGenerator` in the reference).
#[derive(Clone, Debug)]
pub struct SpanMaskingGenerator {
    pub num_patches: usize,
    /// Target number of masked patches: ceil(ratio * L).
    pub num_masking_patches: usize,
    pub max_span_length: usize,
    pub spacing: Spacing,
    /// Cumulative weights of span lengths 1..=max_span_length.
    pub cumulative_span_weights: Vec<f64>,
    pub max_attempts: usize,
}

impl SpanMaskingGenerator {
    /// The pretraining generator: spans 1-6 with P = .2,.2,.2,.2,.1,.1, spacing "span", 100 tries.
    pub fn new(num_patches: usize, mask_ratio: f64) -> SpanMaskingGenerator {
        SpanMaskingGenerator {
            num_patches,
            num_masking_patches: (mask_ratio * num_patches as f64).ceil() as usize,
            max_span_length: 6,
            spacing: Spacing::Span,
            cumulative_span_weights: vec![0.2, 0.4, 0.6, 0.8, 0.9, 1.0],
            max_attempts: 100,
        }
    }

    /// Draws a span length from the cumulative weights (Python's `random.choices`).
    pub fn draw_span_length(&self, rng: &mut Rng) -> usize {
        let weights = &self.cumulative_span_weights;
        let total = *weights.last().expect("span weights are not empty");
        let u = rng.uniform() * total;
        // First length whose cumulative weight exceeds u (bisect_right).
        let index = weights.partition_point(|&w| w <= u);
        (index.min(weights.len() - 1) + 1).min(self.max_span_length)
    }

    /// One example's mask (1 = masked), length L.
    ///
    /// `text_patches_plus_one` is num_text_patches + 1 (text and EOS); the first attempt of
    /// the call places its span inside it, so at least one attended patch is masked.
    /// The result may hold fewer than `num_masking_patches` ones when 100 attempts in a
    /// row add nothing (the model-side masking tops it up).
    pub fn generate(&self, text_patches_plus_one: usize, rng: &mut Rng) -> Vec<f32> {
        self.generate_with_spans(text_patches_plus_one, rng).0
    }

    /// [`Self::generate`], also returning each successful placement as (left, span length)
    /// in the order they were made.
    pub fn generate_with_spans(
        &self,
        text_patches_plus_one: usize,
        rng: &mut Rng,
    ) -> (Vec<f32>, Vec<(usize, usize)>) {
        let l = self.num_patches;
        let mut mask = vec![false; l];
        let mut spans = Vec::new();
        if l == 0 {
            return (Vec::new(), spans);
        }
        let text_end = text_patches_plus_one.min(l);
        let mut count = 0;
        let mut first_attempt = true;
        while count < self.num_masking_patches {
            let budget = (self.num_masking_patches - count).min(self.max_span_length);
            let mut added = 0;
            for _ in 0..self.max_attempts {
                // Spans longer than the strip are clipped (the reference would raise).
                let span = self.draw_span_length(rng).min(l);
                let left = if first_attempt {
                    first_attempt = false;
                    rng.int_inclusive(0, text_end.saturating_sub(span))
                } else {
                    rng.int_inclusive(0, l - span)
                };
                let space = match self.spacing {
                    Spacing::Span => span,
                    Spacing::Fixed(s) => s,
                };
                let before = left.saturating_sub(space)..left;
                let after = (left + span).min(l)..(left + span + space).min(l);
                if mask[before].iter().any(|&m| m) || mask[after].iter().any(|&m| m) {
                    continue;
                }
                let window = left..(left + span).min(l);
                let new = mask[window.clone()].iter().filter(|&&m| !m).count();
                if new > 0 && new <= budget {
                    mask[window].iter_mut().for_each(|m| *m = true);
                    spans.push((left, span));
                    added = new;
                    break;
                }
            }
            if added == 0 {
                break;
            }
            count += added;
        }
        let mask = mask.into_iter().map(|m| f32::from(u8::from(m))).collect();
        (mask, spans)
    }

    /// Masks for a batch, one per example, concatenated to [B * L].
    pub fn generate_batch(&self, text_patches_plus_one: &[usize], rng: &mut Rng) -> Vec<f32> {
        text_patches_plus_one
            .iter()
            .flat_map(|&t| self.generate(t, rng))
            .collect()
    }
}
