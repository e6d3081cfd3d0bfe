//! Looking for secrets where kiln writes: every file of a folder, any text.
//! A needle is searched as bytes, so binary files (SQLite) count too.

use std::path::{Path, PathBuf};

/// Extensions of disk images and archives of them: the image is the
/// product of the build (what components leave in the guest is in it), not
/// a text kiln writes.
const IMAGE_EXTENSIONS: &[&str] = &["qcow2", "vmdk", "vhd", "vhdx", "raw", "img", "ova", "gz"];

/// Every regular file under `dir`, recursively (disk images too).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Whether `path` is a disk image (see [`IMAGE_EXTENSIONS`]).
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e))
}

/// The needles `bytes` holds.
pub fn found_in<'n>(bytes: &[u8], needles: &[&'n str]) -> Vec<&'n str> {
    needles
        .iter()
        .copied()
        .filter(|n| !n.is_empty() && bytes.windows(n.len()).any(|w| w == n.as_bytes()))
        .collect()
}

/// Panics when `text` (named `what`) holds one of `needles`, showing where.
pub fn assert_clean(what: &str, bytes: &[u8], needles: &[&str]) {
    let found = found_in(bytes, needles);
    if found.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| found.iter().any(|n| l.contains(n)))
        .take(10)
        .collect();
    panic!(
        "{what} holds the secret(s) {found:?}:\n{}",
        lines.join("\n")
    );
}

/// Checks every file under `dir` but disk images; returns how many files
/// were checked.
pub fn assert_tree_clean(dir: &Path, needles: &[&str]) -> usize {
    let files: Vec<PathBuf> = files_under(dir)
        .into_iter()
        .filter(|p| !is_image(p))
        .collect();
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        assert_clean(&f.display().to_string(), &bytes, needles);
    }
    files.len()
}
