//! The Debian mirrors this host's apt uses, so a bootstrap downloads from the
//! same (often nearer, or the only reachable) mirror. Parses both apt source
//! formats: one-line (`sources.list`, `*.list`) and deb822 (`*.sources`).

use std::path::{Path, PathBuf};

/// The mirror used when the host names none.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// The security mirror used when the host names none.
pub const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";

/// Errors of reading the host's apt sources.
#[derive(Debug, thiserror::Error)]
#[error("read apt sources {path}: {source}")]
pub struct SourcesError {
    /// The file or folder.
    path: PathBuf,
    /// The cause.
    #[source]
    source: std::io::Error,
}

/// One binary (`deb`) package source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AptSource {
    /// The repository URI, without a trailing `/`.
    pub uri: String,
    /// Its suites (`bookworm`, `bookworm-security`, …).
    pub suites: Vec<String>,
    /// Its components (`main`, `contrib`, …).
    pub components: Vec<String>,
}

fn source(uri: &str, suites: Vec<String>, components: Vec<String>) -> AptSource {
    AptSource {
        uri: uri.trim_end_matches('/').to_string(),
        suites,
        components,
    }
}

/// Parses one-line sources: `deb [opt=v …] URI SUITE [COMPONENT…]`.
/// `deb-src` lines, comments and malformed lines are skipped.
pub fn parse_one_line(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some(rest) = line.strip_prefix("deb") else {
            continue;
        };
        if !rest.starts_with([' ', '\t']) {
            continue; // deb-src, or garbage
        }
        let mut rest = rest.trim_start();
        if let Some(opts) = rest.strip_prefix('[') {
            match opts.split_once(']') {
                Some((_, after)) => rest = after,
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push(source(
                uri,
                vec![suite.to_string()],
                words.map(String::from).collect(),
            ));
        }
    }
    out
}

/// Parses deb822 sources: paragraphs of `Field: value` (continued on lines
/// that start with a space), each with `Types`, `URIs`, `Suites` and
/// `Components`. Paragraphs without `deb` in `Types` or with `Enabled: no`
/// are skipped; a paragraph with several URIs gives one source per URI.
pub fn parse_deb822(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut flush = |fields: &mut Vec<(String, String)>| {
        let get = |name: &str| -> Vec<String> {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.split_whitespace().map(String::from).collect())
                .unwrap_or_default()
        };
        let enabled = get("Enabled").first().is_none_or(|v| v != "no");
        if enabled && get("Types").iter().any(|t| t == "deb") {
            let (suites, components) = (get("Suites"), get("Components"));
            for uri in get("URIs") {
                out.push(source(&uri, suites.clone(), components.clone()));
            }
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    flush(&mut fields);
    out
}

/// The Debian mirrors found among a host's sources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostMirrors {
    /// The main archive (a URI whose path ends in `/debian`).
    pub mirror: Option<String>,
    /// The security archive (`*-security` suites, or a path ending in
    /// `/debian-security`).
    pub security: Option<String>,
}

fn last_segment(uri: &str) -> &str {
    uri.rsplit('/').next().unwrap_or_default()
}

fn fetchable(uri: &str) -> bool {
    ["http://", "https://", "file:/"]
        .iter()
        .any(|s| uri.starts_with(s))
}

/// Picks the first Debian main and security archives from `sources`, in
/// order. Other repositories (vendors, PPAs, snapshots) are not mirrors.
pub fn debian_mirrors(sources: &[AptSource]) -> HostMirrors {
    let is_security = |s: &AptSource| {
        last_segment(&s.uri) == "debian-security"
            || s.suites
                .iter()
                .any(|x| x.ends_with("-security") || x.ends_with("/updates"))
    };
    let usable = || sources.iter().filter(|s| fetchable(&s.uri));
    HostMirrors {
        mirror: usable()
            .find(|s| last_segment(&s.uri) == "debian" && !is_security(s))
            .map(|s| s.uri.clone()),
        security: usable().find(|s| is_security(s)).map(|s| s.uri.clone()),
    }
}

/// The mirrors a bootstrap uses: the recipe's mirror, else the host's, else
/// deb.debian.org; the host's security mirror, else deb.debian.org's.
pub fn choose(recipe_mirror: Option<&str>, host: &HostMirrors) -> (String, String) {
    let mirror = recipe_mirror
        .map(|m| m.trim_end_matches('/').to_string())
        .or_else(|| host.mirror.clone())
        .unwrap_or_else(|| DEFAULT_MIRROR.to_string());
    let security = host
        .security
        .clone()
        .unwrap_or_else(|| DEFAULT_SECURITY_MIRROR.to_string());
    (mirror, security)
}

/// Reads apt's sources under `etc_apt` (normally `/etc/apt`) in apt's order:
/// `sources.list`, then `sources.list.d/*.list` and `*.sources` by name.
/// Missing files are no error.
pub fn read_host_sources(etc_apt: &Path) -> Result<Vec<AptSource>, SourcesError> {
    let read = |path: &Path| match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SourcesError {
            path: path.to_path_buf(),
            source,
        }),
    };
    let mut out = Vec::new();
    if let Some(text) = read(&etc_apt.join("sources.list"))? {
        out.extend(parse_one_line(&text));
    }
    let dir = etc_apt.join("sources.list.d");
    let mut names: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(|source| SourcesError {
                path: dir.clone(),
                source,
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(SourcesError { path: dir, source }),
    };
    names.sort();
    for path in names {
        let parse = match path.extension().and_then(|e| e.to_str()) {
            Some("list") => parse_one_line,
            Some("sources") => parse_deb822,
            _ => continue,
        };
        if let Some(text) = read(&path)? {
            out.extend(parse(&text));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_line_format() {
        let text = "\
# a comment line
deb http://ftp.de.debian.org/debian/ bookworm main contrib # trailing comment
deb-src http://ftp.de.debian.org/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] https://mirror.example/debian bookworm-updates main
deb [ arch=amd64 ] http://security.debian.org/debian-security bookworm-security main
debian http://not.a.source line
deb http://only-uri.example
";
        let s = parse_one_line(text);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(
            s[0],
            AptSource {
                uri: "http://ftp.de.debian.org/debian".into(),
                suites: strings(&["bookworm"]),
                components: strings(&["main", "contrib"]),
            }
        );
        assert_eq!(s[1].uri, "https://mirror.example/debian");
        assert_eq!(s[1].suites, strings(&["bookworm-updates"]));
        assert_eq!(s[2].uri, "http://security.debian.org/debian-security");
        assert_eq!(s[2].components, strings(&["main"]));
    }

    #[test]
    fn deb822_format() {
        // what a Debian 12 cloud image ships, plus the hard parts
        let text = "\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb deb-src
URIs: http://a.example/debian/
 http://b.example/debian
Suites: trixie
Components: main non-free-firmware
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBF...
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb
URIs: http://off.example/debian
Suites: bookworm
Components: main
Enabled: no

types: deb
uris: http://deb.debian.org/debian-security
suites: bookworm-security
components: main
";
        let s = parse_deb822(text);
        let uris: Vec<&str> = s.iter().map(|x| x.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "http://deb.debian.org/debian",
                "http://a.example/debian",
                "http://b.example/debian",
                "http://deb.debian.org/debian-security"
            ]
        );
        assert_eq!(s[0].suites, strings(&["bookworm", "bookworm-updates"]));
        assert_eq!(s[1].components, strings(&["main", "non-free-firmware"]));
        assert_eq!(s[3].suites, strings(&["bookworm-security"]));
    }

    #[test]
    fn mirrors_of_a_host() {
        let mut sources = parse_one_line(
            "\
deb https://packages.vendor.example/apt stable main
deb http://snapshot.debian.org/archive/debian/20250520T000000Z bookworm main
deb http://security.debian.org/ bookworm/updates main
deb http://mirror.lab/debian bookworm main
",
        );
        sources.extend(parse_deb822(
            "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n",
        ));
        assert_eq!(
            debian_mirrors(&sources),
            HostMirrors {
                mirror: Some("http://mirror.lab/debian".into()),
                // the first security source wins, old `/updates` style included
                security: Some("http://security.debian.org".into()),
            }
        );
        assert_eq!(debian_mirrors(&[]), HostMirrors::default());
        let cdrom = parse_one_line("deb cdrom:[Debian 12]/debian bookworm main\n");
        assert_eq!(debian_mirrors(&cdrom).mirror, None);
    }

    #[test]
    fn choosing() {
        let host = HostMirrors {
            mirror: Some("http://h/debian".into()),
            security: None,
        };
        assert_eq!(
            choose(Some("http://r/debian/"), &host),
            ("http://r/debian".into(), DEFAULT_SECURITY_MIRROR.into())
        );
        assert_eq!(choose(None, &host).0, "http://h/debian");
        assert_eq!(
            choose(None, &HostMirrors::default()),
            (DEFAULT_MIRROR.into(), DEFAULT_SECURITY_MIRROR.into())
        );
    }

    #[test]
    fn reads_a_host_tree_in_apt_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sources.list"),
            "deb http://classic/debian bookworm main\n",
        )
        .unwrap();
        let d = dir.path().join("sources.list.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(
            d.join("b.sources"),
            "Types: deb\nURIs: http://b/debian-security\nSuites: bookworm-security\n",
        )
        .unwrap();
        std::fs::write(d.join("a.list"), "deb http://a/debian bookworm main\n").unwrap();
        std::fs::write(
            d.join("c.sources.disabled"),
            "Types: deb\nURIs: http://c/debian\nSuites: x\n",
        )
        .unwrap();
        let uris: Vec<String> = read_host_sources(dir.path())
            .unwrap()
            .into_iter()
            .map(|s| s.uri)
            .collect();
        assert_eq!(
            uris,
            [
                "http://classic/debian",
                "http://a/debian",
                "http://b/debian-security"
            ]
        );
        assert!(read_host_sources(&dir.path().join("missing"))
            .unwrap()
            .is_empty());
    }
}
