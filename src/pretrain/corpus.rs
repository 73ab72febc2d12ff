//! Reading pretraining text: a file, a directory of files, or CoNLL-U
//! (`# text = ...` lines), split into non-empty lines. Invalid UTF-8 lines are
//! skipped and counted, files that are not text are skipped and named, never
//! silently dropped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pixel_tasks::files::not_a_regular_file;

/// The bundled default corpus (see data/corpus/README.md).
pub const DEFAULT_CORPUS: &str = include_str!("../../data/corpus/kjv-selections.txt");

/// Lines of text and what was skipped while reading them.
#[derive(Debug, Default)]
pub struct Corpus {
    pub lines: Vec<String>,
    pub files: usize,
    pub invalid_utf8_lines: usize,
    /// Files a directory walk did not read, each with the reason (not a
    /// regular file, not text, unreadable, a symlink loop); hidden files and
    /// directories (`.git`, ...) are counted in `hidden`, not listed.
    pub skipped: Vec<(PathBuf, String)>,
    pub hidden: usize,
}

/// A file with a NUL byte in its first 8 KiB is not text (an image, an
/// archive, a checkpoint) and is skipped whole rather than line by line.
const BINARY_SNIFF: usize = 8192;

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

    /// Read a file or every file under a directory (sorted, recursive;
    /// symlinks are followed, each directory once, so a link loop ends).
    /// `.conllu` files contribute their `# text = ` lines. A path given
    /// directly must be a regular text file; in a directory, other files are
    /// skipped and listed in `skipped` with the reason.
    pub fn load(path: &Path) -> anyhow::Result<Corpus> {
        let mut corpus = Corpus::default();
        let mut files = Vec::new();
        if path.is_dir() {
            let mut seen = HashSet::new();
            collect_files(path, &mut files, &mut seen, &mut corpus)?;
            files.sort();
        } else if !path.exists() {
            bail!("corpus {} does not exist", path.display());
        } else if let Some(kind) = not_a_regular_file(path) {
            bail!(
                "corpus {} is {kind}, not a text file or a directory",
                path.display()
            );
        } else {
            files.push(path.to_path_buf());
        }
        let walked = path.is_dir();
        for f in &files {
            let bytes = match std::fs::read(f) {
                Ok(b) => b,
                Err(e) if walked => {
                    corpus.skipped.push((f.clone(), format!("unreadable: {e}")));
                    continue;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot read corpus file {}", f.display()))
                }
            };
            if bytes[..bytes.len().min(BINARY_SNIFF)].contains(&0) {
                let why = "not text (a NUL byte in its first 8 KiB)";
                if !walked {
                    bail!("corpus {} is {why}", f.display());
                }
                corpus.skipped.push((f.clone(), why.into()));
                continue;
            }
            let conllu = f.extension().is_some_and(|e| e == "conllu");
            corpus.files += 1;
            let text = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&bytes);
            for raw in text.split(|&b| b == b'\n') {
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
                "corpus {} holds no text lines ({} files read, {} invalid UTF-8 lines skipped, {} files skipped{})",
                path.display(),
                corpus.files,
                corpus.invalid_utf8_lines,
                corpus.skipped.len(),
                corpus.skipped.first().map_or(String::new(), |(p, why)| format!(
                    ", e.g. {}: {why}",
                    p.display()
                ))
            );
        }
        Ok(corpus)
    }

    /// The skipped files, one `path: reason` line each (the first `max`).
    pub fn skipped_report(&self, max: usize) -> Vec<String> {
        let mut out: Vec<String> = self
            .skipped
            .iter()
            .take(max)
            .map(|(p, why)| format!("{}: {why}", p.display()))
            .collect();
        if self.skipped.len() > max {
            out.push(format!("... and {} more", self.skipped.len() - max));
        }
        out
    }
}

/// Files under `dir`, recursively. `seen` holds the canonical paths of the
/// directories entered, so a symlink back up the tree is skipped (and said)
/// instead of walked forever.
fn collect_files(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    seen: &mut HashSet<PathBuf>,
    corpus: &mut Corpus,
) -> anyhow::Result<()> {
    let canonical = dir
        .canonicalize()
        .with_context(|| format!("cannot read corpus directory {}", dir.display()))?;
    if !seen.insert(canonical) {
        corpus.skipped.push((
            dir.to_path_buf(),
            "a directory already walked (a symlink loop or a second link)".into(),
        ));
        return Ok(());
    }
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read corpus directory {}", dir.display()))?;
    let mut entries: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read corpus directory {}", dir.display()))?;
    entries.sort();
    for p in entries {
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            corpus.hidden += 1;
            continue;
        }
        match std::fs::metadata(&p) {
            Err(e) => corpus.skipped.push((p, format!("unreadable: {e}"))),
            Ok(m) if m.is_dir() => collect_files(&p, out, seen, corpus)?,
            Ok(_) => match not_a_regular_file(&p) {
                Some(kind) => corpus
                    .skipped
                    .push((p, format!("{kind}, not a regular file"))),
                None => out.push(p),
            },
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

    #[cfg(unix)]
    #[test]
    fn walks_skip_loops_fifos_and_binaries_and_say_so() {
        let dir = std::env::temp_dir().join(format!("pixel-corpus-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub/.git")).unwrap();
        std::fs::write(dir.join("sub/a.txt"), "\u{feff}some text\n").unwrap();
        std::fs::write(dir.join("sub/.git/HEAD"), "ref: main\n").unwrap();
        std::fs::write(dir.join("image.png"), b"\x89PNG\r\n\x1a\n\0\0\0").unwrap();
        std::os::unix::fs::symlink(&dir, dir.join("sub/loop")).unwrap();
        let fifo = dir.join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let c = Corpus::load(&dir).unwrap();
        assert_eq!(c.lines, vec!["some text"]);
        assert_eq!(c.hidden, 1);
        let report = c.skipped_report(10).join("\n");
        assert!(report.contains("image.png: not text"), "{report}");
        assert!(
            report.contains("loop: a directory already walked"),
            "{report}"
        );
        if made.is_ok_and(|s| s.success()) {
            assert!(report.contains("pipe: a FIFO (named pipe)"), "{report}");
            let err = Corpus::load(&fifo).unwrap_err().to_string();
            assert!(err.contains("is a FIFO"), "{err}");
        }
        let err = Corpus::load(&dir.join("image.png"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not text"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
