//! CoNLL-U reader for POS tagging and dependency parsing.
//!
//! Only syntactic words (lines whose ID is a plain integer) are kept; comment
//! lines (`#`), multiword-token ranges (`3-4`) and empty nodes (`5.1`) are
//! skipped. A blank line ends a sentence. Each word keeps FORM, UPOS, HEAD
//! (0 = root) and the universal part of DEPREL (before any `:`), together
//! with the label indices into [`UPOS_LABELS`] and [`UD_HEAD_LABELS`], and
//! its line number, through which [`rewrite_conllu`] writes predictions into
//! a copy of the file with every other line as it was.

use std::path::Path;

use crate::{label_index, read_text, strip_cr, DataError};

/// The 17 universal POS tags, in the order of `UPOS_LABELS` in the original
/// `src/pixel/utils/datasets.py` (label index = position).
pub const UPOS_LABELS: [&str; 17] = [
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
    "PUNCT", "SCONJ", "SYM", "VERB", "X",
];

/// The 38 dependency relation labels (`_` plus the 37 universal relations), in
/// the order of `UD_HEAD_LABELS` in the original `src/pixel/utils/datasets.py`.
pub const UD_HEAD_LABELS: [&str; 38] = [
    "_",
    "acl",
    "advcl",
    "advmod",
    "amod",
    "appos",
    "aux",
    "case",
    "cc",
    "ccomp",
    "clf",
    "compound",
    "conj",
    "cop",
    "csubj",
    "dep",
    "det",
    "discourse",
    "dislocated",
    "expl",
    "fixed",
    "flat",
    "goeswith",
    "iobj",
    "list",
    "mark",
    "nmod",
    "nsubj",
    "nummod",
    "obj",
    "obl",
    "orphan",
    "parataxis",
    "punct",
    "reparandum",
    "root",
    "vocative",
    "xcomp",
];

/// Index of a UPOS tag in [`UPOS_LABELS`].
pub fn upos_index(tag: &str) -> Option<usize> {
    label_index(&UPOS_LABELS, tag)
}

/// Index of a relation in [`UD_HEAD_LABELS`]; a subtyped relation such as
/// `nmod:poss` maps to its universal part (`nmod`).
pub fn deprel_index(deprel: &str) -> Option<usize> {
    label_index(&UD_HEAD_LABELS, universal_deprel(deprel))
}

/// The part of a DEPREL before the first `:`.
pub fn universal_deprel(deprel: &str) -> &str {
    deprel.split(':').next().unwrap_or(deprel)
}

/// One syntactic word of a CoNLL-U sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// FORM column.
    pub form: String,
    /// UPOS column.
    pub upos: String,
    /// Index of `upos` in [`UPOS_LABELS`].
    pub upos_id: usize,
    /// HEAD column: 0 for the root, else the 1-based index of the head word.
    pub head: usize,
    /// DEPREL column, the part before `:` only.
    pub deprel: String,
    /// Index of `deprel` in [`UD_HEAD_LABELS`].
    pub deprel_id: usize,
    /// 1-based line of this word in the source file.
    pub line: usize,
}

/// One CoNLL-U sentence (syntactic words only, in ID order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sentence {
    pub words: Vec<Word>,
}

impl Sentence {
    pub fn len(&self) -> usize {
        self.words.len()
    }
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
    pub fn forms(&self) -> Vec<&str> {
        self.words.iter().map(|w| w.form.as_str()).collect()
    }
    pub fn upos_ids(&self) -> Vec<usize> {
        self.words.iter().map(|w| w.upos_id).collect()
    }
    pub fn heads(&self) -> Vec<usize> {
        self.words.iter().map(|w| w.head).collect()
    }
    pub fn deprel_ids(&self) -> Vec<usize> {
        self.words.iter().map(|w| w.deprel_id).collect()
    }
}

/// Reads a CoNLL-U file.
pub fn read_conllu(path: impl AsRef<Path>) -> Result<Vec<Sentence>, DataError> {
    let path = path.as_ref();
    parse_conllu(&read_text(path)?, path)
}

/// Parses CoNLL-U text; `path` is used only in error messages.
pub fn parse_conllu(text: &str, path: &Path) -> Result<Vec<Sentence>, DataError> {
    let text = crate::strip_bom(text);
    let mut sentences = Vec::new();
    let mut current = Sentence::default();
    let mut in_sentence = false;
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = strip_cr(raw);
        if line.trim().is_empty() {
            if in_sentence {
                finish_sentence(&mut current, &mut sentences, path, lineno)?;
                in_sentence = false;
            }
            continue;
        }
        in_sentence = true;
        if line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != 10 {
            return Err(DataError::parse(
                path,
                lineno,
                format!("expected 10 tab-separated columns, found {}", cols.len()),
            ));
        }
        let id = cols[0];
        if let Some((a, b)) = id.split_once('-') {
            // Multiword-token range: skipped, but must be well formed.
            match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if a >= 1 && a <= b => continue,
                _ => {
                    return Err(DataError::parse(
                        path,
                        lineno,
                        format!("malformed multiword-token range ID {id:?}"),
                    ))
                }
            }
        }
        if let Some((a, b)) = id.split_once('.') {
            // Empty node: skipped, but must be well formed.
            match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(_), Ok(b)) if b >= 1 => continue,
                _ => {
                    return Err(DataError::parse(
                        path,
                        lineno,
                        format!("malformed empty-node ID {id:?}"),
                    ))
                }
            }
        }
        let id: usize = id
            .parse()
            .map_err(|_| DataError::parse(path, lineno, format!("ID {id:?} is not an integer")))?;
        let expected = current.words.len() + 1;
        if id != expected {
            return Err(DataError::parse(
                path,
                lineno,
                format!("word ID {id} out of sequence (expected {expected})"),
            ));
        }
        let form = cols[1];
        let upos = cols[3];
        let upos_id = upos_index(upos)
            .ok_or_else(|| DataError::parse(path, lineno, format!("unknown UPOS tag {upos:?}")))?;
        let head: usize = cols[6].parse().map_err(|_| {
            DataError::parse(
                path,
                lineno,
                format!("HEAD {:?} is not a non-negative integer", cols[6]),
            )
        })?;
        let deprel = universal_deprel(cols[7]);
        let deprel_id = label_index(&UD_HEAD_LABELS, deprel).ok_or_else(|| {
            DataError::parse(path, lineno, format!("unknown DEPREL {:?}", cols[7]))
        })?;
        current.words.push(Word {
            form: form.to_string(),
            upos: upos.to_string(),
            upos_id,
            head,
            deprel: deprel.to_string(),
            deprel_id,
            line: lineno,
        });
    }
    if in_sentence {
        let end = text.lines().count() + 1;
        finish_sentence(&mut current, &mut sentences, path, end)?;
    }
    Ok(sentences)
}

fn finish_sentence(
    current: &mut Sentence,
    sentences: &mut Vec<Sentence>,
    path: &Path,
    lineno: usize,
) -> Result<(), DataError> {
    let sentence = std::mem::take(current);
    if sentence.is_empty() {
        return Err(DataError::parse(
            path,
            lineno,
            "sentence ends without any word line",
        ));
    }
    let n = sentence.len();
    if let Some(w) = sentence.words.iter().find(|w| w.head > n) {
        return Err(DataError::parse(
            path,
            w.line,
            format!("HEAD {} is beyond the sentence's {n} words", w.head),
        ));
    }
    sentences.push(sentence);
    Ok(())
}

/// Splits one line of `str::split_inclusive('\n')` into its text and its line
/// ending (`\n`, `\r\n` or nothing), so that rewritten lines keep their ending.
pub(crate) fn split_ending(chunk: &str) -> (&str, &str) {
    let body = chunk.strip_suffix('\n').unwrap_or(chunk);
    let body = body.strip_suffix('\r').unwrap_or(body);
    (body, &chunk[body.len()..])
}

/// Rewrites the syntactic-word lines of CoNLL-U `text`: `edit(sentence,
/// word, columns)` gets the 10 columns of word `word` (0-based) of sentence
/// `sentence` (0-based, as [`parse_conllu`] numbers them) and may change them.
/// Every other byte (comments, multiword-token lines, empty nodes, blank
/// lines, line endings) is copied unchanged. The text is validated as
/// [`parse_conllu`] does; `path` is used only in error messages.
pub fn rewrite_conllu(
    text: &str,
    path: &Path,
    mut edit: impl FnMut(usize, usize, &mut [String]),
) -> Result<String, DataError> {
    let sentences = parse_conllu(text, path)?;
    // 1-based line number -> (sentence, word).
    let mut at = vec![None; text.lines().count() + 2];
    for (s, sentence) in sentences.iter().enumerate() {
        for (w, word) in sentence.words.iter().enumerate() {
            at[word.line] = Some((s, w));
        }
    }
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for (i, chunk) in text.split_inclusive('\n').enumerate() {
        match at[i + 1] {
            Some((s, w)) => {
                let (body, ending) = split_ending(chunk);
                let mut cols: Vec<String> = body.split('\t').map(str::to_string).collect();
                edit(s, w, &mut cols);
                out.push_str(&cols.join("\t"));
                out.push_str(ending);
            }
            None => out.push_str(chunk),
        }
    }
    Ok(out)
}
