//! The blocked CPU attention of every ISA this CPU has, on packed qkv
//! (B, N, 3 C) buffers, against a plain f64 per-head reference (scores, masked softmax, dropout, P V and their gradients), on
//! sizes that leave ragged query blocks, key slivers and head dims.

use super::columns;
use super::cpu::{self, Head};
use super::AttentionShape;
use crate::cpu::Isa;
use crate::dropout::keeps;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// f64 reference of one head: (ctx, dq, dk, dv).
fn reference(h: Head<'_>, dctx: &[f32], s: AttentionShape) -> [Vec<f64>; 4] {
    let (n, d) = (s.seq, s.head_dim);
    let at = |x: &[f32], r: usize, c: usize| x[r * d + c] as f64;
    let mut p = vec![0.0f64; n * n]; // (queries, keys)
    for r in 0..n {
        let row: Vec<f64> = (0..n)
            .map(|c| {
                let dot: f64 = (0..d).map(|l| at(h.q, r, l) * at(h.k, c, l)).sum();
                dot * s.scale as f64 + h.mask.map_or(0.0, |m| m[c] as f64)
            })
            .collect();
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
        for c in 0..n {
            p[r * n + c] = (row[c] - max).exp() / sum;
        }
    }
    // The dropout factor of element (r, c): 0 or 1 / (1 - p).
    let keep = |r: usize, c: usize| match s.dropout {
        Some((seed, prob)) => {
            let i = (h.head * n + r) * n + c;
            if keeps(seed, prob, i as u64) {
                1.0 / (1.0 - prob as f64)
            } else {
                0.0
            }
        }
        None => 1.0,
    };
    let (mut ctx, mut dq, mut dk, mut dv) = (
        vec![0.0; n * d],
        vec![0.0; n * d],
        vec![0.0; n * d],
        vec![0.0; n * d],
    );
    for r in 0..n {
        // dP_used (r, c) = dctx_r . v_c; dP = keep * dP_used.
        let dp: Vec<f64> = (0..n)
            .map(|c| keep(r, c) * (0..d).map(|l| at(dctx, r, l) * at(h.v, c, l)).sum::<f64>())
            .collect();
        let dot: f64 = (0..n).map(|c| dp[c] * p[r * n + c]).sum();
        for c in 0..n {
            let used = p[r * n + c] * keep(r, c);
            let ds = p[r * n + c] * (dp[c] - dot) * s.scale as f64;
            for l in 0..d {
                ctx[r * d + l] += used * at(h.v, c, l);
                dv[c * d + l] += used * at(dctx, r, l);
                dq[r * d + l] += ds * at(h.k, c, l);
                dk[c * d + l] += ds * at(h.q, r, l);
            }
        }
    }
    [ctx, dq, dk, dv]
}

fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-3);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 2e-5 * scale + 1e-5 * w.abs(),
            "{what}: index {i}: got {g}, want {w}"
        );
    }
}

#[test]
fn blocked_attention_matches_f64_reference_on_every_isa() {
    for isa in [Isa::Avx2, Isa::Avx512] {
        if !isa.is_available() {
            eprintln!("skipped: blocked attention with {isa} (this CPU lacks {isa})");
        }
    }
    // (n, d): one key, fewer keys than a sliver, ragged query blocks and
    // dims, PIXEL's head dims (64 encoder, 32 decoder).
    let shapes = [(1, 4), (5, 8), (37, 20), (101, 64), (130, 32), (200, 7)];
    let (batch, heads) = (2, 3);
    for isa in Isa::available() {
        for (n, d) in shapes {
            for (masked, dropout) in [(false, None), (true, None), (true, Some((11u64, 0.25f32)))] {
                let s = AttentionShape {
                    batch,
                    heads,
                    seq: n,
                    head_dim: d,
                    scale: 1.0 / (d as f32).sqrt(),
                    dropout,
                };
                let (c, len) = (heads * d, batch * n * heads * d);
                let seed = (n * 1000 + d) as u64;
                let (qkv, dctx) = (values(3 * len, seed), values(len, seed + 3));
                // Keys masked out in a pattern that differs per batch item
                // (never all of them).
                let mask: Vec<f32> = (0..batch * n)
                    .map(|i| if i % 3 == 2 - i / n { -10000.0 } else { 0.0 })
                    .collect();
                let mask = masked.then_some(&mask[..]);
                let what = format!("{isa} n {n} d {d} mask {masked} dropout {dropout:?}");
                let mut ctx = vec![f32::NAN; len];
                cpu::forward(isa, &mut ctx, &qkv, mask, s);
                let mut dqkv = vec![f32::NAN; 3 * len];
                cpu::backward(isa, &mut dqkv, None, &dctx, &qkv, mask, s);
                // Backward asked for the context too: the forward's bits,
                // and the same gradients.
                let (mut again, mut dqkv_too) = (vec![f32::NAN; len], vec![f32::NAN; 3 * len]);
                cpu::backward(isa, &mut dqkv_too, Some(&mut again), &dctx, &qkv, mask, s);
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert!(
                    bits(&again) == bits(&ctx),
                    "{what}: ctx from backward differs"
                );
                assert!(
                    bits(&dqkv_too) == bits(&dqkv),
                    "{what}: dqkv differs with ctx"
                );
                for i in 0..batch * heads {
                    // Head i's (n, d) values at column `col` of a buffer with
                    // rows of `width` values.
                    let (b, hd) = (i / heads, i % heads);
                    let head_of = |x: &[f32], width: usize, col: usize| -> Vec<f32> {
                        (0..n)
                            .flat_map(|r| {
                                let at = (b * n + r) * width + col + hd * d;
                                x[at..at + d].to_vec()
                            })
                            .collect()
                    };
                    let (hq, hk, hv) = (
                        head_of(&qkv, 3 * c, 0),
                        head_of(&qkv, 3 * c, c),
                        head_of(&qkv, 3 * c, 2 * c),
                    );
                    let hdc = head_of(&dctx, c, 0);
                    let h = Head {
                        q: &hq,
                        k: &hk,
                        v: &hv,
                        mask: mask.map(|m| &m[b * n..(b + 1) * n]),
                        ld: d,
                        head: i,
                    };
                    let want = reference(h, &hdc, s);
                    let what = format!("{what}, head {i}");
                    assert_close(&format!("ctx, {what}"), &head_of(&ctx, c, 0), &want[0]);
                    assert_close(&format!("dq, {what}"), &head_of(&dqkv, 3 * c, 0), &want[1]);
                    assert_close(&format!("dk, {what}"), &head_of(&dqkv, 3 * c, c), &want[2]);
                    assert_close(
                        &format!("dv, {what}"),
                        &head_of(&dqkv, 3 * c, 2 * c),
                        &want[3],
                    );
                }
            }
        }
    }
}

#[test]
fn column_softmax_vector_paths_match_scalar() {
    let (rows, stride) = (45, 40);
    let mask: Vec<f32> = (0..rows)
        .map(|r| if r % 4 == 1 { -10000.0 } else { 0.0 })
        .collect();
    for isa in Isa::available() {
        for w in [1, 7, 16, 33, 40] {
            let x = values(rows * stride, w as u64);
            let (mut got, mut want) = (x.clone(), x.clone());
            columns::softmax_columns(isa, &mut got, stride, rows, w, Some(&mask));
            columns::softmax_columns_scalar(&mut want, stride, rows, w, Some(&mask));
            let g = values(rows * stride, 99);
            let (mut dgot, mut dwant) = (g.clone(), g);
            columns::softmax_columns_backward(isa, &mut dgot, &want, stride, rows, w);
            columns::softmax_columns_backward_scalar(&mut dwant, &want, stride, rows, w);
            for r in 0..rows {
                for j in 0..stride {
                    let i = r * stride + j;
                    if j >= w {
                        // Columns past w are not touched.
                        assert_eq!(got[i].to_bits(), x[i].to_bits(), "{isa} w {w}: ({r}, {j})");
                        continue;
                    }
                    assert!(
                        (got[i] - want[i]).abs() <= 1e-6,
                        "{isa} w {w} softmax ({r}, {j})"
                    );
                    assert!(
                        (dgot[i] - dwant[i]).abs() <= 1e-6,
                        "{isa} w {w} backward ({r}, {j})"
                    );
                }
            }
        }
    }
}
