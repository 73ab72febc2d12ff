//! CUDA twins of `ops/activation.rs`, `ops/norm.rs`, the standalone softmax and
//! `ops/loss.rs`.

use pixel_kernels::cuda::launch::{self as k, UnaryOp};
use pixel_kernels::cuda::DeviceBuffer;

use super::{buf, constant_on, device_of, zeros};
use crate::rng::Rng;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Exact (erf) GELU. Saves its input.
pub fn gelu(t: &mut Tape, x: &Var) -> Var {
    let dev = device_of("gelu", &[x.value()]);
    let mut out = zeros(&dev, x.shape());
    k::gelu_forward(
        out.cuda_buffer_mut("gelu"),
        buf("gelu", x.value()),
        x.value().numel(),
    );
    if !t.needs_grad(&[x]) {
        return Var::constant(out);
    }
    let xv = x.arc();
    t.record(
        "gelu",
        out,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = zeros(&dev, xv.shape());
            k::gelu_backward(
                dx.cuda_buffer_mut("gelu"),
                buf("gelu", &dy),
                buf("gelu", &xv),
                xv.numel(),
            );
            vec![Some(dx)]
        }),
    )
}

/// tanh or relu. Saves the output.
pub fn unary(t: &mut Tape, name: &'static str, x: &Var, op: UnaryOp) -> Var {
    let dev = device_of(name, &[x.value()]);
    let mut out = zeros(&dev, x.shape());
    k::unary(
        out.cuda_buffer_mut(name),
        buf(name, x.value()),
        op,
        x.value().numel(),
    );
    if !t.needs_grad(&[x]) {
        return Var::constant(out);
    }
    let y = out.clone();
    t.record(
        name,
        out,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = zeros(&dev, y.shape());
            k::unary_backward(
                dx.cuda_buffer_mut(name),
                buf(name, &dy),
                buf(name, &y),
                op,
                y.numel(),
            );
            vec![Some(dx)]
        }),
    )
}

/// Inverted dropout (p > 0, training). The mask is a hash of (seed, index):
/// backward regenerates it from the seed instead of saving it. One u64 is
/// drawn from `rng` (the CPU path draws one uniform per element, so CPU and
/// CUDA masks differ).
pub fn dropout(t: &mut Tape, x: &Var, p: f32, rng: &mut Rng) -> Var {
    device_of("dropout", &[x.value()]);
    let seed = rng.next_u64();
    let mut out = x.value().clone();
    let n = out.numel();
    k::dropout_in_place(out.cuda_buffer_mut("dropout"), n, seed, p);
    t.record(
        "dropout",
        out,
        &[x],
        Box::new(move |mut dy, _| {
            k::dropout_in_place(dy.cuda_buffer_mut("dropout"), n, seed, p);
            vec![Some(dy)]
        }),
    )
}

/// Softmax over the last axis after an additive mask (rows share mask rows,
/// checked by the CPU op). Saves its output.
pub fn softmax(t: &mut Tape, x: &Var, mask: Option<&Tensor>, rows_per_mask_row: usize) -> Var {
    let dev = device_of("softmax", &[x.value()]);
    let cols = *x.shape().last().expect("softmax: rank >= 1");
    let rows = x.value().numel() / cols.max(1);
    let mask = mask.map(|m| constant_on("softmax", m, &dev));
    let mut out = zeros(&dev, x.shape());
    k::softmax_forward(
        out.cuda_buffer_mut("softmax"),
        Some(buf("softmax", x.value())),
        mask.as_ref().map(|m| buf("softmax", m)),
        rows,
        cols,
        rows_per_mask_row,
    );
    if !t.needs_grad(&[x]) {
        return Var::constant(out);
    }
    let y = out.clone();
    t.record(
        "softmax",
        out,
        &[x],
        Box::new(move |mut dy, _| {
            k::softmax_backward_in_place(
                dy.cuda_buffer_mut("softmax"),
                buf("softmax", &y),
                rows,
                cols,
            );
            vec![Some(dy)]
        }),
    )
}

/// LayerNorm over the last axis (shapes checked by the CPU op). Saves mean and rstd.
pub fn layer_norm(t: &mut Tape, x: &Var, weight: &Var, bias: &Var, eps: f32) -> Var {
    let name = "layer_norm";
    let dev = device_of(name, &[x.value(), weight.value(), bias.value()]);
    let c = *x.shape().last().expect("layer_norm: rank >= 1");
    let rows = x.value().numel() / c;
    let mut out = zeros(&dev, x.shape());
    let mut mean = DeviceBuffer::zeros(&dev, rows);
    let mut rstd = DeviceBuffer::zeros(&dev, rows);
    k::layer_norm_forward(
        out.cuda_buffer_mut(name),
        &mut mean,
        &mut rstd,
        buf(name, x.value()),
        buf(name, weight.value()),
        buf(name, bias.value()),
        rows,
        c,
        eps,
    );
    if !t.needs_grad(&[x, weight, bias]) {
        return Var::constant(out);
    }
    let (xv, wv) = (x.arc(), weight.arc());
    t.record(
        name,
        out,
        &[x, weight, bias],
        Box::new(move |dy, _| {
            let mut dx = zeros(&dev, xv.shape());
            let mut dw = zeros(&dev, &[c]);
            let mut db = zeros(&dev, &[c]);
            k::layer_norm_backward(
                dx.cuda_buffer_mut(name),
                dw.cuda_buffer_mut(name),
                db.cuda_buffer_mut(name),
                buf(name, &dy),
                buf(name, &xv),
                buf(name, &wv),
                &mean,
                &rstd,
                rows,
                c,
            );
            vec![Some(dx), Some(dw), Some(db)]
        }),
    )
}

/// Per-row standardisation with the unbiased variance (checked by the CPU op).
pub fn normalize_rows_unbiased(t: &mut Tape, x: &Var, eps: f32) -> Var {
    let name = "normalize_rows_unbiased";
    let dev = device_of(name, &[x.value()]);
    let c = *x
        .shape()
        .last()
        .expect("normalize_rows_unbiased: rank >= 1");
    let rows = x.value().numel() / c;
    let mut out = zeros(&dev, x.shape());
    let mut rstd = DeviceBuffer::zeros(&dev, rows);
    k::normalize_rows_forward(
        out.cuda_buffer_mut(name),
        &mut rstd,
        buf(name, x.value()),
        rows,
        c,
        eps,
    );
    if !t.needs_grad(&[x]) {
        return Var::constant(out);
    }
    let xv = x.arc();
    t.record(
        name,
        out,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = zeros(&dev, xv.shape());
            k::normalize_rows_backward(
                dx.cuda_buffer_mut(name),
                buf(name, &dy),
                buf(name, &xv),
                &rstd,
                rows,
                c,
            );
            vec![Some(dx)]
        }),
    )
}

/// Weighted mean of per-row MSE (checked by the CPU op; `wsum` > 0 is the
/// host sum of the weights). Gradients flow to pred and target.
pub fn masked_mse(t: &mut Tape, pred: &Var, target: &Var, weights: &[f32], wsum: f64) -> Var {
    let name = "masked_mse";
    let dev = device_of(name, &[pred.value(), target.value()]);
    let c = *pred.shape().last().expect("masked_mse: rank >= 1");
    let rows = pred.value().numel() / c;
    let w = DeviceBuffer::from_host(&dev, weights);
    let mut row_loss = DeviceBuffer::zeros(&dev, rows);
    k::masked_mse_rows(
        &mut row_loss,
        buf(name, pred.value()),
        buf(name, target.value()),
        &w,
        rows,
        c,
    );
    let mut loss = zeros(&dev, &[]);
    k::sum_to_scalar(
        loss.cuda_buffer_mut(name),
        &row_loss,
        rows,
        (1.0 / wsum) as f32,
    );
    if !t.needs_grad(&[pred, target]) {
        return Var::constant(loss);
    }
    let (pv, yv) = (pred.arc(), target.arc());
    t.record(
        name,
        loss,
        &[pred, target],
        Box::new(move |dy, needs| {
            let mut dp = zeros(&dev, pv.shape());
            let mut dt = zeros(&dev, yv.shape());
            k::masked_mse_backward(
                dp.cuda_buffer_mut(name),
                dt.cuda_buffer_mut(name),
                buf(name, &pv),
                buf(name, &yv),
                &w,
                buf(name, &dy),
                rows,
                c,
                (1.0 / wsum) as f32,
            );
            vec![needs[0].then_some(dp), needs[1].then_some(dt)]
        }),
    )
}

/// Mean cross-entropy over rows not labelled -100 (checked by the CPU op;
/// `count` > 0 such rows). Saves the softmax.
pub fn cross_entropy(t: &mut Tape, logits: &Var, labels: &[i64], count: usize) -> Var {
    let name = "cross_entropy";
    let dev = device_of(name, &[logits.value()]);
    let kk = *logits.shape().last().expect("cross_entropy: rank >= 1");
    let rows = labels.len();
    let mut probs = zeros(&dev, logits.shape());
    let mut row_loss = DeviceBuffer::zeros(&dev, rows);
    let d_labels = k::cross_entropy_forward(
        probs.cuda_buffer_mut(name),
        &mut row_loss,
        buf(name, logits.value()),
        labels,
        kk,
    );
    let mut loss = zeros(&dev, &[]);
    k::sum_to_scalar(
        loss.cuda_buffer_mut(name),
        &row_loss,
        rows,
        1.0 / count as f32,
    );
    t.record(
        name,
        loss,
        &[logits],
        Box::new(move |dy, _| {
            let mut g = probs;
            k::cross_entropy_backward_in_place(
                g.cuda_buffer_mut(name),
                &d_labels,
                buf(name, &dy),
                kk,
                1.0 / count as f32,
            );
            vec![Some(g)]
        }),
    )
}
