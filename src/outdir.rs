//! An output folder of `apim build`: what a build would change in it, and applying that.
//!
//! A manifest inside the folder records the files apim wrote; a build deletes only those,
//! never a file someone else put there.

use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub const MANIFEST: &str = ".apim-build.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Create,
    Change,
    Delete,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Change => "change",
            Kind::Delete => "delete",
        }
    }
}

#[derive(Debug)]
pub struct Change {
    pub path: String,
    pub kind: Kind,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// The files a previous build wrote, from its manifest.
pub fn written_before(dir: &Path) -> BTreeSet<String> {
    let Ok(text) = std::fs::read_to_string(dir.join(MANIFEST)) else {
        return BTreeSet::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return BTreeSet::new();
    };
    v["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str())
        // Only plain relative paths: a tampered manifest must not reach outside the folder.
        .filter(|f| {
            !f.starts_with('/') && !f.split('/').any(|part| part == ".." || part.is_empty())
        })
        .map(String::from)
        .collect()
}

/// What writing `files` into `dir` would change, in path order.
pub fn changes(dir: &Path, files: &BTreeMap<String, String>) -> Vec<Change> {
    let mut out = Vec::new();
    for (path, new) in files {
        match std::fs::read(dir.join(path)) {
            Ok(old) if old == new.as_bytes() => {}
            Ok(old) => out.push(Change {
                path: path.clone(),
                kind: Kind::Change,
                old: Some(String::from_utf8_lossy(&old).into_owned()),
                new: Some(new.clone()),
            }),
            Err(_) => out.push(Change {
                path: path.clone(),
                kind: Kind::Create,
                old: None,
                new: Some(new.clone()),
            }),
        }
    }
    for path in written_before(dir) {
        if files.contains_key(&path) {
            continue;
        }
        if let Ok(old) = std::fs::read(dir.join(&path)) {
            out.push(Change {
                path,
                kind: Kind::Delete,
                old: Some(String::from_utf8_lossy(&old).into_owned()),
                new: None,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Applies `changes` and records `files` in the manifest.
pub fn apply(
    dir: &Path,
    files: &BTreeMap<String, String>,
    changes: &[Change],
) -> Result<(), String> {
    let fail = |what: &str, path: &Path, e: std::io::Error| {
        format!("cannot {what} `{}`: {e}", path.display())
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("create", dir, e))?;
    for c in changes {
        let path = dir.join(&c.path);
        match (&c.kind, &c.new) {
            (Kind::Delete, _) => {
                std::fs::remove_file(&path).map_err(|e| fail("delete", &path, e))?;
                // Folders left empty by the deletion go too.
                let mut parent = path.parent();
                while let Some(p) = parent.filter(|p| *p != dir) {
                    if std::fs::remove_dir(p).is_err() {
                        break;
                    }
                    parent = p.parent();
                }
            }
            (_, Some(text)) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| fail("create", parent, e))?;
                }
                std::fs::write(&path, text).map_err(|e| fail("write", &path, e))?;
            }
            (_, None) => {}
        }
    }
    let manifest = json!({
        "generator": concat!("apim ", env!("CARGO_PKG_VERSION")),
        "files": files.keys().collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    std::fs::write(dir.join(MANIFEST), format!("{text}\n"))
        .map_err(|e| fail("write", &dir.join(MANIFEST), e))
}

/// A unified diff of one change, with `a/` and `b/` paths like git's.
pub fn diff(c: &Change) -> String {
    let old = c.old.as_deref().unwrap_or("");
    let new = c.new.as_deref().unwrap_or("");
    let a = if c.kind == Kind::Create {
        "/dev/null".to_string()
    } else {
        format!("a/{}", c.path)
    };
    let b = if c.kind == Kind::Delete {
        "/dev/null".to_string()
    } else {
        format!("b/{}", c.path)
    };
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&a, &b)
        .to_string()
}
