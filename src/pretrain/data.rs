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
use unicode_segmentation::UnicodeSegmentation;

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

/// What packing produced, and what it cut or dropped and why.
#[derive(Debug, Default, PartialEq)]
pub struct PackStats {
    pub strips: usize,
    /// Lines too long for one strip, split at word boundaries.
    pub split_lines: usize,
    /// Words wider than a strip on their own (text written without spaces:
    /// Chinese, Japanese, Thai; long URLs), cut at grapheme boundaries.
    pub split_words: usize,
    /// Strips dropped for having fewer than the minimum text patches.
    pub dropped_short: usize,
    /// Characters in those dropped strips.
    pub dropped_chars: usize,
    /// Graphemes wider than a whole strip (kept, drawn cut off).
    pub clipped_graphemes: usize,
}

impl std::fmt::Display for PackStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} long lines split at spaces, {} words without spaces wider than a strip cut at grapheme boundaries, \
             {} short strips ({} characters) dropped for fewer than the minimum text patches",
            self.split_lines, self.split_words, self.dropped_short, self.dropped_chars
        )?;
        if self.clipped_graphemes > 0 {
            write!(
                f,
                ", {} graphemes wider than a strip drawn cut off",
                self.clipped_graphemes
            )?;
        }
        Ok(())
    }
}

/// Cuts `word` (too wide for one strip) at grapheme boundaries into the
/// longest pieces that fit, so no text is lost. Each cut is found by
/// galloping from the previous piece's length then bisecting, so a long line
/// costs a few renders per strip rather than one per character.
fn split_at_graphemes(renderer: &mut Renderer, word: &str, stats: &mut PackStats) -> Vec<String> {
    // Byte offsets of the grapheme boundaries, the end included.
    let mut bounds: Vec<usize> = word.grapheme_indices(true).map(|(i, _)| i).collect();
    bounds.push(word.len());
    let graphemes = bounds.len() - 1;
    let mut pieces = Vec::new();
    let mut start = 0; // in graphemes
    let mut guess = 1;
    while start < graphemes {
        let fits_n = |renderer: &mut Renderer, n: usize| {
            fits(renderer, &word[bounds[start]..bounds[start + n]]).0
        };
        let left = graphemes - start;
        // Largest n in 1..=left whose piece fits: `lo` fits (or is 1), `hi` does not (or is left + 1).
        let (mut lo, mut hi);
        let g = guess.clamp(1, left);
        if fits_n(renderer, g) {
            lo = g;
            hi = left + 1;
            let mut step = g.max(1);
            while lo < left {
                let next = (lo + step).min(left);
                if fits_n(renderer, next) {
                    lo = next;
                    step *= 2;
                } else {
                    hi = next;
                    break;
                }
            }
        } else {
            lo = 0;
            hi = g;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits_n(renderer, mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            // Not even one grapheme fits: keep it alone (drawn cut off).
            stats.clipped_graphemes += 1;
            lo = 1;
        }
        pieces.push(word[bounds[start]..bounds[start + lo]].to_string());
        start += lo;
        guess = lo;
    }
    pieces
}

/// Greedily join lines with spaces into strip-sized texts (SPEC 1.6). A line
/// longer than a strip is cut at word boundaries into pieces that fit (the
/// reference would clip it; at short L most of it would be lost), and a word
/// longer than a strip at grapheme boundaries.
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
            if !current.is_empty() {
                let candidate = format!("{current} {word}");
                if fits(renderer, &candidate).0 {
                    current = candidate;
                    continue;
                }
                pieces.push(std::mem::take(&mut current));
            }
            // The word starts a new piece.
            if fits(renderer, word).0 {
                current = word.to_string();
            } else {
                stats.split_words += 1;
                let mut cut = split_at_graphemes(renderer, word, &mut stats);
                current = cut.pop().unwrap_or_default();
                pieces.extend(cut);
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
            stats.dropped_chars += text.chars().count();
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
            pixel_values: Arc::new(Tensor::new(&[b, c, p, p * l], pixels)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use pixel_render::{Layout, RenderConfig};

    fn renderer(l: usize) -> Renderer {
        Renderer::new(RenderConfig {
            max_seq_length: l,
            layout: Layout::Pygame,
            ..Default::default()
        })
        .unwrap()
    }

    /// Text written without spaces keeps every character, cut only at
    /// grapheme boundaries (no Thai vowel sign or tone mark starts a strip).
    #[test]
    fn spaceless_lines_are_cut_at_graphemes_and_lose_nothing() {
        let thai = "ภาษาไทยเป็นภาษาที่มีระดับเสียงของคำแน่นอนหรือวรรณยุกต์เดียวกับภาษาจีน".repeat(8);
        let chinese = "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏闰余成岁律吕调阳".repeat(8);
        let lines = vec![thai.clone(), chinese.clone()];
        let mut r = renderer(32);
        let (strips, stats) = pack_lines(&lines, &mut r);
        assert_eq!(stats.split_words, 2, "{stats:?}");
        assert_eq!(stats.dropped_short, 0, "{stats:?}");
        assert!(strips.len() > 10, "{}", strips.len());
        for s in &strips {
            assert!(fits(&mut r, s).0, "a strip does not fit: {s}");
            let first = s.graphemes(true).next().unwrap();
            assert!(first.starts_with(s.chars().next().unwrap()));
            assert!(!"ิีึืุู่้๊๋็์ั".contains(s.chars().next().unwrap()), "{s}");
        }
        // The strips hold the lines in order; packing joins pieces with spaces.
        let kept: String = strips.concat().chars().filter(|c| *c != ' ').collect();
        assert_eq!(kept, format!("{thai}{chinese}"));
    }

    #[test]
    fn a_grapheme_wider_than_the_strip_is_kept_and_counted() {
        let mut r = renderer(2);
        let (strips, stats) = pack_lines(&["ab".repeat(3)], &mut r);
        assert_eq!(strips.concat().replace(' ', ""), "ababab");
        assert_eq!(stats.clipped_graphemes, 6, "{stats:?}");
    }
}
