//! CoNLL-style NER reader (MasakhaNER format): one `token tag` pair per line,
//! separated by whitespace, and a blank line between sentences.

use std::path::Path;

use crate::{label_index, read_text, strip_cr, DataError};

/// Default NER label list (MasakhaNER 1.0 / PIXEL `ner_dataset.py`).
pub const NER_LABELS: [&str; 9] = [
    "O", "B-DATE", "I-DATE", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC",
];

/// One NER sentence: parallel token and tag lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NerSentence {
    pub tokens: Vec<String>,
    pub tags: Vec<String>,
    /// Index of each tag in the label list the file was read with.
    pub tag_ids: Vec<usize>,
}

impl NerSentence {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Reads a NER file with the default [`NER_LABELS`].
pub fn read_ner(path: impl AsRef<Path>) -> Result<Vec<NerSentence>, DataError> {
    read_ner_with_labels(path, &NER_LABELS)
}

/// Reads a NER file; a tag not in `labels` is an error.
pub fn read_ner_with_labels(
    path: impl AsRef<Path>,
    labels: &[&str],
) -> Result<Vec<NerSentence>, DataError> {
    let path = path.as_ref();
    parse_ner(&read_text(path)?, path, labels)
}

/// Parses NER text; `path` is used only in error messages.
pub fn parse_ner(text: &str, path: &Path, labels: &[&str]) -> Result<Vec<NerSentence>, DataError> {
    let text = crate::strip_bom(text);
    let mut sentences = Vec::new();
    let mut current = NerSentence::default();
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = strip_cr(raw);
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [] => {
                if !current.is_empty() {
                    sentences.push(std::mem::take(&mut current));
                }
            }
            [token, tag] => {
                let id = label_index(labels, tag).ok_or_else(|| {
                    DataError::parse(path, lineno, format!("unknown NER tag {tag:?}"))
                })?;
                current.tokens.push(token.to_string());
                current.tags.push(tag.to_string());
                current.tag_ids.push(id);
            }
            _ => {
                return Err(DataError::parse(
                    path,
                    lineno,
                    format!(
                        "expected `token tag` (2 whitespace-separated fields), found {}",
                        fields.len()
                    ),
                ))
            }
        }
    }
    if !current.is_empty() {
        sentences.push(current);
    }
    Ok(sentences)
}

/// Rewrites NER `text` with `tag(sentence, token)` (both 0-based, sentences as
/// [`parse_ner`] numbers them) in place of each gold tag. The token, the
/// whitespace around the tag, blank lines and line endings are copied
/// unchanged. The text is validated as [`parse_ner`] does with `labels`.
pub fn rewrite_ner(
    text: &str,
    path: &Path,
    labels: &[&str],
    mut tag: impl FnMut(usize, usize) -> String,
) -> Result<String, DataError> {
    parse_ner(text, path, labels)?;
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let (mut sentence, mut token) = (0usize, 0usize);
    for chunk in text.split_inclusive('\n') {
        let (body, ending) = crate::conllu::split_ending(chunk);
        let fields: Vec<&str> = body.split_whitespace().collect();
        if let [_, gold] = fields.as_slice() {
            // The tag's byte offset in the line: the slice points into `body`.
            let start = gold.as_ptr() as usize - body.as_ptr() as usize;
            out.push_str(&body[..start]);
            out.push_str(&tag(sentence, token));
            out.push_str(&body[start + gold.len()..]);
            out.push_str(ending);
            token += 1;
        } else {
            // A blank line (parse_ner accepted the text): ends a non-empty sentence.
            if token > 0 {
                sentence += 1;
                token = 0;
            }
            out.push_str(chunk);
        }
    }
    Ok(out)
}
