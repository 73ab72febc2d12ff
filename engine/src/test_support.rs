//! Shared support of the op tests (the `tests` module at the bottom of each
//! file in `ops/`): finite-difference gradchecks, and `test_device!`, which
//! runs one test body on the CPU and, when the `cuda` feature is on and a
//! driver is present, on cuda:0, and compares every CUDA output with the CPU's.
//!
//! `engine/tests/every_op_on_every_device.rs` includes this file with
//! `#[path]`, so it names only items that the engine's root and that test's
//! root both provide (`crate::{Device, Rng, Tape, Tensor, Var, gradcheck}`).

use crate::gradcheck::{gradcheck, randn, GradcheckConfig};
use crate::{Device, Rng, Tape, Tensor, Var};

/// cuda:0 when this build and machine can run CUDA; otherwise why not.
/// With `PIXEL_REQUIRE_CUDA=1` (scripts/gpu_check.sh) a missing device is a
/// test failure instead of a skip: on the GPU machine a missing cuBLAS or a
/// kernel that fails to load must not turn every comparison into a pass.
pub fn cuda_device() -> Result<Device, String> {
    let found = open_cuda();
    if let Err(why) = &found {
        let required = std::env::var("PIXEL_REQUIRE_CUDA").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "PIXEL_REQUIRE_CUDA=1 but cuda:0 is unusable: {why}"
        );
    }
    found
}

fn open_cuda() -> Result<Device, String> {
    #[cfg(feature = "cuda")]
    {
        if !pixel_kernels::cuda::driver_present() {
            return Err("no CUDA driver found".into());
        }
        pixel_kernels::cuda::device(0)
            .map(|_| Device::Cuda(0))
            .map_err(|e| e.to_string())
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err("built without the `cuda` feature".into())
    }
}

/// Every output of the CUDA run close to the CPU's: |gpu - cpu| <= tol * (1 + |cpu|).
pub fn assert_close(test: &str, cpu: &[Tensor], gpu: &[Tensor], tol: f32) {
    assert_eq!(cpu.len(), gpu.len(), "{test}: output counts differ");
    for (i, (c, g)) in cpu.iter().zip(gpu).enumerate() {
        assert_eq!(c.shape(), g.shape(), "{test}: output {i} shapes differ");
        assert_eq!(
            g.device(),
            Device::Cpu,
            "{test}: output {i} not copied to the host"
        );
        for (j, (&a, &b)) in c.data().iter().zip(g.data()).enumerate() {
            assert!(
                (a - b).abs() <= tol * (1.0 + a.abs()),
                "{test}: output {i} element {j}: CPU {a}, CUDA {b} (tol {tol})"
            );
        }
    }
}

/// `test_device!(name, tol, |device| -> Vec<Tensor> { ... })`: a test that runs
/// the body on the CPU, then on cuda:0 when it can, comparing outputs (host
/// tensors) within `tol`. Prints why the CUDA half was skipped otherwise.
macro_rules! test_device {
    ($name:ident, $tol:expr, $body:expr) => {
        #[test]
        fn $name() {
            let body: fn($crate::Device) -> Vec<$crate::Tensor> = $body;
            let cpu = body($crate::Device::Cpu);
            match $crate::test_support::cuda_device() {
                Ok(device) => {
                    let gpu = body(device);
                    $crate::test_support::assert_close(stringify!($name), &cpu, &gpu, $tol);
                }
                Err(why) => eprintln!("{}: CUDA half skipped: {why}", stringify!($name)),
            }
        }
    };
}
pub(crate) use test_device;

/// Copy to a device (the device was opened by [`cuda_device`]).
pub fn on(device: Device, t: &Tensor) -> Tensor {
    t.to_device(device).expect("device already opened")
}

/// Host tensors of the given shapes, entries ~ N(0, 1) from `seed`.
pub fn inputs(shapes: &[&[usize]], seed: u64) -> Vec<Tensor> {
    let mut r = Rng::new(seed);
    shapes.iter().map(|s| randn(s, &mut r)).collect()
}

/// Run an op forward and backward on `device`: the inputs become leaves there,
/// the output gradient is a fixed random tensor. Returns the output and every
/// input's gradient, all copied to the host; panics when an input got no
/// gradient (every input of these tests is differentiable).
pub fn forward_backward(
    device: Device,
    inputs: &[Tensor],
    seed: u64,
    f: impl Fn(&mut Tape, &[Var]) -> Var,
) -> Vec<Tensor> {
    let mut tape = Tape::new();
    let vars: Vec<Var> = inputs
        .iter()
        .map(|x| tape.leaf_tensor(on(device, x)))
        .collect();
    let y = f(&mut tape, &vars);
    let mut rng = Rng::new(seed);
    let dout = randn(y.shape(), &mut rng);
    let grads = tape.backward_with(&y, on(device, &dout));
    let mut out = vec![y.value().to_host()];
    for (i, v) in vars.iter().enumerate() {
        let g = grads
            .get(v)
            .unwrap_or_else(|| panic!("no gradient for input {i} on {device:?}"));
        out.push(g.to_host());
    }
    out
}

/// The gradchecks' inputs: fresh values per run would make failures
/// unreproducible; one seed per test keeps them repeatable.
pub fn rng() -> Rng {
    Rng::new(0x5eed)
}

/// Gradcheck `f` with respect to every input (worst relative error < 0.05).
pub fn check(inputs: Vec<Tensor>, f: impl Fn(&mut Tape, &[Var]) -> Var) {
    let diff = vec![true; inputs.len()];
    check_some(inputs, &diff, f);
}

/// Gradcheck `f` with respect to the inputs marked in `diff`.
pub fn check_some(inputs: Vec<Tensor>, diff: &[bool], f: impl Fn(&mut Tape, &[Var]) -> Var) {
    match gradcheck(&inputs, diff, GradcheckConfig::default(), f) {
        Ok(worst) => assert!(worst < 0.05, "worst relative error {worst}"),
        Err(e) => panic!("gradcheck failed: {e}"),
    }
}

/// Asserts that `fused` and `plain` (two graphs of the same function) give the
/// same bits: the output and every input's gradient under one random output
/// gradient. For fused ops that promise the arithmetic of the ops they fuse.
pub fn assert_same_bits(
    what: &str,
    inputs: &[Tensor],
    fused: impl Fn(&mut Tape, &[Var]) -> Var,
    plain: impl Fn(&mut Tape, &[Var]) -> Var,
) {
    let run = |f: &dyn Fn(&mut Tape, &[Var]) -> Var| {
        let mut t = Tape::new();
        let v: Vec<_> = inputs.iter().map(|x| t.leaf_tensor(x.clone())).collect();
        let y = f(&mut t, &v);
        let dy = randn(y.shape(), &mut Rng::new(5));
        let g = t.backward_with(&y, dy);
        let mut out = vec![y.data().to_vec()];
        out.extend(
            v.iter()
                .map(|v| g.get(v).expect("gradient").data().to_vec()),
        );
        out
    };
    let (a, b) = (run(&fused), run(&plain));
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        let same = a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same,
            "{what} differs from the unfused ops in tensor {i} (0: output)"
        );
    }
}
