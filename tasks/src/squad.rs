//! SQuAD v1.1 JSON (extractive question answering; TyDi QA GoldP ships in this
//! format) and the official SQuAD v1.1 metric.
//!
//! The file is `{"data": [{"title", "paragraphs": [{"context", "qas": [{"id",
//! "question", "answers": [{"text", "answer_start"}]}]}]}]}`; `answer_start` counts
//! characters (Unicode scalar values, as Python indexes strings). A missing or
//! mistyped field, an `answer_start` outside the context and an answer text that
//! does not match the context at its offset are errors naming the file and the
//! question id. A question without any answer cannot be trained or scored: it is
//! skipped and listed in [`SquadFile::skipped`] with the reason.
//!
//! Metric ([`squad_scores`]): exact match and F1 as `evaluate-v1.1.py` computes
//! them: answers normalised (lowercase, ASCII punctuation removed, the words
//! a/an/the removed, whitespace collapsed), F1 over the bag of tokens, the best
//! over the gold answers, averaged over all questions (an unanswered question
//! scores 0) and given in percent.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::read_text;

/// One gold answer: its text and first character in the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquadAnswer {
    pub text: String,
    /// Character (not byte) offset into the context.
    pub answer_start: usize,
}

/// One question with its context and gold answers (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquadQuestion {
    pub id: String,
    pub question: String,
    pub context: String,
    pub answers: Vec<SquadAnswer>,
}

/// A read file: the usable questions and the ones skipped, with why.
#[derive(Debug, Clone, Default)]
pub struct SquadFile {
    pub questions: Vec<SquadQuestion>,
    /// (question id, reason) of every question left out.
    pub skipped: Vec<(String, String)>,
}

/// Error reading a SQuAD file.
#[derive(Debug, thiserror::Error)]
pub enum SquadError {
    #[error(transparent)]
    Read(#[from] crate::DataError),
    #[error("{}: not valid JSON: {reason}", path.display())]
    Json { path: PathBuf, reason: String },
    /// `question` is the id, or a position (`data[3].paragraphs[0].qas[2]`) when the id itself is missing.
    #[error("{}: question {question}: {message}", path.display())]
    Question {
        path: PathBuf,
        question: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Structure { path: PathBuf, message: String },
}

/// Reads a SQuAD v1.1 file.
pub fn read_squad(path: impl AsRef<Path>) -> Result<SquadFile, SquadError> {
    let path = path.as_ref();
    parse_squad(&read_text(path)?, path)
}

/// Parses SQuAD v1.1 JSON text; `path` is used in error messages only.
pub fn parse_squad(text: &str, path: &Path) -> Result<SquadFile, SquadError> {
    let text = crate::strip_bom(text);
    let root: Value = serde_json::from_str(text).map_err(|e| SquadError::Json {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let structure = |message: String| SquadError::Structure {
        path: path.to_path_buf(),
        message,
    };
    let data = root
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| structure("no \"data\" list at the top level".into()))?;
    let mut out = SquadFile::default();
    for (ai, article) in data.iter().enumerate() {
        let paragraphs = article
            .get("paragraphs")
            .and_then(Value::as_array)
            .ok_or_else(|| structure(format!("data[{ai}]: no \"paragraphs\" list")))?;
        for (pi, para) in paragraphs.iter().enumerate() {
            let at = format!("data[{ai}].paragraphs[{pi}]");
            let context = para
                .get("context")
                .and_then(Value::as_str)
                .ok_or_else(|| structure(format!("{at}: no \"context\" string")))?;
            let qas = para
                .get("qas")
                .and_then(Value::as_array)
                .ok_or_else(|| structure(format!("{at}: no \"qas\" list")))?;
            let context_chars: Vec<char> = context.chars().collect();
            for (qi, qa) in qas.iter().enumerate() {
                let id = qa.get("id").and_then(Value::as_str).map(str::to_string);
                let name = id.clone().unwrap_or_else(|| format!("{at}.qas[{qi}]"));
                let err = |message: String| SquadError::Question {
                    path: path.to_path_buf(),
                    question: name.clone(),
                    message,
                };
                let id = id.ok_or_else(|| err("no \"id\" string".into()))?;
                let question = qa
                    .get("question")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err("no \"question\" string".into()))?;
                let answers = qa
                    .get("answers")
                    .and_then(Value::as_array)
                    .ok_or_else(|| err("no \"answers\" list".into()))?;
                let answers = answers
                    .iter()
                    .enumerate()
                    .map(|(k, a)| {
                        read_answer(a, &context_chars).map_err(|m| err(format!("answer {k}: {m}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if answers.is_empty() {
                    out.skipped.push((id, "no gold answer".into()));
                    continue;
                }
                out.questions.push(SquadQuestion {
                    id,
                    question: question.to_string(),
                    context: context.to_string(),
                    answers,
                });
            }
        }
    }
    Ok(out)
}

fn read_answer(a: &Value, context: &[char]) -> Result<SquadAnswer, String> {
    let text = a
        .get("text")
        .and_then(Value::as_str)
        .ok_or("no \"text\" string")?;
    let start = a
        .get("answer_start")
        .and_then(Value::as_u64)
        .ok_or("no non-negative integer \"answer_start\"")? as usize;
    let len = text.chars().count();
    if start + len > context.len() {
        return Err(format!(
            "answer_start {start} + {len} characters is outside the context ({} characters)",
            context.len()
        ));
    }
    let found: String = context[start..start + len].iter().collect();
    if found != text {
        return Err(format!(
            "text {text:?} does not match the context at answer_start {start} ({found:?})"
        ));
    }
    Ok(SquadAnswer {
        text: text.to_string(),
        answer_start: start,
    })
}

/// `normalize_answer` of the official script: lowercase, drop ASCII punctuation,
/// replace the words a/an/the by a space, collapse whitespace.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    // `re.sub(r'\b(a|an|the)\b', ' ', text)`: a whole run of word characters.
    let mut no_articles = String::with_capacity(no_punct.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if matches!(word.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in no_punct.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut no_articles);
            no_articles.push(c);
        }
    }
    flush(&mut word, &mut no_articles);
    no_articles.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Exact match of the normalised answers (1.0 or 0.0).
pub fn exact_match(prediction: &str, gold: &str) -> f64 {
    (normalize_answer(prediction) == normalize_answer(gold)) as u8 as f64
}

/// Token-bag F1 of the normalised answers (0 when nothing is shared).
pub fn f1_score(prediction: &str, gold: &str) -> f64 {
    let (p, g) = (normalize_answer(prediction), normalize_answer(gold));
    let (p, g): (Vec<&str>, Vec<&str>) = (
        p.split_whitespace().collect(),
        g.split_whitespace().collect(),
    );
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for t in &g {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &p {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / p.len() as f64;
    let recall = same as f64 / g.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Exact match and F1 in percent, and how many questions had no prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SquadScores {
    pub exact_match: f64,
    pub f1: f64,
    pub questions: usize,
    pub unanswered: usize,
}

/// The official v1.1 evaluation of `predictions` (question id -> answer text)
/// over every question of `questions`.
pub fn squad_scores(
    questions: &[SquadQuestion],
    predictions: &BTreeMap<String, String>,
) -> SquadScores {
    let (mut em, mut f1, mut unanswered) = (0.0, 0.0, 0);
    for q in questions {
        let Some(pred) = predictions.get(&q.id) else {
            unanswered += 1;
            continue;
        };
        let best = |f: fn(&str, &str) -> f64| {
            q.answers
                .iter()
                .map(|a| f(pred, &a.text))
                .fold(0.0, f64::max)
        };
        em += best(exact_match);
        f1 += best(f1_score);
    }
    let n = questions.len().max(1) as f64;
    SquadScores {
        exact_match: 100.0 * em / n,
        f1: 100.0 * f1 / n,
        questions: questions.len(),
        unanswered,
    }
}
