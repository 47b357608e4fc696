//! The restart counter of RFC 5847 §3.2, kept across restarts. The LMA keeps it in its store;
//! the MAG in a file of its state directory ([`CounterFile`]).

use std::io;
use std::path::{Path, PathBuf};

/// A restart counter in a file of its own: one decimal number, replaced atomically (write to a
/// temporary file, then rename).
#[derive(Debug, Clone)]
pub struct CounterFile {
    path: PathBuf,
}

impl CounterFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CounterFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored value; `None` when the file does not exist.
    pub fn read(&self) -> io::Result<Option<u32>> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => s.trim().parse::<u32>().map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("{}: {e}", self.path.display()),
            )),
        }
    }

    pub fn write(&self, n: u32) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, n.to_string())?;
        std::fs::rename(&tmp, &self.path)
    }

    /// The Restart Counter for this start of a daemon that keeps its sessions in a file of its
    /// own (RFC 5847 §3.2): the stored value when that state survived (`state_kept`: the file
    /// is there), so that its peers see no restart and re-register nothing; else incremented,
    /// "only when the ... node loses the state".
    pub fn on_start(&self, state_kept: bool) -> io::Result<u32> {
        match self.read()? {
            Some(n) if state_kept => Ok(n),
            _ => self.bump(),
        }
    }

    /// Increments the stored value (0 when there is none) and returns the new one.
    pub fn bump(&self) -> io::Result<u32> {
        let n = self.read()?.unwrap_or(0).wrapping_add(1);
        self.write(n)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_from_one_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let f = CounterFile::new(dir.path().join("counter"));
        assert_eq!(f.read().unwrap(), None);
        assert_eq!(f.bump().unwrap(), 1);
        assert_eq!(f.bump().unwrap(), 2);
        assert_eq!(f.read().unwrap(), Some(2));
        std::fs::write(f.path(), "two").unwrap();
        let e = f.bump().unwrap_err();
        assert!(e.to_string().contains("counter"), "{e}");
    }

    /// RFC 5847 §3.2: a start that finds its sessions' state keeps the counter; a first start,
    /// or one whose state is gone, increments it.
    #[test]
    fn a_start_with_its_state_kept_keeps_the_counter() {
        let dir = tempfile::tempdir().unwrap();
        let f = CounterFile::new(dir.path().join("counter"));
        assert_eq!(f.on_start(false).unwrap(), 1, "first start");
        assert_eq!(f.on_start(true).unwrap(), 1, "state kept: the same");
        assert_eq!(f.on_start(true).unwrap(), 1);
        assert_eq!(f.on_start(false).unwrap(), 2, "state lost");
        assert_eq!(f.read().unwrap(), Some(2));
        let g = CounterFile::new(dir.path().join("other"));
        assert_eq!(g.on_start(true).unwrap(), 1, "a state without a counter");
    }
}
