//! Reading pretraining text: a file, a directory of files, or CoNLL-U
//! (`# text = ...` lines), split into non-empty lines. Invalid UTF-8 lines are
//! skipped and counted, never silently dropped.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The bundled default corpus (see data/corpus/README.md).
pub const DEFAULT_CORPUS: &str = include_str!("../../data/corpus/kjv-selections.txt");

/// Lines of text and what was skipped while reading them.
#[derive(Debug, Default)]
pub struct Corpus {
    pub lines: Vec<String>,
    pub files: usize,
    pub invalid_utf8_lines: usize,
}

impl Corpus {
    /// The bundled corpus.
    pub fn bundled() -> Corpus {
        let mut c = Corpus {
            files: 1,
            ..Default::default()
        };
        c.lines = DEFAULT_CORPUS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        c
    }

    /// Read a file or every file under a directory (sorted, recursive).
    /// `.conllu` files contribute their `# text = ` lines.
    pub fn load(path: &Path) -> anyhow::Result<Corpus> {
        let mut files = Vec::new();
        if path.is_dir() {
            collect_files(path, &mut files)?;
            files.sort();
        } else if path.is_file() {
            files.push(path.to_path_buf());
        } else {
            bail!("corpus {} does not exist", path.display());
        }
        let mut corpus = Corpus::default();
        for f in &files {
            let bytes = std::fs::read(f)
                .with_context(|| format!("cannot read corpus file {}", f.display()))?;
            let conllu = f.extension().is_some_and(|e| e == "conllu");
            corpus.files += 1;
            for raw in bytes.split(|&b| b == b'\n') {
                let Ok(line) = std::str::from_utf8(raw) else {
                    corpus.invalid_utf8_lines += 1;
                    continue;
                };
                let line = line.trim();
                let text = if conllu {
                    match line.strip_prefix("# text = ") {
                        Some(t) => t.trim(),
                        None => continue,
                    }
                } else {
                    line
                };
                if !text.is_empty() {
                    corpus.lines.push(text.to_string());
                }
            }
        }
        if corpus.lines.is_empty() {
            bail!(
                "corpus {} holds no text lines ({} files read, {} invalid UTF-8 lines skipped)",
                path.display(),
                corpus.files,
                corpus.invalid_utf8_lines
            );
        }
        Ok(corpus)
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read corpus directory {}", dir.display()))?;
    for e in entries {
        let p = e?.path();
        if p.is_dir() {
            collect_files(&p, out)?;
        } else if !p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_corpus_has_thousands_of_lines() {
        let c = Corpus::bundled();
        assert!(c.lines.len() > 5000, "{}", c.lines.len());
        assert!(c.lines.iter().all(|l| !l.trim().is_empty()));
    }

    #[test]
    fn reads_files_conllu_and_counts_invalid_utf8() {
        let dir = std::env::temp_dir().join(format!("pixel-corpus-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(
            dir.join("a.txt"),
            b"first line\n\n  second line  \n\xff\xfe bad\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("sub/b.conllu"),
            "# sent_id = 1\n# text = A parsed sentence.\n1\tA\ta\tDET\t_\t_\t0\troot\t_\t_\n",
        )
        .unwrap();
        let c = Corpus::load(&dir).unwrap();
        assert_eq!(
            c.lines,
            vec!["first line", "second line", "A parsed sentence."]
        );
        assert_eq!(c.invalid_utf8_lines, 1);
        assert_eq!(c.files, 2);
        std::fs::write(dir.join("sub/b.conllu"), "").unwrap();
        std::fs::write(dir.join("a.txt"), "\n\n").unwrap();
        assert!(Corpus::load(&dir)
            .unwrap_err()
            .to_string()
            .contains("holds no text lines"));
        assert!(Corpus::load(&dir.join("missing"))
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
