//! Output directories written whole or not at all: filled under a temporary
//! name beside the target, then swapped in by renames, so a crash, a full disk
//! or an error midway never leaves a half-written checkpoint (the old one stays
//! valid until the new one is complete).

use std::path::Path;

use anyhow::Context;

/// Writes `dir` through `fill`, which gets an empty temporary directory; the
/// result replaces `dir` only when `fill` succeeded.
pub fn write_dir_atomically(
    dir: &Path,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = parent.join(format!(".{name}.tmp"));
    let old = parent.join(format!(".{name}.old"));
    remove_if_present(&tmp)?;
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    if let Err(e) = fill(&tmp) {
        // Best effort: the error that stopped the write is the one to report.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Swap directories: the old one stays valid until the new one is in place.
    remove_if_present(&old)?;
    if dir.exists() {
        std::fs::rename(dir, &old)
            .with_context(|| format!("cannot move the old {} aside", dir.display()))?;
    }
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("cannot move the new {} into place", dir.display()))?;
    remove_if_present(&old)
}

/// Removes a directory left by an earlier write; absent is fine.
fn remove_if_present(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fill_leaves_the_old_directory() {
        let root = std::env::temp_dir().join(format!("pixel-atomic-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("best");
        write_dir_atomically(&dir, |tmp| Ok(std::fs::write(tmp.join("a"), "1")?)).unwrap();
        let err = write_dir_atomically(&dir, |tmp| {
            std::fs::write(tmp.join("a"), "2")?;
            anyhow::bail!("disk full")
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        let left: Vec<_> = std::fs::read_dir(&root).unwrap().collect();
        assert_eq!(left.len(), 1, "temporary directories left: {left:?}");
        write_dir_atomically(&dir, |tmp| Ok(std::fs::write(tmp.join("a"), "3")?)).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "3");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
