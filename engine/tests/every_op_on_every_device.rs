//! Every public op of `pixel_engine::ops`, forward and backward, on every
//! device present. The CPU run must give finite outputs and a gradient for
//! every input; on cuda:0 (the `cuda` feature and a driver) each op is also
//! compared with the CPU. A second test keeps the table in step with the
//! `pub use` lines of `ops/mod.rs`, so a new op without an entry fails CI.

// The engine's own test support (`cuda_device` with `PIXEL_REQUIRE_CUDA`,
// `forward_backward`, ...), shared rather than copied; it names its items
// through `crate::`, which the imports below provide.
#[allow(dead_code, unused_imports, unused_macros)]
#[path = "../src/test_support.rs"]
mod test_support;

use pixel_engine::ops::{self, AttentionConfig};
use pixel_engine::{gradcheck, Device, Rng, Tape, Tensor, Var};
use test_support::{assert_close, cuda_device, forward_backward, inputs};

/// |cuda - cpu| <= TOL * (1 + |cpu|): the loosest tolerance of the per-op
/// device tests (GEMMs, attention).
const TOL: f32 = 1e-4;

type Entry = (&'static str, fn(Device) -> Vec<Tensor>);

/// The op on inputs of the given shapes (fixed random values), forward and
/// backward from a fixed random output gradient: output and input gradients.
fn run(d: Device, shapes: &[&[usize]], f: impl Fn(&mut Tape, &[Var]) -> Var) -> Vec<Tensor> {
    forward_backward(d, &inputs(shapes, 7), 8, f)
}

/// An additive (B, N) mask with two masked positions.
fn key_mask(b: usize, n: usize) -> Tensor {
    let mut m = Tensor::zeros(&[b, n]);
    m.data_mut()[n - 1] = -10000.0;
    m.data_mut()[n] = -10000.0;
    m
}

/// One entry per function exported by `ops/mod.rs`.
fn every_op() -> Vec<Entry> {
    const IDX: [usize; 8] = [4, 0, 0, 2, 1, 1, 3, 1]; // repeated rows
    vec![
        ("add", |d| {
            run(d, &[&[2, 3, 4], &[4]], |t, v| ops::add(t, &v[0], &v[1]))
        }),
        ("sub", |d| {
            run(d, &[&[2, 3, 4], &[2, 3, 4]], |t, v| {
                ops::sub(t, &v[0], &v[1])
            })
        }),
        ("mul", |d| {
            run(d, &[&[2, 3, 4], &[1, 3, 4]], |t, v| {
                ops::mul(t, &v[0], &v[1])
            })
        }),
        ("scale", |d| {
            run(d, &[&[3, 5]], |t, v| ops::scale(t, &v[0], -0.7))
        }),
        ("sum_all", |d| {
            run(d, &[&[3, 5]], |t, v| ops::sum_all(t, &v[0]))
        }),
        ("mean_all", |d| {
            run(d, &[&[3, 5]], |t, v| ops::mean_all(t, &v[0]))
        }),
        ("sum_axis", |d| {
            run(d, &[&[3, 4, 5]], |t, v| ops::sum_axis(t, &v[0], 1))
        }),
        ("mean_axis", |d| {
            run(d, &[&[3, 4, 5]], |t, v| ops::mean_axis(t, &v[0], -1))
        }),
        ("dropout", |d| {
            run(d, &[&[8, 16]], |t, v| {
                ops::dropout(t, &v[0], 0.3, true, &mut Rng::new(5))
            })
        }),
        ("gelu", |d| run(d, &[&[3, 7]], |t, v| ops::gelu(t, &v[0]))),
        ("relu", |d| run(d, &[&[3, 7]], |t, v| ops::relu(t, &v[0]))),
        ("tanh", |d| run(d, &[&[3, 7]], |t, v| ops::tanh(t, &v[0]))),
        ("attention", |d| {
            // With dropout: its mask, too, is a hash of (seed, index).
            let cfg = AttentionConfig {
                num_heads: 2,
                dropout: 0.2,
                training: true,
            };
            run(d, &[&[2, 5, 24]], |t, v| {
                let mask = key_mask(2, 5);
                ops::attention(t, &v[0], Some(&mask), cfg, &mut Rng::new(2))
            })
        }),
        ("attention_linear", |d| {
            let cfg = AttentionConfig {
                num_heads: 2,
                dropout: 0.2,
                training: true,
            };
            run(d, &[&[2, 5, 24], &[6, 8], &[6]], |t, v| {
                let (mask, rng) = (key_mask(2, 5), &mut Rng::new(2));
                ops::attention_linear(t, &v[0], Some(&mask), cfg, &v[1], &v[2], rng)
            })
        }),
        ("softmax", |d| {
            run(d, &[&[4, 3, 6]], |t, v| {
                ops::softmax(t, &v[0], Some(&key_mask(2, 6)))
            })
        }),
        ("gelu_linear", |d| {
            run(d, &[&[2, 3, 5], &[4, 5], &[4]], |t, v| {
                ops::gelu_linear(t, &v[0], &v[1], &v[2])
            })
        }),
        ("layer_norm_linear", |d| {
            // Two stacked projections (as q, k, v are stacked).
            run(
                d,
                &[&[2, 3, 5], &[5], &[5], &[4, 5], &[3, 5], &[4], &[3]],
                |t, v| {
                    let (ws, bs) = ([&v[3], &v[4]], [&v[5], &v[6]]);
                    ops::layer_norm_linear(t, &v[0], &v[1], &v[2], 1e-5, &ws, Some(&bs))
                },
            )
        }),
        ("layer_norm_mlp", |d| {
            run(
                d,
                &[&[2, 3, 5], &[5], &[5], &[7, 5], &[7], &[4, 7], &[4]],
                |t, v| {
                    ops::layer_norm_mlp(t, &v[0], &v[1], &v[2], 1e-5, &v[3], &v[4], &v[5], &v[6])
                },
            )
        }),
        ("cross_entropy", |d| {
            let labels = [2, ops::IGNORE_INDEX, 0, 4, 1, 3];
            run(d, &[&[6, 5]], move |t, v| {
                ops::cross_entropy(t, &v[0], &labels)
            })
        }),
        ("masked_mse", |d| {
            let weights = [1.0, 0.0, 1.0, 1.0, 0.0, 0.5];
            run(d, &[&[2, 3, 6], &[2, 3, 6]], move |t, v| {
                ops::masked_mse(t, &v[0], &v[1], &weights)
            })
        }),
        ("linear", |d| {
            run(d, &[&[2, 3, 5], &[4, 5], &[4]], |t, v| {
                ops::linear(t, &v[0], &v[1], Some(&v[2]))
            })
        }),
        ("matmul", |d| {
            run(d, &[&[2, 3, 5], &[2, 4, 5]], |t, v| {
                ops::matmul(t, &v[0], &v[1], false, true)
            })
        }),
        ("layer_norm", |d| {
            run(d, &[&[3, 4, 10], &[10], &[10]], |t, v| {
                ops::layer_norm(t, &v[0], &v[1], &v[2], 1e-5)
            })
        }),
        ("normalize_rows_unbiased", |d| {
            run(d, &[&[4, 9]], |t, v| {
                ops::normalize_rows_unbiased(t, &v[0], 1e-6)
            })
        }),
        ("max_axis", |d| {
            run(d, &[&[2, 5, 3]], |t, v| ops::max_axis(t, &v[0], 1))
        }),
        ("concat", |d| {
            run(d, &[&[2, 1, 4], &[2, 5, 4]], |t, v| {
                ops::concat(t, &[&v[0], &v[1]], 1)
            })
        }),
        ("expand_first", |d| {
            run(d, &[&[1, 2, 4]], |t, v| ops::expand_first(t, &v[0], 3))
        }),
        ("gather_rows", |d| {
            run(d, &[&[2, 5, 3]], |t, v| ops::gather_rows(t, &v[0], &IDX, 4))
        }),
        ("narrow", |d| {
            run(d, &[&[3, 6, 4]], |t, v| ops::narrow(t, &v[0], 1, 2, 3))
        }),
        ("permute", |d| {
            run(d, &[&[2, 3, 4, 5]], |t, v| {
                ops::permute(t, &v[0], &[0, 2, 1, 3])
            })
        }),
        ("reshape", |d| {
            run(d, &[&[2, 3, 4, 5]], |t, v| ops::reshape(t, &v[0], &[6, 20]))
        }),
        ("scatter_rows", |d| {
            run(d, &[&[2, 4, 3]], |t, v| {
                ops::scatter_rows(t, &v[0], &IDX, 5)
            })
        }),
        ("transpose", |d| {
            run(d, &[&[2, 3, 4, 5]], |t, v| ops::transpose(t, &v[0], 1, -1))
        }),
    ]
}

#[test]
fn every_op_forward_and_backward_on_every_device() {
    // `forward_backward` panics when an input gets no gradient.
    let ops = every_op();
    let cpu: Vec<Vec<Tensor>> = ops.iter().map(|(_, op)| op(Device::Cpu)).collect();
    for ((name, _), out) in ops.iter().zip(&cpu) {
        for (i, t) in out.iter().enumerate() {
            assert!(t.all_finite(), "{name} on the CPU: output {i} not finite");
        }
    }
    let device = match cuda_device() {
        Ok(device) => device,
        Err(why) => return eprintln!("every_op_on_every_device: CUDA half skipped: {why}"),
    };
    for ((name, op), cpu) in ops.iter().zip(&cpu) {
        let gpu = op(device);
        assert_close(name, cpu, &gpu, TOL);
        if *name == "dropout" {
            // Not just close: the same elements dropped.
            let zeros = |t: &Tensor| t.data().iter().map(|&v| v == 0.0).collect::<Vec<_>>();
            assert_eq!(zeros(&cpu[0]), zeros(&gpu[0]), "dropout: masks differ");
            assert!(zeros(&cpu[0]).contains(&true), "dropout dropped nothing");
        }
    }
}

/// The function names of the `pub use` lines of `ops/mod.rs` (types and
/// consts, which are not lower_snake_case, left out).
fn exported_ops() -> Vec<String> {
    let src = include_str!("../src/ops/mod.rs");
    let mut names = Vec::new();
    for item in src.split("pub use ").skip(1) {
        let item = &item[..item.find(';').expect("`pub use` without `;`")];
        // `module::{a, b}` or `module::a`; `x as y` exports `y`.
        let list = item.rsplit("::").next().unwrap();
        for name in list
            .trim_matches(|c: char| c == '{' || c == '}' || c.is_whitespace())
            .split(',')
        {
            let name = name.split(" as ").last().unwrap().trim();
            let snake = name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if snake {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    names
}

#[test]
fn the_table_lists_every_exported_op() {
    let exported = exported_ops();
    assert!(
        exported.len() >= 30,
        "found only {exported:?} in ops/mod.rs"
    );
    let mut listed: Vec<String> = every_op().iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(
        listed, exported,
        "every_op() must list each op of ops/mod.rs's `pub use` lines once"
    );
}
