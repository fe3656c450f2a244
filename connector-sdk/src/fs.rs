//! File-system steps for state and output files: private directories and files, durable
//! directory entries, and cutting a partial last line left by an interrupted write. Shared by
//! the host's offset store and the file sink and dead-letter queue.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Removes a partial last line. Every acknowledged write was whole lines, so a tail without
/// its newline can only be the remains of a write that was interrupted (`kill -9`, a full
/// disk) and never acknowledged: its records will be written again. `what` names the writer
/// in the warning.
pub fn cut_torn_tail(file: &File, what: &str) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut f = file;
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                tracing::warn!(
                    bytes = len - keep,
                    "{what}: removing a partial last line left by an interrupted write"
                );
                file.set_len(keep)?;
            }
            return Ok(());
        }
        end = start;
    }
    tracing::warn!(
        bytes = len,
        "{what}: removing a partial last line left by an interrupted write"
    );
    file.set_len(0)
}

/// Makes the directory fsync its entries, so a file or directory just created in it survives
/// a crash of the machine.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents with mode 0700 (state may hold record contents) and
/// fsyncs the parent of each directory it creates. An existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_private_dir(parent)?;
    }
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    match b.create(dir) {
        Ok(()) => sync_dir(dir.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `path` for appending (and reading, to cut a torn tail), creating it with mode 0600
/// and its directory with 0700; when the file is new its directory is fsynced so the entry
/// itself is durable.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    let dir = path.parent().unwrap_or(Path::new(""));
    create_private_dir(dir)?;
    let mut o = OpenOptions::new();
    o.read(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.clone().create_new(true).open(path) {
        Ok(f) => {
            sync_dir(dir)?;
            Ok(f)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => o.open(path),
        Err(e) => Err(e),
    }
}
