//! From lines of text to training batches: greedy packing of lines into strips
//! (SPEC 1.6), rendering, span masking (SPEC 2), batching, and a worker thread
//! that prepares batches ahead of the training step through a bounded queue.
//!
//! Determinism: the batch of step `s` depends only on (seed, s): the example
//! order is a seeded permutation per epoch and the masks come from an RNG
//! derived from (seed, s). So `--resume` needs no replay to see the same data.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use pixel_engine::{Rng, Tensor};
use pixel_model::masking::SpanMaskingGenerator;
use pixel_model::train::PretrainBatch;
use pixel_model::{PatchMasking, PixelConfig};
use pixel_render::Renderer;

/// Mix a seed with stream and index numbers into an independent RNG seed.
pub fn derive_seed(seed: u64, stream: u64, index: u64) -> u64 {
    let mut r = Rng::new(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    r.next_u64() ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// Minimum text patches of a strip: 22 at L = 529 (SPEC 1.6), scaled with L.
pub fn min_text_patches(num_patches: usize) -> usize {
    ((22.0 * num_patches as f64 / 529.0).round() as usize).max(1)
}

/// Does `text` fit in one strip with room to spare (the reference packs until
/// the width would pass 16 L - 32 px)?
fn fits(renderer: &mut Renderer, text: &str) -> (bool, usize) {
    let r = renderer.render_text(text);
    let l = renderer.max_seq_length();
    (
        !r.truncated && r.num_text_patches + 2 <= l,
        r.num_text_patches,
    )
}

/// What packing produced.
#[derive(Debug, Default)]
pub struct PackStats {
    pub strips: usize,
    /// Lines too long for one strip, split at word boundaries.
    pub split_lines: usize,
    /// Strips dropped for having fewer than the minimum text patches.
    pub dropped_short: usize,
}

/// Greedily join lines with spaces into strip-sized texts (SPEC 1.6). A line
/// longer than a strip is cut at word boundaries into pieces that fit (the
/// reference would clip it; at short L most of it would be lost).
pub fn pack_lines(lines: &[String], renderer: &mut Renderer) -> (Vec<String>, PackStats) {
    let min_patches = min_text_patches(renderer.max_seq_length());
    let mut stats = PackStats::default();
    let mut pieces: Vec<String> = Vec::with_capacity(lines.len());
    for line in lines {
        if fits(renderer, line).0 {
            pieces.push(line.clone());
            continue;
        }
        stats.split_lines += 1;
        let mut current = String::new();
        for word in line.split_whitespace() {
            let candidate = if current.is_empty() {
                word.to_string()
            } else {
                format!("{current} {word}")
            };
            if current.is_empty() || fits(renderer, &candidate).0 {
                current = candidate;
            } else {
                pieces.push(std::mem::take(&mut current));
                current = word.to_string();
            }
        }
        if !current.is_empty() {
            pieces.push(current);
        }
    }
    let mut strips = Vec::new();
    let mut current = String::new();
    let mut push = |text: String, strips: &mut Vec<String>, renderer: &mut Renderer| {
        if fits(renderer, &text).1 >= min_patches {
            strips.push(text);
        } else {
            stats.dropped_short += 1;
        }
    };
    for piece in pieces {
        if current.is_empty() {
            current = piece;
            continue;
        }
        let candidate = format!("{current} {piece}");
        if fits(renderer, &candidate).0 {
            current = candidate;
        } else {
            push(
                std::mem::replace(&mut current, piece),
                &mut strips,
                renderer,
            );
        }
    }
    if !current.is_empty() {
        push(current, &mut strips, renderer);
    }
    stats.strips = strips.len();
    (strips, stats)
}

/// Renders and masks batches of strips.
pub struct BatchMaker {
    texts: Arc<Vec<String>>,
    renderer: Renderer,
    generator: SpanMaskingGenerator,
    batch_size: usize,
    mask_ratio: f64,
    /// Channels and patch side of the model input (the renderer draws
    /// 3-channel 16 x 16 patches; `run_pretraining` checks the config agrees).
    channels: usize,
    patch_size: usize,
    seed: u64,
    /// Epoch whose permutation is cached in `order`.
    epoch: Option<u64>,
    order: Vec<usize>,
}

impl BatchMaker {
    /// Batches of `batch_size` strips for a model of `config` (its mask ratio,
    /// channels and patch size).
    pub fn new(
        texts: Arc<Vec<String>>,
        renderer: Renderer,
        config: &PixelConfig,
        batch_size: usize,
        seed: u64,
    ) -> BatchMaker {
        assert!(!texts.is_empty(), "BatchMaker: no strips");
        let l = renderer.max_seq_length();
        BatchMaker {
            texts,
            generator: SpanMaskingGenerator::new(l, config.mask_ratio),
            renderer,
            batch_size,
            mask_ratio: config.mask_ratio,
            channels: config.num_channels,
            patch_size: config.patch_size,
            seed,
            epoch: None,
            order: Vec::new(),
        }
    }

    /// Index of the i-th example of the run (epochs of seeded permutations).
    fn example(&mut self, i: u64) -> usize {
        let n = self.texts.len() as u64;
        let epoch = i / n;
        if self.epoch != Some(epoch) {
            let mut rng = Rng::new(derive_seed(self.seed, 1, epoch));
            self.order = (0..self.texts.len()).collect();
            for k in (1..self.order.len()).rev() {
                let j = rng.int_inclusive(0, k);
                self.order.swap(k, j);
            }
            self.epoch = Some(epoch);
        }
        self.order[(i % n) as usize]
    }

    /// The micro-batch with run-wide index `step` (with --grad-accum A over N
    /// ranks, step s uses indices s x N x A .. (s + 1) x N x A): examples
    /// `step` x B .. (`step` + 1) x B of the run's order, span masks from
    /// (seed, `step`). Independent of how the ranks share them.
    pub fn batch_for_step(&mut self, step: u64) -> PretrainBatch {
        let ids: Vec<usize> = (0..self.batch_size as u64)
            .map(|j| self.example(step * self.batch_size as u64 + j))
            .collect();
        let texts: Vec<String> = ids.iter().map(|&i| self.texts[i].clone()).collect();
        let mut rng = Rng::new(derive_seed(self.seed, 2, step));
        self.render_and_mask(&texts, &mut rng)
    }

    /// Render `texts` and span-mask them with `rng`.
    pub fn render_and_mask(&mut self, texts: &[String], rng: &mut Rng) -> PretrainBatch {
        let l = self.renderer.max_seq_length();
        let b = texts.len();
        let (c, p) = (self.channels, self.patch_size);
        let per_strip = c * p * p * l;
        let mut pixels = vec![0.0f32; b * per_strip]; // (B, C, P, P L)
        let mut attention = Vec::with_capacity(b * l); // (B, L)
        let mut text_plus_eos = Vec::with_capacity(b);
        for (i, text) in texts.iter().enumerate() {
            let r = self.renderer.render_text(text);
            r.write_pixel_values(&mut pixels[i * per_strip..(i + 1) * per_strip]);
            attention.extend(r.attention_mask());
            text_plus_eos.push(r.num_text_patches + 1);
        }
        let patch_mask = self.generator.generate_batch(&text_plus_eos, rng);
        let masking = PatchMasking::controlled(&patch_mask, b, l, self.mask_ratio, rng);
        PretrainBatch {
            pixel_values: Tensor::new(&[b, c, p, p * l], pixels),
            attention_mask: attention,
            masking,
        }
    }
}

/// A worker thread producing the micro-batches `ids` (run-wide indices, see
/// [`BatchMaker::batch_for_step`]) in order, at most `depth` ahead of the
/// consumer; each arrives with its index.
pub struct Prefetcher {
    pub receiver: Receiver<(u64, PretrainBatch)>,
    handle: Option<JoinHandle<()>>,
}

impl Prefetcher {
    pub fn spawn(
        mut maker: BatchMaker,
        ids: impl Iterator<Item = u64> + Send + 'static,
        depth: usize,
    ) -> Prefetcher {
        let (tx, rx) = sync_channel(depth.max(1));
        let handle = std::thread::Builder::new()
            .name("pixel-data".into())
            .spawn(move || {
                for id in ids {
                    if tx.send((id, maker.batch_for_step(id))).is_err() {
                        break; // the trainer stopped
                    }
                }
            })
            .expect("spawn data thread");
        Prefetcher {
            receiver: rx,
            handle: Some(handle),
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Closing the channel stops the worker at its next send.
        let (_tx, dead) = sync_channel(1);
        drop(std::mem::replace(&mut self.receiver, dead));
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                eprintln!("the pixel-data worker thread panicked (its message is above)");
            }
        }
    }
}
