//! Reading user-supplied text (pasted lines, error pages, small files) with bounds, so that
//! binary junk, invalid UTF-8 or one enormous line give a clear answer instead of a hang.

use std::io::Read;
use std::path::Path;

/// The most `explain` reads; bigger inputs are logs, for `gwdoctor logs`.
pub const MAX_INPUT: u64 = 64 * 1024 * 1024;
/// A line longer than this is classified on its first `MAX_LINE` bytes.
pub const MAX_LINE: usize = 1024 * 1024;

/// Text read from the user, with what had to be done to make it text.
#[derive(Debug, Default)]
pub struct InputText {
    pub text: String,
    /// The input held NUL bytes (they were dropped).
    pub binary: bool,
    /// The input was not valid UTF-8 (invalid bytes were replaced).
    pub lossy: bool,
}

/// Why input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{name}: cannot read: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
    #[error("{name}: larger than {limit} MiB; use `gwdoctor logs` for log files", limit = MAX_INPUT >> 20)]
    TooLarge { name: String },
}

impl InputText {
    /// Decodes bytes into text, dropping NULs and replacing invalid UTF-8.
    pub fn from_bytes(bytes: Vec<u8>) -> InputText {
        let binary = memchr::memchr(0, &bytes).is_some();
        let bytes = if binary {
            bytes.into_iter().filter(|&b| b != 0).collect()
        } else {
            bytes
        };
        match String::from_utf8(bytes) {
            Ok(text) => InputText {
                text,
                binary,
                lossy: false,
            },
            Err(e) => InputText {
                text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                binary,
                lossy: true,
            },
        }
    }

    /// Reads a file, or standard input for `-`, up to [`MAX_INPUT`] bytes.
    pub fn read(path: &Path) -> Result<InputText, InputError> {
        let name = path.display().to_string();
        let io = |source| InputError::Io {
            name: name.clone(),
            source,
        };
        let mut bytes = Vec::new();
        if path.as_os_str() == "-" {
            std::io::stdin()
                .lock()
                .take(MAX_INPUT + 1)
                .read_to_end(&mut bytes)
                .map_err(io)?;
        } else {
            let file = std::fs::File::open(path).map_err(io)?;
            if file.metadata().map_err(io)?.is_dir() {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "is a directory",
                )));
            }
            file.take(MAX_INPUT + 1)
                .read_to_end(&mut bytes)
                .map_err(io)?;
        }
        if bytes.len() as u64 > MAX_INPUT {
            return Err(InputError::TooLarge { name });
        }
        Ok(InputText::from_bytes(bytes))
    }
}

/// Cuts `line` to at most [`MAX_LINE`] bytes on a character boundary; says whether it cut.
pub fn bounded_line(line: &str) -> (&str, bool) {
    if line.len() <= MAX_LINE {
        return (line, false);
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    (&line[..end], true)
}
