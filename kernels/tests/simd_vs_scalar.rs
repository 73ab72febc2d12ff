//! Every vector path (AVX2+FMA and AVX-512, each on CPUs that have it) of
//! every fused kernel against its scalar reference, on random inputs of
//! awkward sizes: lengths that are not multiples of 8 or 16, single values,
//! and row counts that cross rayon task borders. The public entry points
//! (which dispatch on the process's ISA) are checked too.

use pixel_kernels::adamw::{adamw_update_scalar, adamw_update_with, AdamWStep};
use pixel_kernels::{gelu, layer_norm, softmax, Isa};

/// The vector ISAs this CPU has; says which it skips.
fn vector_isas() -> Vec<Isa> {
    for isa in [Isa::Avx2, Isa::Avx512] {
        if !isa.is_available() {
            eprintln!("skipped: the {isa} paths (this CPU lacks {isa})");
        }
    }
    Isa::available()
        .into_iter()
        .filter(|&i| i != Isa::Scalar)
        .collect()
}

/// Small deterministic generator (xorshift64*), uniform in [-1, 1).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40; // 24 bits
        bits as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// `|got - want| <= 1e-5 + 1e-5 |want|` elementwise, with the first failure named.
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= tol + tol * w.abs();
        assert!(ok, "{what}: index {i}: got {g}, want {w} (tol {tol})");
    }
}

/// (rows, cols) pairs: single values, odd widths, the PIXEL widths.
const ROW_SHAPES: [(usize, usize); 9] = [
    (1, 1),
    (3, 7),
    (5, 8),
    (2, 9),
    (37, 769),
    (4, 768),
    (300, 31),
    (2100, 17), // > one rayon task of rows
    (6, 397),
];

#[test]
fn reports_dispatch() {
    // Not an assertion: tells which paths the other tests exercised.
    eprintln!(
        "vector ISAs on this CPU: {:?}; process ISA {}",
        vector_isas(),
        pixel_kernels::cpu::isa()
    );
}

#[test]
fn layer_norm_forward_matches_scalar() {
    let mut rng = Rng::new(1);
    for &(rows, cols) in &ROW_SHAPES {
        // Offset and scale so the mean is far from 0 (tests the two-pass variance).
        let inp: Vec<f32> = rng.vec(rows * cols, 3.0).iter().map(|v| v + 2.0).collect();
        let (w, b) = (rng.vec(cols, 1.0), rng.vec(cols, 1.0));
        let (mut out, mut mean, mut rstd) =
            (vec![0.0; rows * cols], vec![0.0; rows], vec![0.0; rows]);
        let (mut out_r, mut mean_r, mut rstd_r) = (out.clone(), mean.clone(), rstd.clone());
        layer_norm::layer_norm_forward_scalar(
            &mut out_r,
            &mut mean_r,
            &mut rstd_r,
            &inp,
            &w,
            &b,
            cols,
            1e-5,
        );
        let check = |what: String, out: &[f32], mean: &[f32], rstd: &[f32]| {
            assert_close(&format!("{what} out"), out, &out_r, 1e-5);
            assert_close(&format!("{what} mean"), mean, &mean_r, 1e-5);
            assert_close(&format!("{what} rstd"), rstd, &rstd_r, 1e-5);
        };
        layer_norm::layer_norm_forward(&mut out, &mut mean, &mut rstd, &inp, &w, &b, cols, 1e-5);
        check(
            format!("layer_norm_forward {rows}x{cols}"),
            &out,
            &mean,
            &rstd,
        );
        for isa in vector_isas() {
            layer_norm::layer_norm_forward_rows(
                isa, &mut out, &mut mean, &mut rstd, &inp, &w, &b, cols, 1e-5,
            );
            check(
                format!("layer_norm_forward {isa} {rows}x{cols}"),
                &out,
                &mean,
                &rstd,
            );
        }
    }
}

#[test]
fn layer_norm_backward_matches_scalar() {
    let mut rng = Rng::new(2);
    for &(rows, cols) in &ROW_SHAPES {
        let inp = rng.vec(rows * cols, 2.0);
        let (w, b) = (rng.vec(cols, 1.0), rng.vec(cols, 1.0));
        let (mut out, mut mean, mut rstd) =
            (vec![0.0; rows * cols], vec![0.0; rows], vec![0.0; rows]);
        layer_norm::layer_norm_forward_scalar(
            &mut out, &mut mean, &mut rstd, &inp, &w, &b, cols, 1e-5,
        );
        let dout = rng.vec(rows * cols, 1.0);
        // dweight/dbias start non-zero: the kernels accumulate into them.
        let (dw0, db0) = (rng.vec(cols, 1.0), rng.vec(cols, 1.0));
        let (mut dx, mut dw, mut db) = (vec![0.0; rows * cols], dw0.clone(), db0.clone());
        layer_norm::layer_norm_backward(
            &mut dx, &mut dw, &mut db, &dout, &inp, &w, &mean, &rstd, cols,
        );
        let (mut dx_r, mut dw_r, mut db_r) = (vec![0.0; rows * cols], dw0, db0);
        layer_norm::layer_norm_backward_scalar(
            &mut dx_r, &mut dw_r, &mut db_r, &dout, &inp, &w, &mean, &rstd, cols,
        );
        let check = |what: String, dx: &[f32], dw: &[f32], db: &[f32]| {
            // dx is a difference of O(1) terms: compare with an absolute floor
            // scaled to the row width (the reference also sums in f32).
            assert_close(&format!("{what} dinp"), dx, &dx_r, 2e-5);
            // dW, dB sum `rows` terms in different orders.
            let tol = 1e-5 * (rows as f32).sqrt().max(1.0);
            assert_close(&format!("{what} dweight"), dw, &dw_r, tol);
            assert_close(&format!("{what} dbias"), db, &db_r, tol);
        };
        check(format!("layer_norm_backward {rows}x{cols}"), &dx, &dw, &db);
        for isa in vector_isas() {
            layer_norm::layer_norm_backward_rows(
                isa, &mut dx, &mut dw, &mut db, &dout, &inp, &w, &mean, &rstd, cols,
            );
            check(
                format!("layer_norm_backward {isa} {rows}x{cols}"),
                &dx,
                &dw,
                &db,
            );
        }
    }
}

#[test]
fn softmax_forward_matches_scalar() {
    let mut rng = Rng::new(3);
    for &(rows, cols) in &ROW_SHAPES {
        let inp = rng.vec(rows * cols, 8.0);
        for rows_per_mask_row in [1, 3, rows] {
            let mask_rows = rows.div_ceil(rows_per_mask_row);
            // A key mask: 0 or a large negative, as attention uses it.
            let mask: Vec<f32> = (0..mask_rows * cols)
                .map(|_| if rng.uniform() < -0.6 { -1e9 } else { 0.0 })
                .collect();
            for m in [None, Some(mask.as_slice())] {
                let mut out = vec![0.0; rows * cols];
                softmax::softmax_forward(&mut out, &inp, m, rows_per_mask_row, cols);
                let mut out_r = vec![0.0; rows * cols];
                softmax::softmax_forward_scalar(&mut out_r, &inp, m, rows_per_mask_row, cols, 0);
                let what = format!("softmax_forward {rows}x{cols} mask={}", m.is_some());
                assert_close(&what, &out, &out_r, 1e-5);
                for isa in vector_isas() {
                    softmax::softmax_forward_with(
                        isa,
                        &mut out,
                        &inp,
                        m,
                        rows_per_mask_row,
                        cols,
                        0,
                    );
                    assert_close(&format!("{what} {isa}"), &out, &out_r, 1e-5);
                }
            }
        }
    }
}

#[test]
fn softmax_backward_matches_scalar() {
    let mut rng = Rng::new(4);
    for &(rows, cols) in &ROW_SHAPES {
        let mut y = vec![0.0; rows * cols];
        softmax::softmax_forward_scalar(&mut y, &rng.vec(rows * cols, 4.0), None, 1, cols, 0);
        let dout = rng.vec(rows * cols, 1.0);
        let mut dx = vec![0.0; rows * cols];
        softmax::softmax_backward(&mut dx, &dout, &y, cols);
        let mut dx_r = vec![0.0; rows * cols];
        softmax::softmax_backward_scalar(&mut dx_r, &dout, &y, cols);
        assert_close(&format!("softmax_backward {rows}x{cols}"), &dx, &dx_r, 1e-5);
        for isa in vector_isas() {
            softmax::softmax_backward_with(isa, &mut dx, &dout, &y, cols);
            assert_close(
                &format!("softmax_backward {isa} {rows}x{cols}"),
                &dx,
                &dx_r,
                1e-5,
            );
        }
    }
}

/// Sizes for the flat elementwise kernels (crossing the 16384-value chunks).
const FLAT_LENS: [usize; 7] = [1, 7, 8, 9, 769, 16383, 40001];

#[test]
fn gelu_forward_within_1e6_of_f64() {
    let mut rng = Rng::new(5);
    for n in FLAT_LENS {
        for scale in [1.0, 4.0, 12.0] {
            let x = rng.vec(n, scale);
            let mut out_r = vec![0.0; n];
            gelu::gelu_forward_scalar(&mut out_r, &x);
            let mut outs = vec![("dispatched".to_string(), vec![0.0; n])];
            gelu::gelu_forward(&mut outs[0].1, &x);
            for isa in vector_isas() {
                let mut o = vec![0.0; n];
                gelu::gelu_forward_with(isa, &mut o, &x);
                outs.push((isa.to_string(), o));
            }
            for (path, out) in &outs {
                for i in 0..n {
                    let err = (out[i] - out_r[i]).abs();
                    assert!(
                        err <= 1e-6,
                        "gelu_forward {path} ({}) = {}, want {}",
                        x[i],
                        out[i],
                        out_r[i]
                    );
                }
            }
        }
    }
}

#[test]
fn gelu_forward_dense_grid() {
    // Every 1/1024 over [-16, 16]: covers both erf branches and the split at |x| = sqrt 2.
    let x: Vec<f32> = (-16 * 1024..=16 * 1024)
        .map(|i| i as f32 / 1024.0)
        .collect();
    let (mut out, mut out_r) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    gelu::gelu_forward_scalar(&mut out_r, &x);
    for isa in vector_isas() {
        gelu::gelu_forward_with(isa, &mut out, &x);
        let worst = out
            .iter()
            .zip(&out_r)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-6, "gelu_forward {isa} worst abs error {worst}");
    }
}

#[test]
fn gelu_backward_within_1e6_of_f64() {
    let mut rng = Rng::new(6);
    for n in FLAT_LENS {
        for scale in [1.0, 4.0, 12.0] {
            let x = rng.vec(n, scale);
            let dout = rng.vec(n, 1.0);
            let mut dx_r = vec![0.0; n];
            gelu::gelu_backward_scalar(&mut dx_r, &dout, &x);
            let mut outs = vec![("dispatched".to_string(), vec![0.0; n])];
            gelu::gelu_backward(&mut outs[0].1, &dout, &x);
            for isa in vector_isas() {
                let mut d = vec![0.0; n];
                gelu::gelu_backward_with(isa, &mut d, &dout, &x);
                outs.push((isa.to_string(), d));
            }
            for (path, dx) in &outs {
                for i in 0..n {
                    let err = (dx[i] - dx_r[i]).abs();
                    assert!(
                        err <= 1e-6,
                        "gelu_backward {path} at x={}: got {}, want {}",
                        x[i],
                        dx[i],
                        dx_r[i]
                    );
                }
            }
        }
    }
}

#[test]
fn adamw_every_isa_gives_the_scalar_bits() {
    let mut rng = Rng::new(7);
    for n in FLAT_LENS {
        let (p0, g) = (rng.vec(n, 1.0), rng.vec(n, 0.1));
        let (m0, v0) = (
            rng.vec(n, 0.01),
            rng.vec(n, 0.01).iter().map(|v| v.abs()).collect::<Vec<_>>(),
        );
        for weight_decay in [0.0, 0.01] {
            let h = AdamWStep {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay,
                t: 3,
            };
            let (mut p_r, mut m_r, mut v_r) = (p0.clone(), m0.clone(), v0.clone());
            adamw_update_scalar(&mut p_r, &g, &mut m_r, &mut v_r, h);
            for isa in vector_isas() {
                let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
                adamw_update_with(isa, &mut p, &g, &mut m, &mut v, h);
                assert!(
                    p == p_r && m == m_r && v == v_r,
                    "adamw {isa} n={n} differs from scalar"
                );
            }
        }
    }
}
