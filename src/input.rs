//! Reading topology files: from a path or standard input, with a size limit.

use std::io::Read;

/// Larger files are refused before parsing; a 10,000-node topology is about 1 MiB.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// The bytes of `path` (`-` is standard input) and the name to show for it.
pub fn read(path: &str) -> Result<(String, Vec<u8>), String> {
    let mut bytes = Vec::new();
    let name = if path == "-" {
        std::io::stdin()
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        "<stdin>".to_string()
    } else {
        let file = std::fs::File::open(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read `{path}`: {e}"))?;
        if meta.is_dir() {
            return Err(format!("cannot read `{path}`: it is a directory"));
        }
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read `{path}`: {e}"))?;
        path.to_string()
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "`{name}` is larger than {} MiB; a topology file is a few hundred KiB at most — is this the right file?",
            MAX_FILE_BYTES / (1024 * 1024)
        ));
    }
    Ok((name, bytes))
}
