//! Dispatched elementwise kernels and AdamW against their scalar builds, on
//! lengths that are not multiples of 8 and that cross the 16384-value chunks.

use pixel_kernels::adamw::{adamw_update, adamw_update_scalar, AdamWStep};
use pixel_kernels::elementwise as ew;

/// Deterministic values in [-1, 1) (a 32-bit LCG, top bits).
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(747_796_405).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

const LENS: [usize; 6] = [1, 7, 9, 769, 16385, 40003];

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 + 1e-6 * w.abs(),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

#[test]
fn flat_ops_match_scalar() {
    for n in LENS {
        let (a, b) = (values(n, 1), values(n, 2));
        let (mut got, mut want) = (a.clone(), a.clone());
        ew::add_assign(&mut got, &b);
        ew::add_assign_scalar(&mut want, &b);
        assert_close(&format!("add_assign n={n}"), &got, &want);

        let (mut got, mut want) = (a.clone(), a.clone());
        ew::axpy(&mut got, -0.37, &b);
        ew::axpy_scalar(&mut want, -0.37, &b);
        assert_close(&format!("axpy n={n}"), &got, &want);

        let (mut got, mut want) = (a.clone(), a.clone());
        ew::scale(&mut got, 1.7);
        ew::scale_scalar(&mut want, 1.7);
        assert_close(&format!("scale n={n}"), &got, &want);

        let (mut got, mut want) = (vec![0.0; n], vec![0.0; n]);
        ew::mul(&mut got, &a, &b);
        ew::mul_scalar(&mut want, &a, &b);
        assert_close(&format!("mul n={n}"), &got, &want);

        let (got, want) = (ew::sum_squares(&a), ew::sum_squares_scalar(&a));
        assert!(
            (got - want).abs() <= 1e-12 * want.max(1.0),
            "sum_squares n={n}: {got} vs {want}"
        );
    }
}

#[test]
fn row_broadcasts_match_scalar() {
    for (rows, cols) in [(1, 1), (3, 7), (129, 9), (2000, 13), (5, 768)] {
        let x = values(rows * cols, 3);
        let row = values(cols, 4);
        let (mut got, mut want) = (x.clone(), x.clone());
        ew::add_row_broadcast(&mut got, &row);
        ew::add_row_broadcast_scalar(&mut want, &row);
        assert_close(&format!("add_row_broadcast {rows}x{cols}"), &got, &want);

        // Reference: column sums in f64, added to a non-zero start.
        let mut got = row.clone();
        ew::sum_rows_into(&mut got, &x);
        let want: Vec<f32> = (0..cols)
            .map(|j| row[j] + (0..rows).map(|r| x[r * cols + j] as f64).sum::<f64>() as f32)
            .collect();
        for j in 0..cols {
            let tol = 1e-5 * (rows as f32).sqrt();
            assert!(
                (got[j] - want[j]).abs() <= tol,
                "sum_rows_into {rows}x{cols}[{j}]"
            );
        }
    }
}

#[test]
fn adamw_matches_scalar() {
    for n in LENS {
        for weight_decay in [0.0, 0.01] {
            let h = AdamWStep {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay,
                t: 3,
            };
            let (p, g) = (values(n, 5), values(n, 6));
            let m: Vec<f32> = values(n, 7).iter().map(|v| v * 0.1).collect();
            let v: Vec<f32> = values(n, 8).iter().map(|v| v * v * 0.01).collect();
            let (mut p1, mut m1, mut v1) = (p.clone(), m.clone(), v.clone());
            adamw_update(&mut p1, &g, &mut m1, &mut v1, h);
            let (mut p2, mut m2, mut v2) = (p, m, v);
            adamw_update_scalar(&mut p2, &g, &mut m2, &mut v2, h);
            let what = format!("adamw n={n} wd={weight_decay}");
            assert_close(&format!("{what} param"), &p1, &p2);
            assert_close(&format!("{what} m"), &m1, &m2);
            assert_close(&format!("{what} v"), &v1, &v2);
        }
    }
}
