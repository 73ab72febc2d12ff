//! Fused ops that trade a little recomputation for memory.

use pixel_kernels::elementwise::{add_row_broadcast, sum_rows_into};
use pixel_kernels::gelu::{gelu_backward, gelu_forward};
use pixel_kernels::gemm::{sgemm, GemmShape};

#[cfg(feature = "cuda")]
use super::cuda;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// `y = gelu(x) W^T + b`: the second half of a transformer MLP as one node.
/// x (..., in), w (out, in), b (out). Only `x` is saved: backward recomputes
/// gelu(x) (one cheap elementwise pass) instead of keeping a second (..., in)
/// activation alive until backward, which for PIXEL's FFN is the largest buffer
/// of every layer.
pub fn gelu_linear(t: &mut Tape, x: &Var, w: &Var, b: &Var) -> Var {
    let xs = x.shape().to_vec();
    let ws = w.shape();
    assert!(
        ws.len() == 2 && !xs.is_empty() && xs[xs.len() - 1] == ws[1] && b.shape() == [ws[0]],
        "gelu_linear: input {xs:?}, weight {ws:?} and bias {:?} do not fit (expected [out, {}] and [out])",
        b.shape(),
        xs.last().copied().unwrap_or(0)
    );
    let (out_f, in_f) = (ws[0], ws[1]);
    let rows = x.value().numel() / in_f;
    #[cfg(feature = "cuda")]
    if cuda::any_on_device(&[x, w, b]) {
        let mut ys = xs.clone();
        *ys.last_mut().unwrap() = out_f;
        return cuda::linalg::gelu_linear(t, x, w, b, rows, ys);
    }
    let mut g = vec![0.0f32; rows * in_f]; // (rows, in) gelu(x), dropped after use
    gelu_forward(&mut g, x.data());
    let mut y = vec![0.0f32; rows * out_f]; // (rows, out)
    let nt = GemmShape {
        m: rows,
        n: out_f,
        k: in_f,
        trans_a: false,
        trans_b: true,
    };
    sgemm(nt, 1.0, &g, w.data(), 0.0, &mut y);
    drop(g);
    add_row_broadcast(&mut y, b.data());
    let mut ys = xs.clone();
    *ys.last_mut().unwrap() = out_f;
    let out = Tensor::new(&ys, y);
    if !t.needs_grad(&[x, w, b]) {
        return Var::constant(out);
    }
    let (xv, wv) = (x.arc(), w.arc());
    t.add_flops(2.0 * (rows * in_f * out_f) as f64);
    t.record(
        "gelu_linear",
        out,
        &[x, w, b],
        Box::new(move |dy, needs| {
            let dyd = dy.data();
            let dw = needs[1].then(|| {
                let mut g = vec![0.0f32; rows * in_f];
                gelu_forward(&mut g, xv.data()); // recomputed
                let mut dw = vec![0.0f32; out_f * in_f];
                let tn = GemmShape {
                    m: out_f,
                    n: in_f,
                    k: rows,
                    trans_a: true,
                    trans_b: false,
                };
                sgemm(tn, 1.0, dyd, &g, 0.0, &mut dw);
                Tensor::new(&[out_f, in_f], dw)
            });
            let db = needs[2].then(|| {
                let mut db = vec![0.0f32; out_f];
                sum_rows_into(&mut db, dyd);
                Tensor::new(&[out_f], db)
            });
            let dx = needs[0].then(|| {
                let mut dg = vec![0.0f32; rows * in_f];
                let nn = GemmShape {
                    m: rows,
                    n: in_f,
                    k: out_f,
                    trans_a: false,
                    trans_b: false,
                };
                sgemm(nn, 1.0, dyd, wv.data(), 0.0, &mut dg);
                let mut dx = vec![0.0f32; rows * in_f];
                gelu_backward(&mut dx, &dg, xv.data());
                Tensor::new(xv.shape(), dx)
            });
            vec![dx, dw, db]
        }),
    )
}
