//! JSON lines as the `file` sink writes them; blank lines are skipped.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::{At, Entry, ReadError, RecordReader};

pub struct FileReader {
    path: PathBuf,
    lines: BufReader<File>,
    line: u64,
    buf: Vec<u8>,
}

impl FileReader {
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(|source| ReadError::Io {
            what: path.display().to_string(),
            source,
        })?;
        Ok(FileReader {
            path: path.to_path_buf(),
            lines: BufReader::with_capacity(1 << 20, file),
            line: 0,
            buf: Vec::new(),
        })
    }
}

impl RecordReader for FileReader {
    fn next_entry(&mut self) -> Result<Option<Entry>, ReadError> {
        loop {
            self.buf.clear();
            let n = self
                .lines
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| ReadError::Io {
                    what: self.path.display().to_string(),
                    source,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            let text = self.buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            return Ok(Some(Entry {
                value: text.to_vec(),
                at: At::Line(self.line),
                lane: 0,
                stamp: None,
            }));
        }
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn size_hint(&self) -> Option<u64> {
        self.lines.get_ref().metadata().ok().map(|m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_as_in_the_file_and_blank_ones_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.jsonl");
        std::fs::write(&p, "{\"a\":1}\n\n{\"a\":2}\r\n{\"a\":3}").unwrap();
        let mut r = FileReader::open(&p).unwrap();
        let mut got = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            got.push((String::from_utf8(e.value).unwrap(), e.at.to_string()));
        }
        assert_eq!(
            got,
            [
                ("{\"a\":1}".to_string(), "line 1".to_string()),
                ("{\"a\":2}".into(), "line 3".into()),
                ("{\"a\":3}".into(), "line 4".into())
            ]
        );
        assert!(FileReader::open(&dir.path().join("none")).is_err());
    }
}
