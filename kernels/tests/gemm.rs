//! GEMM against the f64 triple-loop reference: all transpose layouts, shapes
//! that split by rows, by columns or not at all, alpha/beta, and batches.

use pixel_kernels::gemm::{
    blocking_for, sgemm, sgemm_batched, sgemm_bias, sgemm_on, sgemm_reference, sgemm_serial,
    sgemm_with_bias_on, GeluOperand, GemmPath, GemmShape,
};
use pixel_kernels::Isa;

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(747_796_405).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], k: usize) {
    // f32 accumulation over k terms of size <= 1.
    let tol = 1e-5 * (k as f32).sqrt().max(1.0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol + 1e-5 * w.abs(),
            "{what}: C[{i}] = {g}, want {w}"
        );
    }
}

const LAYOUTS: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

#[test]
fn sgemm_matches_reference_all_layouts() {
    // (m, k, n): tiny, odd, row-split (m >= 128), column-split (m < 128, n >= 128).
    let shapes = [
        (1, 1, 1),
        (7, 9, 5),
        (33, 17, 65),
        (300, 70, 130),
        (20, 300, 700),
        (129, 200, 257),
    ];
    for &(m, k, n) in &shapes {
        for &(trans_a, trans_b) in &LAYOUTS {
            let s = GemmShape {
                m,
                n,
                k,
                trans_a,
                trans_b,
            };
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let c0 = values(m * n, 3);
            for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)] {
                let (mut got, mut want) = (c0.clone(), c0.clone());
                sgemm(s, alpha, &a, &b, beta, &mut got);
                sgemm_reference(s, alpha, &a, &b, beta, &mut want);
                assert_close(
                    &format!("sgemm {s:?} alpha={alpha} beta={beta}"),
                    &got,
                    &want,
                    k,
                );
                let mut serial = c0.clone();
                sgemm_serial(s, alpha, &a, &b, beta, &mut serial);
                assert_close(&format!("sgemm_serial {s:?}"), &serial, &want, k);
            }
        }
    }
}

#[test]
fn sgemm_beta_zero_ignores_nan_in_c() {
    // beta = 0 must overwrite C, even where C holds garbage.
    let s = GemmShape {
        m: 200,
        n: 150,
        k: 40,
        trans_a: false,
        trans_b: true,
    };
    let (a, b) = (values(s.m * s.k, 4), values(s.k * s.n, 5));
    let mut got = vec![f32::NAN; s.m * s.n];
    sgemm(s, 1.0, &a, &b, 0.0, &mut got);
    let mut want = vec![0.0; s.m * s.n];
    sgemm_reference(s, 1.0, &a, &b, 0.0, &mut want);
    assert_close("sgemm beta=0", &got, &want, s.k);
}

#[test]
fn sgemm_batched_matches_reference() {
    // Attention-like items (small), a shared operand (stride 0), and a batch
    // smaller than the thread count with big items.
    let cases = [
        (96, 13, 8, 13, false, true),
        (4, 37, 29, 11, true, false),
        (1, 300, 64, 300, false, false),
    ];
    for &(batch, m, k, n, trans_a, trans_b) in &cases {
        let s = GemmShape {
            m,
            n,
            k,
            trans_a,
            trans_b,
        };
        for share_b in [false, true] {
            let a = values(batch * m * k, 6);
            let b_stride = if share_b { 0 } else { k * n };
            let b = values(if share_b { k * n } else { batch * k * n }, 7);
            let c0 = values(batch * m * n, 8);
            let mut got = c0.clone();
            sgemm_batched(s, batch, 1.5, &a, m * k, &b, b_stride, 0.5, &mut got);
            for i in 0..batch {
                let mut want = c0[i * m * n..(i + 1) * m * n].to_vec();
                let b_i = &b[i * b_stride..i * b_stride + k * n];
                sgemm_reference(s, 1.5, &a[i * m * k..(i + 1) * m * k], b_i, 0.5, &mut want);
                let what = format!("sgemm_batched {s:?} item {i} share_b={share_b}");
                assert_close(&what, &got[i * m * n..(i + 1) * m * n], &want, k);
            }
        }
    }
}

/// Every GEMM path this CPU can run (each ISA's packed micro-kernel and
/// matrixmultiply), serial and parallel, against the reference on shapes with
/// ragged edges in every dimension and depths / widths that cross the KC and
/// NC blocks, where later depth blocks accumulate onto the first.
#[test]
fn every_gemm_path_matches_reference() {
    let mut paths: Vec<GemmPath> = Isa::available().into_iter().map(GemmPath::Packed).collect();
    paths.push(GemmPath::Matrixmultiply);
    for isa in Isa::ALL {
        if !isa.is_available() {
            eprintln!("skipped: the packed GEMM with {isa} (this CPU lacks it)");
        }
    }
    for &path in &paths {
        // A depth of 1537 takes at least 3 depth blocks on any CPU (KC <= 768).
        let deep = 1537;
        let bl = match path {
            GemmPath::Packed(isa) => blocking_for(isa, deep),
            GemmPath::Matrixmultiply => blocking_for(Isa::Scalar, deep),
        };
        assert!(bl.kc < deep, "{bl:?}");
        eprintln!("{}: {bl:?}", path.name());
        let shapes = [
            (1, 1, 1),
            (13, 5, 33),
            (25, 769, 17),
            (13, deep, bl.nc + 35),
            (300, 64, 97),
            (70, 129, 3),
        ];
        for &(m, k, n) in &shapes {
            for &(trans_a, trans_b) in &LAYOUTS {
                let s = GemmShape::new(m, n, k, trans_a, trans_b);
                let (a, b) = (values(m * k, 11), values(k * n, 12));
                let c0 = values(m * n, 13);
                for (alpha, beta) in [(1.0, 0.0), (-0.5, 0.75)] {
                    let mut want = c0.clone();
                    sgemm_reference(s, alpha, &a, &b, beta, &mut want);
                    for parallel in [false, true] {
                        let mut got = if beta == 0.0 {
                            vec![f32::NAN; m * n]
                        } else {
                            c0.clone()
                        };
                        sgemm_on(path, parallel, s, alpha, &a, &b, beta, &mut got);
                        let what = format!(
                            "{} parallel={parallel} {s:?} alpha={alpha} beta={beta}",
                            path.name()
                        );
                        assert_close(&what, &got, &want, k);
                    }
                }
            }
        }
    }
}

#[test]
fn sgemm_with_empty_depth_scales_c() {
    for isa in Isa::available() {
        let s = GemmShape::nn(3, 4, 0);
        let mut c = vec![2.0; 12];
        sgemm_on(GemmPath::Packed(isa), false, s, 1.0, &[], &[], 0.5, &mut c);
        assert!(c.iter().all(|&v| v == 1.0), "{isa}: {c:?}");
        let mut c = vec![f32::NAN; 12];
        sgemm_on(GemmPath::Packed(isa), false, s, 1.0, &[], &[], 0.0, &mut c);
        assert!(c.iter().all(|&v| v == 0.0), "{isa}: {c:?}");
    }
}

/// The bias epilogue on every path: `C = A B + bias` per row, over one and
/// several depth blocks, ragged widths, serial and parallel; garbage in C is
/// overwritten.
#[test]
fn bias_epilogue_matches_reference_plus_bias() {
    let mut paths: Vec<GemmPath> = Isa::available().into_iter().map(GemmPath::Packed).collect();
    paths.push(GemmPath::Matrixmultiply);
    for (m, k, n) in [(1, 3, 5), (37, 64, 70), (300, 1537, 33), (130, 200, 257)] {
        for trans_a in [false, true] {
            let s = GemmShape::new(m, n, k, trans_a, true);
            let (a, b, bias) = (values(m * k, 21), values(k * n, 22), values(n, 23));
            let mut want = vec![0.0; m * n];
            sgemm_reference(s, 1.0, &a, &b, 0.0, &mut want);
            for (i, w) in want.iter_mut().enumerate() {
                *w += bias[i % n];
            }
            for &path in &paths {
                for parallel in [false, true] {
                    let mut got = vec![f32::NAN; m * n];
                    let (c, no_gelu) = (&mut got, GeluOperand::Neither);
                    sgemm_with_bias_on(
                        path,
                        parallel,
                        s,
                        1.0,
                        &a,
                        &b,
                        0.0,
                        c,
                        Some(&bias),
                        no_gelu,
                    );
                    let what = format!("bias {} parallel={parallel} {s:?}", path.name());
                    assert_close(&what, &got, &want, k);
                }
            }
            let mut got = vec![f32::NAN; m * n];
            sgemm_bias(s, &a, &b, &bias, &mut got);
            assert_close(&format!("sgemm_bias {s:?}"), &got, &want, k);
        }
    }
}

/// An operand read through GELU ([`GeluOperand`]) on every path, layout and
/// operand, serial and parallel, with and without bias, over one and several
/// depth blocks and column panels: the bits of GELU on the whole operand
/// followed by the plain product on the same path.
#[test]
fn gelu_operand_gives_the_bits_of_gelu_then_the_product() {
    let mut paths: Vec<GemmPath> = Isa::available().into_iter().map(GemmPath::Packed).collect();
    paths.push(GemmPath::Matrixmultiply);
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for (m, k, n) in [(1, 3, 5), (37, 64, 70), (300, 1537, 33), (130, 200, 4200)] {
        for (trans_a, trans_b) in [(false, true), (true, false), (false, false)] {
            let s = GemmShape::new(m, n, k, trans_a, trans_b);
            // Values in [-4, 4): GELU's curved part.
            let scaled = |n, seed| values(n, seed).iter().map(|v| 4.0 * v).collect::<Vec<_>>();
            let (a, b, bias) = (scaled(m * k, 31), scaled(k * n, 32), values(n, 33));
            for which in [GeluOperand::A, GeluOperand::B] {
                for &path in &paths {
                    // GELU with the code the path runs: the packed path's
                    // ISA, elsewhere the process's.
                    let isa = match path {
                        GemmPath::Packed(isa) => isa,
                        GemmPath::Matrixmultiply => pixel_kernels::cpu::isa(),
                    };
                    let (mut ga, mut gb) = (a.clone(), b.clone());
                    match which {
                        GeluOperand::A => pixel_kernels::gelu::gelu_forward_with(isa, &mut ga, &a),
                        _ => pixel_kernels::gelu::gelu_forward_with(isa, &mut gb, &b),
                    }
                    for (parallel, bias) in [(false, None), (true, Some(&bias[..]))] {
                        let mut want = vec![0.0; m * n];
                        let no_gelu = GeluOperand::Neither;
                        sgemm_with_bias_on(
                            path, parallel, s, 1.0, &ga, &gb, 0.0, &mut want, bias, no_gelu,
                        );
                        let mut got = vec![f32::NAN; m * n];
                        sgemm_with_bias_on(
                            path, parallel, s, 1.0, &a, &b, 0.0, &mut got, bias, which,
                        );
                        assert!(
                            bits(&got) == bits(&want),
                            "gelu on {which:?}, {} parallel={parallel} {s:?}",
                            path.name()
                        );
                    }
                }
            }
        }
    }
}
