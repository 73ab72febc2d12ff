//! The tape: a flat list of recorded ops, replayed in reverse for gradients.
//!
//! A [`Var`] is a value (`Arc<Tensor>`, cheap to clone) plus an optional id on
//! the tape. Leaves (parameters, inputs that need a gradient) get an id from
//! [`Tape::leaf`]; an op records a node only when the tape is enabled and at
//! least one input has an id, so a disabled tape ([`Tape::no_grad`]) records
//! nothing and keeps nothing alive: intermediate values are freed as soon as
//! the caller drops them.
//!
//! Each node owns a boxed backward closure that captures exactly what its op
//! needs (layer_norm: mean and rstd; softmax: its output; dropout: its mask),
//! receives the gradient of its output by value and returns one optional
//! gradient per input. The first gradient reaching a var is moved in; later
//! ones are added in place.

use std::sync::Arc;

use crate::profile::Profiler;
use crate::tensor::Tensor;

/// A value on (or off) the tape.
#[derive(Clone)]
pub struct Var {
    value: Arc<Tensor>,
    id: Option<usize>,
}

impl Var {
    /// A value that needs no gradient.
    pub fn constant(t: Tensor) -> Var {
        Var {
            value: Arc::new(t),
            id: None,
        }
    }

    /// A shared value that needs no gradient (no copy).
    pub fn constant_arc(value: Arc<Tensor>) -> Var {
        Var { value, id: None }
    }

    pub fn value(&self) -> &Tensor {
        &self.value
    }

    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    pub fn data(&self) -> &[f32] {
        self.value.data()
    }

    /// The id on the tape, if this var takes part in gradient computation.
    pub fn id(&self) -> Option<usize> {
        self.id
    }

    pub fn requires_grad(&self) -> bool {
        self.id.is_some()
    }

    /// The shared value (for saving in a backward closure without a copy).
    pub fn arc(&self) -> Arc<Tensor> {
        self.value.clone()
    }
}

/// Backward of one node: gradient of the output in, one optional gradient per
/// input out. `needs[i]` says whether input `i` wants a gradient.
pub type BackwardFn = Box<dyn FnOnce(Tensor, &[bool]) -> Vec<Option<Tensor>> + Send>;

struct Node {
    op: &'static str,
    /// Profiler scope at record time (empty when not profiling).
    scope: String,
    output: usize,
    inputs: Vec<Option<usize>>,
    backward: BackwardFn,
}

/// Records ops for reverse-mode autodiff (or nothing, when disabled).
pub struct Tape {
    enabled: bool,
    next_id: usize,
    nodes: Vec<Node>,
    /// Per-op timing, when enabled with [`Tape::enable_profiling`].
    pub profiler: Option<Profiler>,
    pending_flops: f64,
}

/// Gradients by var id, produced by [`Tape::backward`].
pub struct Gradients {
    grads: Vec<Option<Tensor>>,
}

impl Gradients {
    /// The gradient of a var, if any reached it.
    pub fn get(&self, v: &Var) -> Option<&Tensor> {
        v.id.and_then(|i| self.grads.get(i))
            .and_then(|g| g.as_ref())
    }

    /// Move the gradient of a var out.
    pub fn take(&mut self, v: &Var) -> Option<Tensor> {
        v.id.and_then(|i| self.grads.get_mut(i))
            .and_then(|g| g.take())
    }
}

impl Default for Tape {
    fn default() -> Self {
        Tape::new()
    }
}

impl Tape {
    /// A recording tape.
    pub fn new() -> Tape {
        Tape {
            enabled: true,
            next_id: 0,
            nodes: Vec::new(),
            profiler: None,
            pending_flops: 0.0,
        }
    }

    /// A tape that records nothing: inference mode, no per-op cost.
    pub fn no_grad() -> Tape {
        Tape {
            enabled: false,
            next_id: 0,
            nodes: Vec::new(),
            profiler: None,
            pending_flops: 0.0,
        }
    }

    /// Time every recorded op (forward and backward) from now on.
    pub fn enable_profiling(&mut self) {
        self.profiler = Some(Profiler::new());
    }

    /// Name the part of the model the next ops belong to (profiling only).
    pub fn set_scope(&mut self, scope: &str) {
        if let Some(p) = &mut self.profiler {
            p.set_scope(scope);
        }
    }

    /// Record the matmul FLOPs of the op about to be recorded (profiling only).
    pub fn add_flops(&mut self, flops: f64) {
        self.pending_flops += flops;
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A var that wants a gradient (a parameter or a differentiated input).
    /// On a disabled tape it is a constant.
    pub fn leaf(&mut self, value: Arc<Tensor>) -> Var {
        let id = if self.enabled {
            self.next_id += 1;
            Some(self.next_id - 1)
        } else {
            None
        };
        Var { value, id }
    }

    /// Shorthand for [`Tape::leaf`] on an owned tensor.
    pub fn leaf_tensor(&mut self, t: Tensor) -> Var {
        self.leaf(Arc::new(t))
    }

    /// True when an op on these inputs must record a node.
    pub fn needs_grad(&self, inputs: &[&Var]) -> bool {
        self.enabled && inputs.iter().any(|v| v.id.is_some())
    }

    /// Record an op's output. If no input needs a gradient the closure is
    /// dropped and the output is a constant.
    /// `op` names the op for profiles.
    pub fn record(
        &mut self,
        op: &'static str,
        value: Tensor,
        inputs: &[&Var],
        backward: BackwardFn,
    ) -> Var {
        let flops = std::mem::take(&mut self.pending_flops);
        if !self.needs_grad(inputs) {
            return Var::constant(value);
        }
        let scope = match &mut self.profiler {
            Some(p) => {
                let values =
                    value.numel() + inputs.iter().map(|v| v.value().numel()).sum::<usize>();
                p.forward_event(op, flops, 4.0 * values as f64)
            }
            None => String::new(),
        };
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.push(Node {
            op,
            scope,
            output: id,
            inputs: inputs.iter().map(|v| v.id).collect(),
            backward,
        });
        Var {
            value: Arc::new(value),
            id: Some(id),
        }
    }

    /// Reverse pass from a scalar `loss` (seed gradient 1). Consumes the tape's
    /// nodes, freeing saved tensors as it goes.
    pub fn backward(&mut self, loss: &Var) -> Gradients {
        let seed = scalar_loss_seed(loss, "backward");
        self.backward_with(loss, seed)
    }

    /// Reverse pass from `out` with an explicit output gradient.
    pub fn backward_with(&mut self, out: &Var, dout: Tensor) -> Gradients {
        self.reverse(out, dout, None)
    }

    /// [`Tape::backward`] that hands each of `leaves`' gradients out as soon
    /// as it is final: `ready(i, grad)` is called exactly once per leaf `i`,
    /// right after the backward of the leaf's first use in the forward (its
    /// last contribution), with the gradient moved out (None when none
    /// reached it; leaves never used are reported at the end). Data-parallel
    /// training all-reduces gradient buckets from here while the rest of
    /// backward runs. The arithmetic is that of [`Tape::backward`].
    pub fn backward_reporting(
        &mut self,
        loss: &Var,
        leaves: &[Var],
        ready: &mut dyn FnMut(usize, Option<Tensor>),
    ) -> Gradients {
        let seed = scalar_loss_seed(loss, "backward_reporting");
        // Node index of each leaf's first use: its gradient is final once
        // the reverse pass has done that node.
        let mut first_use: Vec<Option<usize>> = vec![None; self.next_id];
        for (k, node) in self.nodes.iter().enumerate() {
            for id in node.inputs.iter().flatten() {
                first_use[*id].get_or_insert(k);
            }
        }
        let mut final_at: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        let mut unused = Vec::new();
        for (i, leaf) in leaves.iter().enumerate() {
            match leaf.id.and_then(|id| first_use[id]) {
                Some(k) => final_at[k].push(i),
                None => unused.push(i),
            }
        }
        let mut report = Reporting {
            leaves,
            final_at,
            ready,
        };
        let mut grads = self.reverse(loss, seed, Some(&mut report));
        for i in unused {
            (report.ready)(i, leaves[i].id.and_then(|id| grads.grads[id].take()));
        }
        grads
    }

    fn reverse(
        &mut self,
        out: &Var,
        dout: Tensor,
        mut report: Option<&mut Reporting>,
    ) -> Gradients {
        assert_eq!(
            out.shape(),
            dout.shape(),
            "backward_with: gradient shape {:?} does not match output shape {:?}",
            dout.shape(),
            out.shape()
        );
        let mut grads: Vec<Option<Tensor>> = (0..self.next_id).map(|_| None).collect();
        let Some(out_id) = out.id else {
            return Gradients { grads };
        };
        grads[out_id] = Some(dout);
        while let Some(node) = self.nodes.pop() {
            let index = self.nodes.len();
            let Some(dy) = grads[node.output].take() else {
                // This node does not reach the output (its leaves may be
                // final all the same).
                if let Some(r) = report.as_deref_mut() {
                    r.report(index, &mut grads);
                }
                continue;
            };
            let started = self.profiler.as_ref().map(|_| std::time::Instant::now());
            let needs: Vec<bool> = node.inputs.iter().map(|i| i.is_some()).collect();
            let dinputs = (node.backward)(dy, &needs);
            assert_eq!(
                dinputs.len(),
                node.inputs.len(),
                "backward of {} returned wrong arity",
                node.op
            );
            for (input, dx) in node.inputs.iter().zip(dinputs) {
                if let (Some(i), Some(dx)) = (input, dx) {
                    accumulate(&mut grads[*i], dx);
                }
            }
            if let (Some(p), Some(t0)) = (&mut self.profiler, started) {
                p.backward_event(&node.scope, node.op, t0.elapsed().as_secs_f64());
            }
            if let Some(r) = report.as_deref_mut() {
                r.report(index, &mut grads);
            }
        }
        Gradients { grads }
    }
}

/// The seed gradient of a reverse pass from a one-element `loss`: 1, on
/// the loss's device. `caller` names the entry point in the shape error.
fn scalar_loss_seed(loss: &Var, caller: &str) -> Tensor {
    assert_eq!(
        loss.value.numel(),
        1,
        "{caller}: loss must have one element, got shape {:?}",
        loss.shape()
    );
    let seed = Tensor::full(loss.shape(), 1.0);
    #[cfg(feature = "cuda")]
    let seed = seed
        .to_device(loss.value().device())
        .expect("backward: the loss's device is already open");
    seed
}

/// The leaves [`Tape::backward_reporting`] reports, by the node after which
/// each is final.
struct Reporting<'a, 'f> {
    leaves: &'a [Var],
    final_at: Vec<Vec<usize>>,
    ready: &'a mut (dyn FnMut(usize, Option<Tensor>) + 'f),
}

impl Reporting<'_, '_> {
    fn report(&mut self, node: usize, grads: &mut [Option<Tensor>]) {
        for &i in &self.final_at[node] {
            let id = self.leaves[i].id.expect("a reported leaf is on the tape");
            (self.ready)(i, grads[id].take());
        }
    }
}

/// First gradient moved in, later ones added in place.
fn accumulate(slot: &mut Option<Tensor>, dx: Tensor) {
    match slot {
        None => *slot = Some(dx),
        Some(g) => {
            assert_eq!(
                g.shape(),
                dx.shape(),
                "gradient shape mismatch in accumulate"
            );
            #[cfg(feature = "cuda")]
            if g.device() != crate::tensor::Device::Cpu || dx.device() != crate::tensor::Device::Cpu
            {
                return g.axpy_in_place(1.0, &dx);
            }
            pixel_kernels::elementwise::add_assign(g.data_mut(), dx.data());
        }
    }
}
