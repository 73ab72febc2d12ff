//! What kind of file a path is, so a reader refuses a FIFO, a device or a
//! directory by its type instead of blocking on it forever (a FIFO), reading
//! without end (`/dev/zero`) or failing with a bare OS error.

use std::path::Path;

/// Why `path` cannot be read as a file: it is a directory, a FIFO, a device
/// or a socket. `None` for a regular file, and for a path that does not exist
/// (opening it reports that). Symlinks are followed.
pub fn not_a_regular_file(path: &Path) -> Option<&'static str> {
    let kind = std::fs::metadata(path).ok()?.file_type();
    if kind.is_file() {
        return None;
    }
    if kind.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if kind.is_char_device() || kind.is_block_device() {
            return Some("a device");
        }
        if kind.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a regular file")
}

/// An io error naming the kind of a path that is not a regular file.
pub fn regular_file_check(path: &Path) -> Result<(), std::io::Error> {
    match not_a_regular_file(path) {
        None => Ok(()),
        Some(kind) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("is {kind}, not a regular file"),
        )),
    }
}
