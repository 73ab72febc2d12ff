//! `pixel._pixel`: the compiled half of the `pixel` Python package.
//!
//! * [`render`]: `Renderer` and `Encoding`, text to PIXEL strips (pixel-render).
//! * [`model`]: `load` and `Model`, a checkpoint's encoder, decoder or task head (pixel-model).
//! * [`arrays`]: NumPy arrays in and out (shape and dtype checks, zero-copy outputs).
//! * [`errors`]: Rust errors as Python exceptions (`ValueError`, `OSError`).
//!
//! The pure-Python half (`python/pixel/`) re-exports these and adds `pixel.compat`.
//! Long calls run with the GIL released (`Python::detach`, PyO3's `allow_threads`).

mod arrays;
mod errors;
mod model;
mod render;

use pyo3::prelude::*;

#[pymodule]
fn _pixel(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("RENDERINGS", render::RENDERINGS.to_vec())?;
    m.add_class::<render::PyRenderer>()?;
    m.add_class::<render::PyEncoding>()?;
    m.add_class::<model::PyModel>()?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_function(wrap_pyfunction!(keep_freed_memory, m)?)?;
    Ok(())
}

/// Keeps freed memory in the process for reuse instead of returning it to the system (glibc
/// malloc settings, process-wide; Linux only, elsewhere nothing). A loop that renders batches
/// gets each strip array from recycled pages then, without a page fault per 4 KiB: about twice
/// the strips per second. Opt-in, because it changes the allocator for the whole interpreter.
#[pyfunction]
fn keep_freed_memory() {
    pixel::keep_freed_memory();
}
