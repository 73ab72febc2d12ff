//! Attention masks: from the strips' 0/1 attention mask (1 = text or EOS
//! patch, 0 = padding) to the additive key mask every layer of a stack uses.
//! CLS is always attended. The encoder sees CLS + the patches it encodes; the
//! decoder sees CLS + all L patches (mask tokens included).

use pixel_engine::{Device, Tensor};

use super::PatchMasking;

/// Additive key mask from a 0/1 attention mask: 0 where attended, -10000 where
/// not (transformers 4.17's `get_extended_attention_mask`, not -inf).
pub fn additive_key_mask(mask: &[f32], batch: usize, len: usize) -> Tensor {
    assert_eq!(mask.len(), batch * len, "additive_key_mask: mask length");
    Tensor::new(
        &[batch, len],
        mask.iter().map(|m| (1.0 - m) * -10000.0).collect(),
    )
}

/// The encoder's key mask (B, 1 + K) on `device`: CLS, then the attention
/// mask of the patches it encodes (all L when `masking` is None, else the kept
/// ones in the encoder's order). `attention_mask` (B * L).
pub fn encoder_key_mask(
    attention_mask: &[f32],
    masking: Option<&PatchMasking>,
    batch: usize,
    device: Device,
) -> Tensor {
    let seen = match masking {
        Some(m) => m.gather_kept(attention_mask), // (B * K)
        None => attention_mask.to_vec(),          // (B * L)
    };
    let len = seen.len() / batch.max(1);
    on_device(
        additive_key_mask(&with_cls(&seen, batch, len), batch, len + 1),
        device,
    )
}

/// The decoder's key mask (B, 1 + L) on `device`: CLS, then the attention mask
/// of every patch (masked patches are mask tokens, attended where text is).
pub fn decoder_key_mask(attention_mask: &[f32], batch: usize, device: Device) -> Tensor {
    let len = attention_mask.len() / batch.max(1);
    on_device(
        additive_key_mask(&with_cls(attention_mask, batch, len), batch, len + 1),
        device,
    )
}

/// [1, mask...] per example: CLS is always attended. (B * len) -> (B * (1 + len)).
fn with_cls(mask: &[f32], b: usize, len: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(b * (len + 1));
    for row in mask.chunks(len.max(1)).take(b) {
        out.push(1.0);
        out.extend_from_slice(row);
    }
    out
}

/// A host mask moved once to the model's device, so the layers do not each
/// upload it (no copy on the CPU).
fn on_device(mask: Tensor, device: Device) -> Tensor {
    match device {
        Device::Cpu => mask,
        device => mask
            .to_device(device)
            .unwrap_or_else(|e| panic!("attention mask to {device:?}: {e}")),
    }
}
