//! GLUE-style TSV reader: a header line `sentence<TAB>label` (single
//! sentences, SST-2) or `sentence1<TAB>sentence2<TAB>label` (pairs), then one
//! row per example with that many fields. Sentences are kept verbatim (GLUE
//! SST-2 rows usually end with a space).

use std::path::Path;

use crate::{label_index, read_text, strip_cr, DataError};

/// SST-2 labels: `0` = negative, `1` = positive.
pub const SST2_LABELS: [&str; 2] = ["0", "1"];

/// One classification example: a sentence or a sentence pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlueExample {
    pub sentence: String,
    /// The second sentence of a pair file; `None` for single sentences.
    pub sentence_b: Option<String>,
    /// Index of the label in the label list the file was read with.
    pub label: usize,
}

/// Reads a single-sentence GLUE TSV with the SST-2 labels.
pub fn read_glue_single(path: impl AsRef<Path>) -> Result<Vec<GlueExample>, DataError> {
    read_glue_single_with_labels(path, &SST2_LABELS)
}

/// Reads a single-sentence GLUE TSV; a label not in `labels` is an error.
pub fn read_glue_single_with_labels(
    path: impl AsRef<Path>,
    labels: &[&str],
) -> Result<Vec<GlueExample>, DataError> {
    let path = path.as_ref();
    parse_glue_single(&read_text(path)?, path, labels)
}

/// Parses single-sentence GLUE TSV text; `path` is used only in error messages.
pub fn parse_glue_single(
    text: &str,
    path: &Path,
    labels: &[&str],
) -> Result<Vec<GlueExample>, DataError> {
    let text = crate::strip_bom(text);
    let mut lines = text.lines().enumerate();
    let pair = match lines.next().map(|(_, h)| strip_cr(h)) {
        Some("sentence\tlabel") => false,
        Some("sentence1\tsentence2\tlabel") => true,
        Some(header) => {
            return Err(DataError::parse(
                path,
                1,
                format!(
                    "expected header `sentence<TAB>label` or \
                     `sentence1<TAB>sentence2<TAB>label`, found {header:?}"
                ),
            ))
        }
        None => return Err(DataError::parse(path, 1, "empty file (no header)")),
    };
    let columns = if pair { 3 } else { 2 };
    let mut examples = Vec::new();
    for (i, raw) in lines {
        let lineno = i + 1;
        let line = strip_cr(raw);
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != columns {
            return Err(DataError::parse(
                path,
                lineno,
                format!(
                    "expected {columns} tab-separated fields, found {}",
                    fields.len()
                ),
            ));
        }
        let label = fields[columns - 1];
        let label = label_index(labels, label.trim())
            .ok_or_else(|| DataError::parse(path, lineno, format!("unknown label {label:?}")))?;
        examples.push(GlueExample {
            sentence: fields[0].to_string(),
            sentence_b: pair.then(|| fields[1].to_string()),
            label,
        });
    }
    Ok(examples)
}

/// Adds a column named `name` to single-sentence or pair GLUE TSV `text`:
/// `values[i]` at the end of row i (after the header), each line's ending
/// kept. The text is validated as [`parse_glue_single`] does with `labels`;
/// `values` must have one entry per example.
pub fn add_glue_column(
    text: &str,
    path: &Path,
    labels: &[&str],
    name: &str,
    values: &[String],
) -> Result<String, DataError> {
    let examples = parse_glue_single(text, path, labels)?;
    if examples.len() != values.len() {
        return Err(DataError::parse(
            path,
            1,
            format!(
                "{} examples but {} values for column {name:?}",
                examples.len(),
                values.len()
            ),
        ));
    }
    let mut out = String::with_capacity(text.len() + 4 * values.len());
    for (i, chunk) in text.split_inclusive('\n').enumerate() {
        let (body, ending) = crate::conllu::split_ending(chunk);
        out.push_str(body);
        out.push('\t');
        out.push_str(if i == 0 { name } else { &values[i - 1] });
        out.push_str(ending);
    }
    Ok(out)
}
