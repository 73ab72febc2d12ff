//! Prediction files in the input's own format, for the standard scorers:
//! CoNLL-U with UPOS (POS) or HEAD and DEPREL (parsing) replaced, the NER
//! `token tag` file with the predicted tags, the GLUE TSV with a `prediction`
//! column. Everything else is copied byte for byte. Words that did not fit
//! the strip get a placeholder (`X`, `O`, or `dep` attached to the sentence's
//! root word), counted in [`PredictionFile::placeholders`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pixel_tasks::conllu::rewrite_conllu;
use pixel_tasks::glue::add_glue_column;
use pixel_tasks::ner::rewrite_ner;

use super::data::{Example, Target};
use super::Task;

/// The predictions a file holds: one full-length target per example.
pub struct PredictionFile {
    pub targets: Vec<Target>,
    /// Words that did not fit the strip and got the placeholder.
    pub placeholders: usize,
}

/// The label written for a word that did not fit the strip.
pub fn placeholder_label(task: Task) -> &'static str {
    match task {
        Task::Pos => "X",
        Task::Ner => "O",
        Task::Parse => "dep",
        // QA writes its own JSON (`finetune::qa::write_predictions`) and no placeholders.
        Task::Classify | Task::Qa => "",
    }
}

/// Completes predictions of the rendered words (as `predict` and
/// `predict_trees` give them) to every word of each example. A parse
/// placeholder word attaches to the sentence's predicted root word (to ROOT
/// and then to the first word when no word was rendered), so that each
/// sentence stays a tree.
pub fn complete_predictions(
    task: Task,
    labels: &[String],
    examples: &[Example],
    preds: &[Target],
) -> anyhow::Result<PredictionFile> {
    anyhow::ensure!(
        examples.len() == preds.len(),
        "{} examples but {} predictions",
        examples.len(),
        preds.len()
    );
    let mut placeholders = 0;
    let mut fill = || -> anyhow::Result<usize> {
        let label = placeholder_label(task);
        placeholders += 1;
        match labels.iter().position(|l| l == label) {
            Some(i) => Ok(i),
            None => bail!(
                "a word did not fit the strip and its placeholder label {label:?} \
                 is not among the model's labels"
            ),
        }
    };
    let mut targets = Vec::with_capacity(preds.len());
    for (e, p) in examples.iter().zip(preds) {
        let words = e.words().len();
        let target = match p.clone() {
            Target::Tags(mut tags) => {
                while tags.len() < words {
                    tags.push(fill()?);
                }
                Target::Tags(tags)
            }
            Target::Tree {
                mut heads,
                mut rels,
            } => {
                let root = heads.iter().position(|&h| h == 0).map(|r| r + 1);
                while heads.len() < words {
                    let rel = fill()?;
                    heads.push(match (root, heads.is_empty()) {
                        (Some(r), _) => r,
                        (None, true) => 0,
                        (None, false) => 1,
                    });
                    rels.push(rel);
                }
                Target::Tree { heads, rels }
            }
            other => other,
        };
        targets.push(target);
    }
    Ok(PredictionFile {
        targets,
        placeholders,
    })
}

/// The text of the prediction file for `data` (the file the examples were
/// read from): its own format, with the predicted labels in place.
pub fn prediction_text(
    task: Task,
    labels: &[String],
    data: &Path,
    targets: &[Target],
) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(data).with_context(|| format!("{}", data.display()))?;
    let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    let name = |i: usize| labels.get(i).cloned().unwrap_or_else(|| "_".into());
    let mut missing = None;
    let out = match task {
        Task::Pos | Task::Parse => {
            rewrite_conllu(&text, data, |s, w, cols| match (targets.get(s), task) {
                (Some(Target::Tags(t)), _) if w < t.len() => cols[3] = name(t[w]),
                (Some(Target::Tree { heads, rels }), _) if w < heads.len() => {
                    cols[6] = heads[w].to_string();
                    cols[7] = name(rels[w]);
                }
                _ => missing = Some((s, w)),
            })?
        }
        Task::Ner => rewrite_ner(&text, data, &label_refs, |s, w| match targets.get(s) {
            Some(Target::Tags(t)) if w < t.len() => name(t[w]),
            _ => {
                missing = Some((s, w));
                String::new()
            }
        })?,
        Task::Classify => {
            let values = targets
                .iter()
                .map(|t| match t {
                    Target::Class(c) => Ok(name(*c)),
                    _ => bail!("classification prediction without a class"),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            add_glue_column(&text, data, &label_refs, "prediction", &values)?
        }
        Task::Qa => bail!("qa predictions are JSON, written by finetune::qa::write_predictions"),
    };
    if let Some((s, w)) = missing {
        bail!(
            "{}: sentence {} word {} has no prediction (did the file change while it was evaluated?)",
            data.display(),
            s + 1,
            w + 1
        );
    }
    Ok(out)
}

/// Writes `text` to `path` through `path.tmp` and a rename, so that a failed
/// write never leaves a partial file under `path`.
pub fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = std::fs::write(&tmp, text)
        .with_context(|| format!("cannot write {}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot rename {} to it", tmp.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing predictions to {}", path.display()))
}
