//! [`PatchMasking`]: the model-side decision for a batch, made from a span
//! mask (controlled masking), from noise (random masking) or given exactly by
//! the caller.
//!
//! Kept patches are listed in ascending patch order (the fixtures' convention;
//! the reference's shuffled order gives the same result because attention is
//! permutation-equivariant), and `ids_restore` tells the decoder where each
//! patch's token is in the sequence [kept tokens..., mask tokens...].

use pixel_engine::{Rng, Tensor};

use super::num_kept_patches;

/// Errors in a caller-given mask.
#[derive(Debug, thiserror::Error)]
pub enum MaskingError {
    #[error("mask has {found} values, expected batch {batch} x {num_patches} patches")]
    WrongLength {
        found: usize,
        batch: usize,
        num_patches: usize,
    },
    #[error("mask row {row} removes {found} patches but row 0 removes {expected}; every row must remove the same number")]
    UnequalRows {
        row: usize,
        found: usize,
        expected: usize,
    },
    #[error("mask value {value} at index {index} is not 0 or 1")]
    NotBinary { index: usize, value: f32 },
}

/// The masking decision for a batch: which patches go to the encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchMasking {
    pub batch: usize,
    /// L, patches per example.
    pub num_patches: usize,
    /// Patches kept per example (the same for every row).
    pub len_keep: usize,
    /// [B * len_keep]: kept patch indices, ascending within each row.
    pub keep: Vec<usize>,
    /// [B * (L - len_keep)]: removed patch indices, ascending within each row.
    pub removed: Vec<usize>,
    /// [B * L]: 1 = removed, 0 = kept, in original patch order.
    pub mask: Vec<f32>,
}

impl PatchMasking {
    /// Builds the lists from a per-patch removed flag; rows must agree on the count.
    fn from_flags(removed_flags: &[bool], batch: usize, num_patches: usize) -> PatchMasking {
        let mut keep = Vec::new();
        let mut removed = Vec::new();
        for (i, &r) in removed_flags.iter().enumerate() {
            let patch = i % num_patches;
            if r {
                removed.push(patch);
            } else {
                keep.push(patch);
            }
        }
        let len_keep = keep.len().checked_div(batch).unwrap_or(num_patches);
        PatchMasking {
            batch,
            num_patches,
            len_keep,
            keep,
            removed,
            mask: removed_flags
                .iter()
                .map(|&r| f32::from(u8::from(r)))
                .collect(),
        }
    }

    /// Keeps the `len_keep` patches with the smallest noise in each row.
    fn from_noise(noise: &[f64], batch: usize, num_patches: usize, len_keep: usize) -> Self {
        let mut flags = vec![true; batch * num_patches];
        let mut order: Vec<usize> = Vec::with_capacity(num_patches);
        for b in 0..batch {
            let row = &noise[b * num_patches..(b + 1) * num_patches];
            order.clear();
            order.extend(0..num_patches);
            order.sort_by(|&i, &j| row[i].total_cmp(&row[j]));
            for &patch in &order[..len_keep] {
                flags[b * num_patches + patch] = false;
            }
        }
        PatchMasking::from_flags(&flags, batch, num_patches)
    }

    /// Controlled masking (`PIXELEmbeddings.controlled_masking`): noise = patch_mask +
    /// U[0, 0.01), keep the int(L (1 - ratio)) smallest. Every span-masked patch is
    /// removed, and a short mask is topped up with random unmasked patches.
    pub fn controlled(
        patch_mask: &[f32],
        batch: usize,
        num_patches: usize,
        mask_ratio: f64,
        rng: &mut Rng,
    ) -> PatchMasking {
        assert_eq!(
            patch_mask.len(),
            batch * num_patches,
            "controlled masking: patch_mask length"
        );
        let noise: Vec<f64> = patch_mask
            .iter()
            .map(|&m| m as f64 + 0.01 * rng.uniform())
            .collect();
        let len_keep = num_kept_patches(num_patches, mask_ratio);
        PatchMasking::from_noise(&noise, batch, num_patches, len_keep)
    }

    /// Random masking (`PIXELEmbeddings.random_masking`): noise ~ U[0, 1), the attended
    /// patch with the largest noise gets noise 100 so at least one attended patch is
    /// removed, then keep the int(L (1 - ratio)) smallest.
    pub fn random(
        attention_mask: &[f32],
        batch: usize,
        num_patches: usize,
        mask_ratio: f64,
        rng: &mut Rng,
    ) -> PatchMasking {
        assert_eq!(
            attention_mask.len(),
            batch * num_patches,
            "random masking: attention_mask length"
        );
        let mut noise: Vec<f64> = (0..batch * num_patches).map(|_| rng.uniform()).collect();
        for b in 0..batch {
            let range = b * num_patches..(b + 1) * num_patches;
            // argmax of noise * attention_mask (first maximum, like torch on ties).
            let mut best = 0;
            let mut best_value = f64::NEG_INFINITY;
            for (j, i) in range.clone().enumerate() {
                let v = noise[i] * attention_mask[i] as f64;
                if v > best_value {
                    best_value = v;
                    best = j;
                }
            }
            if num_patches > 0 {
                noise[range.start + best] = 100.0;
            }
        }
        let len_keep = num_kept_patches(num_patches, mask_ratio);
        PatchMasking::from_noise(&noise, batch, num_patches, len_keep)
    }

    /// Exactly the caller's mask (1 = removed); every row must remove as many patches.
    pub fn explicit(
        mask: &[f32],
        batch: usize,
        num_patches: usize,
    ) -> Result<PatchMasking, MaskingError> {
        if mask.len() != batch * num_patches {
            return Err(MaskingError::WrongLength {
                found: mask.len(),
                batch,
                num_patches,
            });
        }
        if let Some((index, &value)) = mask.iter().enumerate().find(|(_, &v)| v != 0.0 && v != 1.0)
        {
            return Err(MaskingError::NotBinary { index, value });
        }
        let flags: Vec<bool> = mask.iter().map(|&v| v == 1.0).collect();
        let mut expected = None;
        for (row, chunk) in flags.chunks(num_patches.max(1)).enumerate() {
            let found = chunk.iter().filter(|&&r| r).count();
            match expected {
                None => expected = Some(found),
                Some(e) if e != found => {
                    return Err(MaskingError::UnequalRows {
                        row,
                        found,
                        expected: e,
                    })
                }
                _ => {}
            }
        }
        Ok(PatchMasking::from_flags(&flags, batch, num_patches))
    }

    /// No masking: every patch is kept (the finetuning / feature-extraction path).
    pub fn keep_all(batch: usize, num_patches: usize) -> PatchMasking {
        PatchMasking::from_flags(&vec![false; batch * num_patches], batch, num_patches)
    }

    /// Patches removed per example.
    pub fn len_removed(&self) -> usize {
        self.num_patches - self.len_keep
    }

    /// Kept patch indices of example `b`, ascending.
    pub fn keep_row(&self, b: usize) -> &[usize] {
        &self.keep[b * self.len_keep..(b + 1) * self.len_keep]
    }

    /// Removed patch indices of example `b`, ascending.
    pub fn removed_row(&self, b: usize) -> &[usize] {
        let n = self.len_removed();
        &self.removed[b * n..(b + 1) * n]
    }

    /// [B * L]: for patch i of example b, its position in that example's sequence
    /// [kept tokens (ascending)..., mask tokens...]. A value below `len_keep` is the
    /// encoder row (after CLS) holding the patch; otherwise the patch is a mask token.
    pub fn ids_restore(&self) -> Vec<usize> {
        let mut restore = vec![0; self.batch * self.num_patches];
        for b in 0..self.batch {
            let row = &mut restore[b * self.num_patches..(b + 1) * self.num_patches];
            let order = self.keep_row(b).iter().chain(self.removed_row(b));
            for (position, &patch) in order.enumerate() {
                row[patch] = position;
            }
        }
        restore
    }

    /// `mask` as a [B, L] tensor (1 = removed).
    pub fn mask_tensor(&self) -> Tensor {
        Tensor::new(&[self.batch, self.num_patches], self.mask.clone())
    }

    /// Gathers the kept entries of a per-patch [B, L] array (e.g. the attention mask)
    /// into [B, len_keep] in the encoder's order.
    pub fn gather_kept(&self, per_patch: &[f32]) -> Vec<f32> {
        assert_eq!(per_patch.len(), self.batch * self.num_patches);
        (0..self.batch)
            .flat_map(|b| {
                self.keep_row(b)
                    .iter()
                    .map(move |&p| per_patch[b * self.num_patches + p])
            })
            .collect()
    }
}
