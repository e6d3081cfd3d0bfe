//! Path helpers of the file-system actions: splitting, joining, wildcards and
//! destination resolution. These are target paths (Unix-style strings), never
//! paths of this host, so nothing here touches a file system.

/// `path` without trailing `/`, except that `/` stays `/`.
pub fn trim_trailing_slashes(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() && path.starts_with('/') {
        "/"
    } else {
        trimmed
    }
}

/// The folder that holds `path`: `None` for a bare relative name (the
/// working folder), `/` for a name at the root.
pub fn parent(path: &str) -> Option<&str> {
    let path = trim_trailing_slashes(path);
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// The last segment of `path` (trailing `/` ignored).
pub fn file_name(path: &str) -> &str {
    let path = trim_trailing_slashes(path);
    match path.rfind('/') {
        Some(i) if path != "/" => &path[i + 1..],
        _ => path,
    }
}

/// `dir/name`, without doubling a `/`; an empty `dir` gives `name`.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Whether `path` contains a wildcard.
pub fn has_wildcard(path: &str) -> bool {
    path.contains('*')
}

/// Splits a wildcard path into its folder (`None`: the working folder) and
/// the pattern of its last segment. Wildcards anywhere else are an error.
pub fn split_pattern(path: &str) -> Result<(Option<&str>, &str), String> {
    let trimmed = trim_trailing_slashes(path);
    let dir = parent(trimmed);
    if dir.is_some_and(has_wildcard) {
        return Err(format!(
            "wildcards are only allowed in the last path segment, not in `{path}`"
        ));
    }
    Ok((dir, file_name(trimmed)))
}

/// Whether `name` matches `pattern`, where `*` stands for any run of
/// characters (including none, and including a leading `.`). Every other
/// character matches itself.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    glob_match(pattern, name, false)
}

/// Like [`wildcard_match`]; with `question_mark`, `?` also matches any one
/// character (as S3Upload's Go-style globs do).
pub fn glob_match(pattern: &str, name: &str, question_mark: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // position of the last `*` seen, and where in `name` it started matching
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && (p[pi] == n[ni] || (question_mark && p[pi] == '?')) {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            // let the last `*` swallow one more character
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether a destination names a folder (ends with `/` or `\`).
pub fn ends_with_separator(path: &str) -> bool {
    path.ends_with('/') || path.ends_with('\\')
}

/// Where `source` goes for `destination`: into the folder when the
/// destination ends with a separator (keeping the source's name), else the
/// destination itself.
pub fn resolve_destination(destination: &str, source: &str) -> String {
    if ends_with_separator(destination) {
        let folder = destination.trim_end_matches(['/', '\\']);
        let folder = if folder.is_empty() { "/" } else { folder };
        join(folder, file_name(source))
    } else {
        destination.to_string()
    }
}

/// A lexical normal form for comparing paths: no repeated `/`, no `.`
/// segments, no trailing `/`. `..` is kept (symlinks make it unsafe to fold).
pub fn normalize(path: &str) -> String {
    let absolute = path.starts_with('/');
    let parts: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// An absolute path with `.` and `..` segments folded away lexically, as
/// Go's `filepath.Abs` does (`/a/b/../c` is `/a/c`; `..` stops at `/`).
pub fn clean_absolute(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether `path` is `ancestor` or lies inside it (lexically).
pub fn is_within(path: &str, ancestor: &str) -> bool {
    let (p, a) = (normalize(path), normalize(ancestor));
    if a == "/" {
        return p.starts_with('/');
    }
    p == a || p.strip_prefix(&a).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_trailing_slashes_but_keeps_root() {
        assert_eq!(trim_trailing_slashes("/a/b//"), "/a/b");
        assert_eq!(trim_trailing_slashes("/"), "/");
        assert_eq!(trim_trailing_slashes("///"), "/");
        assert_eq!(trim_trailing_slashes("a"), "a");
    }

    #[test]
    fn parent_and_file_name() {
        assert_eq!(parent("/a/b/c.txt"), Some("/a/b"));
        assert_eq!(parent("/a/b/"), Some("/a"));
        assert_eq!(parent("/c.txt"), Some("/"));
        assert_eq!(parent("c.txt"), None);
        assert_eq!(parent("/"), None);
        assert_eq!(parent("x/y"), Some("x"));
        assert_eq!(file_name("/a/b/c.txt"), "c.txt");
        assert_eq!(file_name("/a/b/"), "b");
        assert_eq!(file_name("c"), "c");
        assert_eq!(file_name("/"), "/");
    }

    #[test]
    fn joins_without_doubling_separators() {
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(join("/a/", "b"), "/a/b");
        assert_eq!(join("/", "b"), "/b");
        assert_eq!(join("", "b"), "b");
    }

    #[test]
    fn wildcard_only_in_last_segment() {
        assert_eq!(split_pattern("/a/b/*.txt"), Ok((Some("/a/b"), "*.txt")));
        assert_eq!(split_pattern("/a/b*/"), Ok((Some("/a"), "b*")));
        assert_eq!(split_pattern("*.log"), Ok((None, "*.log")));
        assert_eq!(split_pattern("/*"), Ok((Some("/"), "*")));
        let err = split_pattern("/a/*/c.txt").unwrap_err();
        assert!(err.contains("last path segment"), "{err}");
        assert!(split_pattern("/x*/y*").is_err());
    }

    #[test]
    fn wildcard_matching() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*", ".hidden"));
        assert!(wildcard_match("*.txt", "a.txt"));
        assert!(wildcard_match("*.txt", ".txt"));
        assert!(!wildcard_match("*.txt", "a.txt.bak"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(wildcard_match("a*b*c", "abc"));
        assert!(!wildcard_match("a*b*c", "acb"));
        assert!(wildcard_match("log-*-2024*", "log-app-2024-01.gz"));
        assert!(wildcard_match("exact", "exact"));
        assert!(!wildcard_match("exact", "exact2"));
        assert!(!wildcard_match("exact", "exac"));
        assert!(wildcard_match("**a", "bba"));
        assert!(wildcard_match("*aab", "aaaab"));
        assert!(!wildcard_match("?", "a"), "only * is special");
        assert!(wildcard_match("?", "?"));
        assert!(wildcard_match("é*", "été"));
    }

    #[test]
    fn destination_with_separator_is_a_folder() {
        assert_eq!(resolve_destination("/d/", "/s/a.txt"), "/d/a.txt");
        assert_eq!(resolve_destination("/d//", "/s/a.txt"), "/d/a.txt");
        assert_eq!(resolve_destination("/d\\", "/s/a.txt"), "/d/a.txt");
        assert_eq!(resolve_destination("/d/", "/s/folder"), "/d/folder");
        assert_eq!(resolve_destination("/", "/s/a.txt"), "/a.txt");
        assert_eq!(resolve_destination("/d/b.txt", "/s/a.txt"), "/d/b.txt");
        assert!(ends_with_separator("/d/"));
        assert!(!ends_with_separator("/d"));
    }

    #[test]
    fn normalizes_lexically() {
        assert_eq!(normalize("/a//b/./c/"), "/a/b/c");
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize("./a/"), "a");
        assert_eq!(normalize("."), ".");
        assert_eq!(normalize("/a/../b"), "/a/../b");
    }

    #[test]
    fn cleans_absolute_paths() {
        assert_eq!(clean_absolute("/work/main/../../tmp/x"), "/tmp/x");
        assert_eq!(clean_absolute("/a/./b//c/"), "/a/b/c");
        assert_eq!(clean_absolute("/../x"), "/x");
        assert_eq!(clean_absolute("/"), "/");
    }

    #[test]
    fn within() {
        assert!(is_within("/a/b", "/a/b"));
        assert!(is_within("/a/b/c", "/a/b/"));
        assert!(is_within("/a/b//c", "/a/./b"));
        assert!(!is_within("/a/bc", "/a/b"));
        assert!(!is_within("/a", "/a/b"));
        assert!(is_within("/x", "/"));
        assert!(is_within("x/y", "x"));
        assert!(!is_within("y", "x"));
    }
}
