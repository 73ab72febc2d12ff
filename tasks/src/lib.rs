//! Finetuning task data: readers for CoNLL-U (POS tagging and dependency
//! parsing), CoNLL-style NER (MasakhaNER) and GLUE single-sentence TSV files,
//! plus the evaluation metrics (accuracy, entity-level F1, UAS/LAS) and the
//! rewrites that put predictions into a copy of a file (`conllu::rewrite_conllu`,
//! `ner::rewrite_ner`, `glue::add_glue_column`).
//!
//! Every reader is strict: a malformed line is a [`DataError::Parse`] naming
//! the file and the 1-based line number. Nothing is skipped except what the
//! format itself says to skip (CoNLL-U comments, multiword-token ranges and
//! empty nodes).

pub mod conllu;
pub mod files;
pub mod glue;
pub mod metrics;
pub mod ner;
pub mod squad;

use std::path::{Path, PathBuf};

/// Error from a task data reader.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read (or is not valid UTF-8).
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of the file is malformed; `line` is 1-based.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

impl DataError {
    pub(crate) fn parse(path: &Path, line: usize, message: impl Into<String>) -> Self {
        DataError::Parse {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

/// Reads a data file as text: a regular file (a FIFO, device or directory is
/// refused by its type) of valid UTF-8.
pub(crate) fn read_text(path: &Path) -> Result<String, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    files::regular_file_check(path).map_err(io)?;
    std::fs::read_to_string(path).map_err(io)
}

/// `text` without a leading byte-order mark (editors on Windows write one);
/// every parser starts with it.
pub(crate) fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Strips one trailing `\r` (files with CRLF line endings).
pub(crate) fn strip_cr(line: &str) -> &str {
    line.strip_suffix('\r').unwrap_or(line)
}

/// Index of `label` in `labels`, if present.
pub fn label_index(labels: &[&str], label: &str) -> Option<usize> {
    labels.iter().position(|l| *l == label)
}
