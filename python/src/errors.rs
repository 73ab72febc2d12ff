//! Rust errors as Python exceptions, with the Rust message: `ValueError` for a bad value,
//! shape or dtype the caller passed, `OSError` for files (missing or unreadable fonts,
//! missing or malformed checkpoints).

use pixel_render::RenderError;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::PyErr;

pub fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

pub fn os_error(message: impl Into<String>) -> PyErr {
    PyOSError::new_err(message.into())
}

/// A renderer error: settings are values, everything else is about a file.
pub fn render_error(e: RenderError) -> PyErr {
    match e {
        RenderError::Config(_) => value_error(e.to_string()),
        RenderError::Font { .. } | RenderError::FontDir { .. } | RenderError::Output { .. } => {
            os_error(e.to_string())
        }
    }
}

/// An error from loading a checkpoint (any cause in the chain, outermost first).
pub fn checkpoint_error(e: impl Into<anyhow::Error>) -> PyErr {
    os_error(format!("{:#}", e.into()))
}
