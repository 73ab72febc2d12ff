//! NumPy arrays across the boundary.
//!
//! Outputs are Rust buffers handed to NumPy without a copy (the array owns the `Vec`).
//! Inputs are read once into the engine's own tensor (it owns its memory), from any
//! strides; anything array-like is first passed through `numpy.asarray`.

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{
    IntoPyArray, PyArrayDescrMethods, PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::errors::value_error;

/// A Rust buffer as a NumPy array of `shape`, without copying.
pub fn to_numpy<'py, T: numpy::Element>(
    py: Python<'py>,
    shape: &[usize],
    data: Vec<T>,
) -> Bound<'py, PyArrayDyn<T>> {
    ArrayD::from_shape_vec(IxDyn(shape), data)
        .expect("output buffer matches its shape")
        .into_pyarray(py)
}

/// `obj` as a NumPy array (unchanged when it already is one).
fn as_ndarray<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
    let py = obj.py();
    let array = if obj.is_instance_of::<PyUntypedArray>() {
        obj.clone()
    } else {
        py.import("numpy")?
            .call_method1("asarray", (obj,))
            .map_err(|e| value_error(format!("{name}: not an array ({e})")))?
    };
    Ok(array.cast_into::<PyUntypedArray>()?)
}

/// Values of a float32 array in C order, with its shape.
fn read_f32(array: &Bound<'_, PyUntypedArray>) -> PyResult<(Vec<usize>, Vec<f32>)> {
    let typed: PyReadonlyArrayDyn<f32> = array.extract()?;
    let view = typed.as_array();
    let data = match view.as_slice() {
        Some(s) => s.to_vec(),
        None => view.iter().copied().collect(), // logical (C) order for any strides
    };
    Ok((view.shape().to_vec(), data))
}

/// Model images: float32 (B, C, P, P * L) or one image (C, P, P * L), values as
/// `Encoding.to_model_input()` gives them. Returns (data, B, whether a batch axis was given).
pub fn model_images(
    obj: &Bound<'_, PyAny>,
    channels: usize,
    patch: usize,
    num_patches: usize,
) -> PyResult<(Vec<f32>, usize, bool)> {
    let array = as_ndarray(obj, "pixel_values")?;
    let want = format!(
        "float32 (B, {channels}, {patch}, {}) or ({channels}, {patch}, {})",
        patch * num_patches,
        patch * num_patches
    );
    let dtype = array.dtype();
    if !dtype.is_equiv_to(&numpy::dtype::<f32>(obj.py())) {
        return Err(value_error(format!(
            "pixel_values must be {want} (as Encoding.to_model_input() gives), got dtype {}",
            dtype.str()?
        )));
    }
    let shape = array.shape().to_vec();
    let batched = shape.len() == 4;
    let image = if batched { &shape[1..] } else { &shape[..] };
    if !(shape.len() == 3 || batched) || image != [channels, patch, patch * num_patches] {
        return Err(value_error(format!(
            "pixel_values must be {want} for this model (L = {num_patches} patches), got shape {shape:?}"
        )));
    }
    let batch = if batched { shape[0] } else { 1 };
    if batch == 0 {
        return Err(value_error("pixel_values: the batch is empty"));
    }
    let (_, data) = read_f32(&array)?;
    Ok((data, batch, batched))
}

/// A per-patch 0/1 mask, (B, L) or (L,) when the images had no batch axis; bool, integer or
/// float. Returns (B * L) floats.
pub fn patch_mask(
    obj: &Bound<'_, PyAny>,
    name: &str,
    batch: usize,
    batched: bool,
    num_patches: usize,
) -> PyResult<Vec<f32>> {
    let array = as_ndarray(obj, name)?;
    let kind = array.dtype().kind();
    if !matches!(kind, b'b' | b'i' | b'u' | b'f') {
        return Err(value_error(format!(
            "{name} must hold 0/1 values (bool, integer or float), got dtype {}",
            array.dtype().str()?
        )));
    }
    let shape = array.shape().to_vec();
    let want: Vec<usize> = if batched {
        vec![batch, num_patches]
    } else {
        vec![num_patches]
    };
    if shape != want {
        return Err(value_error(format!(
            "{name} must have shape {want:?} to match pixel_values, got {shape:?}"
        )));
    }
    let floats = array
        .call_method1("astype", ("float32",))?
        .cast_into::<PyUntypedArray>()?;
    let (_, data) = read_f32(&floats)?;
    if let Some((i, v)) = data.iter().enumerate().find(|(_, &v)| v != 0.0 && v != 1.0) {
        return Err(value_error(format!(
            "{name} must be 0 or 1, found {v} at flat index {i}"
        )));
    }
    Ok(data)
}
