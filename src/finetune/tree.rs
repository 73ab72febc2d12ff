//! Parser output as trees, for prediction files. The biaffine head picks
//! every word's best-scoring head on its own (as the original, and as the
//! printed UAS / LAS are scored), which can give cycles, several roots or a
//! head outside the sentence. The CoNLL 2018 scorer refuses such a sentence,
//! so a prediction file holds each sentence's greedy heads repaired into one
//! tree ([`repair_tree`]), with the relation predicted at that head.

use pixel_engine::{Rng, Tape};
use pixel_model::heads::{FinetuneLabels, PixelForFinetuning, IGNORE_INDEX};
use pixel_model::ForwardMode;
use pixel_render::Rendering;

use crate::train_loop::to_device;

use super::data::{make_batch, word_starts, Example, Target};
use super::eval::argmax;
use super::Task;

/// Heads of an `n`-word sentence forming one tree: `score(j, h)` is the arc
/// score of word j (0-based) taking head h (0 = ROOT, k = word k, 1-based).
/// Starts from each word's best head within the sentence (never itself): a
/// sentence whose greedy heads already form a tree with one root keeps them.
/// Otherwise the best-scoring root word stays the only root (the other
/// would-be roots take their best word head), and each cycle is broken by
/// the cheapest reattachment of one of its words to a word outside its subtree.
pub fn repair_tree(n: usize, score: impl Fn(usize, usize) -> f32) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![0];
    }
    // Best head of word j among `allowed` (first on ties, as argmax).
    let best = |j: usize, allow_root: bool| -> usize {
        let mut best = usize::MAX;
        for h in 0..=n {
            if h == j + 1 || (h == 0 && !allow_root) {
                continue;
            }
            if best == usize::MAX || score(j, h) > score(j, best) {
                best = h;
            }
        }
        best
    };
    let mut heads: Vec<usize> = (0..n).map(|j| best(j, true)).collect();
    // One root: the best root among the words that chose ROOT, else overall.
    let pick = |words: &mut dyn Iterator<Item = usize>| {
        words
            .fold(None, |acc: Option<usize>, j| match acc {
                Some(b) if score(b, 0) >= score(j, 0) => Some(b),
                _ => Some(j),
            })
            .expect("a sentence with words")
    };
    let root = if heads.contains(&0) {
        pick(&mut (0..n).filter(|&j| heads[j] == 0))
    } else {
        pick(&mut (0..n))
    };
    for (j, h) in heads.iter_mut().enumerate() {
        if j == root {
            *h = 0;
        } else if *h == 0 {
            *h = best(j, false);
        }
    }
    while let Some(cycle) = find_cycle(&heads) {
        // Cheapest change: one cycle word to a non-descendant word (the root
        // word always qualifies, so there is one).
        let mut change: Option<(usize, usize, f32)> = None;
        for &v in &cycle {
            for h in 1..=n {
                if h == v + 1 || descends_from(&heads, h - 1, v) {
                    continue;
                }
                let loss = score(v, heads[v]) - score(v, h);
                if change.is_none_or(|(_, _, l)| loss < l) {
                    change = Some((v, h, loss));
                }
            }
        }
        let (v, h, _) = change.expect("the root word is outside every cycle");
        heads[v] = h;
    }
    heads
}

/// Whether following heads up from word `x` reaches word `v` (0-based words).
fn descends_from(heads: &[usize], mut x: usize, v: usize) -> bool {
    for _ in 0..=heads.len() {
        if x == v {
            return true;
        }
        match heads[x] {
            0 => return false,
            h => x = h - 1,
        }
    }
    false // in another cycle, not through v
}

/// The words (0-based) of one cycle of `heads`, if there is one.
fn find_cycle(heads: &[usize]) -> Option<Vec<usize>> {
    let n = heads.len();
    let mut state = vec![0u8; n]; // 0 unseen, 1 on the current path, 2 done
    for start in 0..n {
        let mut path = Vec::new();
        let mut x = start;
        while state[x] == 0 {
            state[x] = 1;
            path.push(x);
            match heads[x] {
                0 => break,
                h => x = h - 1,
            }
        }
        if state[x] == 1 && heads[x] != 0 {
            let at = path.iter().position(|&p| p == x).expect("x is on the path");
            return Some(path[at..].to_vec());
        }
        for p in path {
            state[p] = 2;
        }
    }
    None
}

/// Parser predictions as trees: per sentence the greedy heads repaired by
/// [`repair_tree`] and the relation predicted at each of those heads (a
/// second pass of the head with them as the heads to read relations at).
/// Covers the rendered words only. Also returns how many sentences needed a repair.
pub fn predict_trees(
    model: &PixelForFinetuning,
    examples: &[Example],
    renderings: &[Rendering],
    batch_size: usize,
) -> anyhow::Result<(Vec<Target>, usize)> {
    let device = model.params.device();
    let mut rng = Rng::new(0); // unused: no dropout at evaluation
    let mut out = Vec::with_capacity(examples.len());
    let mut repaired = 0;
    for (ex, rs) in examples
        .chunks(batch_size.max(1))
        .zip(renderings.chunks(batch_size.max(1)))
    {
        let ex: Vec<&Example> = ex.iter().collect();
        let rs: Vec<&Rendering> = rs.iter().collect();
        let mut batch = make_batch(Task::Parse, &ex, &rs, false);
        batch.pixel_values = to_device(batch.pixel_values, device)?;
        let mut run = |batch: &pixel_model::heads::FinetuneBatch| {
            let mut tape = Tape::no_grad();
            let param_vars = model.params.vars(&mut tape);
            let mode = ForwardMode {
                training: false,
                rng: &mut rng,
            };
            model.forward(&mut tape, &param_vars, batch, mode)
        };
        let arcs = run(&batch).logits.value().to_host();
        let (l, cands) = (arcs.shape()[1], arcs.shape()[2]); // (B, L, L + 1)
        let trees: Vec<Vec<usize>> = rs
            .iter()
            .enumerate()
            .map(|(b, r)| {
                let n = word_starts(r).len() - 1;
                let row = |j: usize| &arcs.data()[(b * l + j) * cands..][..cands];
                let tree = repair_tree(n, |j, h| row(j)[h]);
                repaired += (0..n).any(|j| tree[j] != argmax(row(j))) as usize;
                tree
            })
            .collect();
        // Second pass: relations read at the tree heads.
        let FinetuneLabels::Parsing { word_starts, .. } = &batch.labels else {
            unreachable!("parsing batches carry word starts")
        };
        let word_starts = word_starts.clone();
        let mut arc_labels = vec![IGNORE_INDEX; rs.len() * l];
        let mut rel_labels = vec![IGNORE_INDEX; rs.len() * l];
        for (b, tree) in trees.iter().enumerate() {
            for (j, &h) in tree.iter().enumerate() {
                arc_labels[b * l + j] = h as i64;
                rel_labels[b * l + j] = 0; // any valid relation: the loss is unused
            }
        }
        batch.labels = FinetuneLabels::Parsing {
            word_starts,
            arc_labels,
            rel_labels,
        };
        let output = run(&batch);
        let rel = output
            .rel_logits
            .expect("parser output without relation scores")
            .value()
            .to_host();
        let nr = rel.shape()[2]; // (B, L, rels)
        for (b, heads) in trees.into_iter().enumerate() {
            let rels = (0..heads.len())
                .map(|j| argmax(&rel.data()[(b * l + j) * nr..][..nr]))
                .collect();
            out.push(Target::Tree { heads, rels });
        }
    }
    Ok((out, repaired))
}
