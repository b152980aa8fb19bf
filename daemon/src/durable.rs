//! Files that must survive a power cut: a whole-file replace (write, fsync,
//! rename, fsync of the directory) and the check that storage takes writes.
use std::{fs, io, io::Write, path::Path};

/// Replaces `path` whole with `data`: a reader sees the old file or the
/// new one, never a mix, and after return the new one survives a power
/// cut. The temporary file is `path` with `.tmp` appended, in the same
/// directory (a rename must not cross file systems).
pub fn replace(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(dir.unwrap_or(Path::new(".")))
}

/// Makes the names in `dir` (a create, rename or unlink) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Writes, syncs and removes a probe file under `dir`: Ok only when the
/// storage really takes writes (not read-only, not full, not shut down).
pub fn storage_writable(dir: &Path) -> Result<(), NotWritable> {
    let path = dir.join(".fulmar-probe");
    let result = fs::write(&path, b"probe")
        .and_then(|_| fs::File::open(&path)?.sync_all())
        .and_then(|_| fs::remove_file(&path));
    result.map_err(|source| NotWritable { path, source })
}

#[derive(Debug, thiserror::Error)]
#[error("storage not writable: {}: {source}", path.display())]
pub struct NotWritable {
    pub path: std::path::PathBuf,
    pub source: io::Error,
}

/// For callers that report errors as text.
impl From<NotWritable> for String {
    fn from(e: NotWritable) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_swaps_the_whole_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("fulmar-durable-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        replace(&path, b"one").unwrap();
        replace(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert!(!dir.join("state.tmp").exists());
        assert!(storage_writable(&dir).is_ok());
        assert!(storage_writable(&dir.join("missing")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
