//! The one place where secrets are taken out of text: every sink kiln
//! writes or serves (console logs, reports, the manifest, event files,
//! `kiln.log`, the catalog, `serve.log`, API answers, notifications,
//! terminal errors) passes its text through here.
//!
//! Two kinds of secrets are masked with [`MASK`]:
//!
//! - **Known values**, in a process-wide registry ([`register`]): the values
//!   of secret recipe parameters (each list item and the joined value),
//!   webhook URLs, and the AWS secret key and session token of the
//!   environment. `kiln serve` runs several builds in one process, so the
//!   registry is global: a value once registered is masked in every text of
//!   the process from then on, whichever build it came from. Each value is
//!   also masked in the forms it takes in a URL (percent-encoded), in JSON
//!   (escaped) and in `set -x` output (single quotes as `'\''`). Overlapping
//!   and adjacent occurrences are masked as one.
//! - **Credentials recognised by their shape**, whoever wrote them: the
//!   userinfo of a URL (`https://user:***@host`, `https://***@host`), query
//!   parameters and `NAME=value` assignments whose name says secret
//!   (`token`, `key`, `password`, `secret`, `signature`, `sig`,
//!   `X-Amz-Signature`, `X-Amz-Credential`, `X-Amz-Security-Token`,
//!   `access_token`, `AWS_SECRET_ACCESS_KEY=`, …), `Authorization:` header
//!   values and bearer tokens, and AWS access key ids (`AKIA…`, `ASIA…`).
//!
//! Text that arrives in pieces (a process's output, read 8 KiB at a time)
//! goes through a [`StreamRedactor`], which holds back what could be the
//! start of a secret or of a credential until the next piece or the end.
//! JSON goes through [`json`], string by string, so a mask never breaks the
//! document's syntax.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use regex::{Captures, Regex};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// How much of an unfinished line a [`StreamRedactor`] holds back so that a
/// credential recognised by its shape (a URL, an `Authorization:` header) is
/// seen whole. A line longer than this without a line break is cut at its
/// last whitespace, or, with none, here.
pub const LINE_HOLD: usize = 16 * 1024;

/// Environment variables whose values are secrets wherever they show.
const SECRET_ENV: &[&str] = &["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];

/// The registry of known secret values, compiled for search.
struct Known {
    values: BTreeSet<String>,
    /// Every value and its variants; `None` when there is none.
    search: Option<AhoCorasick>,
    /// The length in bytes of the longest value or variant.
    max_len: usize,
}

impl Known {
    fn compile(values: BTreeSet<String>) -> Known {
        let mut patterns: BTreeSet<String> = BTreeSet::new();
        for v in &values {
            patterns.extend(variants(v));
        }
        let max_len = patterns.iter().map(String::len).max().unwrap_or(0);
        let search = if patterns.is_empty() {
            None
        } else {
            // Standard match semantics: overlapping matches are all found.
            // Building fails only past 2^31 automaton states; the values
            // come from files read with a size cap, far below that.
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
                    .expect("the secret values fit one automaton"),
            )
        };
        Known {
            values,
            search,
            max_len,
        }
    }

    /// The byte ranges of every occurrence of a known value in `hay`,
    /// overlapping and adjacent ones merged, in order.
    fn ranges(&self, hay: &[u8]) -> Vec<(usize, usize)> {
        let Some(ac) = &self.search else {
            return Vec::new();
        };
        let mut found: Vec<(usize, usize)> = ac
            .find_overlapping_iter(hay)
            .map(|m| (m.start(), m.end()))
            .collect();
        found.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(found.len());
        for (s, e) in found {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    /// `text` with every known value masked.
    fn mask_values<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let ranges = self.ranges(text.as_bytes());
        if ranges.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (s, e) in ranges {
            // values are whole UTF-8 strings: matches start and end on
            // character boundaries
            out.push_str(&text[at..s]);
            out.push_str(MASK);
            at = e;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }
}

/// The forms a secret value takes in the texts kiln sees.
fn variants(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    let json = serde_json::to_string(value).unwrap_or_default();
    out.push(json[1..json.len() - 1].to_string());
    out.push(percent_encode(value));
    out.push(value.replace('\'', "'\\''"));
    out.retain(|v| !v.is_empty());
    out.sort();
    out.dedup();
    out
}

/// Percent-encodes every byte but the unreserved ones (RFC 3986).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn registry() -> &'static RwLock<Arc<Known>> {
    static KNOWN: OnceLock<RwLock<Arc<Known>>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let values = SECRET_ENV
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .filter(|v| is_maskable(v))
            .collect();
        RwLock::new(Arc::new(Known::compile(values)))
    })
}

fn known() -> Arc<Known> {
    registry().read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Whether a value is worth masking: not empty, not only whitespace (which
/// would mask every space of every text).
fn is_maskable(value: &str) -> bool {
    !value.trim().is_empty()
}

/// Adds secret values to the process-wide registry: from now on they are
/// masked in every text of this process. Empty and whitespace-only values
/// are ignored.
pub fn register<S: AsRef<str>>(values: impl IntoIterator<Item = S>) {
    let new: Vec<String> = values
        .into_iter()
        .map(|v| v.as_ref().to_string())
        .filter(|v| is_maskable(v))
        .collect();
    let current = known();
    if new.iter().all(|v| current.values.contains(v)) {
        return;
    }
    let mut guard = registry().write().unwrap_or_else(|e| e.into_inner());
    let mut values = guard.values.clone();
    values.extend(new);
    if values.len() != guard.values.len() {
        *guard = Arc::new(Known::compile(values));
    }
}

/// `text` with every known secret value and every credential recognised by
/// its shape masked.
pub fn text(text: &str) -> String {
    redact_with(text, &known())
}

fn redact_with(text: &str, known: &Known) -> String {
    let masked = known.mask_values(text);
    mask_shapes(&masked).into_owned()
}

struct Shapes {
    userinfo: Regex,
    query: Regex,
    assignment: Regex,
    authorization: Regex,
    bearer: Regex,
    aws_key_id: Regex,
}

fn shapes() -> &'static Shapes {
    static SHAPES: OnceLock<Shapes> = OnceLock::new();
    SHAPES.get_or_init(|| {
        let re = |p: &str| Regex::new(p).expect("the redaction patterns are valid");
        Shapes {
            // scheme://userinfo@ — greedy, so a raw `@` in a password is
            // masked with it; userinfo never holds `/`, `?`, `#` or spaces
            userinfo: re(r#"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s/?#"'<>@]*(?:@[^\s/?#"'<>@]*)*)@"#),
            query: re(r#"([?&;])([A-Za-z0-9_.\-]+)=([^&#\s"'<>]*)"#),
            assignment: re(
                r#"(?i)\b([A-Za-z0-9_\-]*(?:passw(?:or)?d|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|signature|credential)[A-Za-z0-9_\-]*)(\s*=\s*)("[^"]*"|'[^']*'|[^\s&#"'<>,;]+)"#,
            ),
            authorization: re(
                r#"(?i)\b((?:proxy-)?authorization\s*[:=]\s*(?:(?:bearer|basic|token|digest|aws4-hmac-sha256)\s+)?)([^\s"']+)"#,
            ),
            bearer: re(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/\-]{8,}=*)"),
            aws_key_id: re(r"\b(?:AKIA|ASIA|ABIA|ACCA|AROA|AIDA|ANPA|ANVA|AGPA|AIPA)[A-Z0-9]{16}\b"),
        }
    })
}

/// Whether a query parameter's name says its value is a secret.
fn secret_name(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    const WORDS: &[&str] = &[
        "token",
        "secret",
        "passw",
        "signature",
        "credential",
        "apikey",
        "accesskey",
        "privatekey",
        "sessionkey",
    ];
    WORDS.iter().any(|w| n.contains(w))
        || n.ends_with("key")
        || ["sig", "pwd", "pass", "auth", "code"].contains(&n.as_str())
}

fn replace<'t>(
    text: Cow<'t, str>,
    re: &Regex,
    f: impl FnMut(&Captures<'_>) -> String,
) -> Cow<'t, str> {
    if !re.is_match(&text) {
        return text;
    }
    Cow::Owned(re.replace_all(&text, f).into_owned())
}

/// `text` with the credentials recognised by their shape masked.
fn mask_shapes(text: &str) -> Cow<'_, str> {
    let s = shapes();
    let t = Cow::Borrowed(text);
    let t = replace(t, &s.userinfo, |c| {
        let info = &c[2];
        match info.split_once(':') {
            Some((user, _)) if !user.is_empty() => format!("{}{user}:{MASK}@", &c[1]),
            _ => format!("{}{MASK}@", &c[1]),
        }
    });
    let t = replace(t, &s.query, |c| {
        if secret_name(&c[2]) && !c[3].is_empty() {
            format!("{}{}={MASK}", &c[1], &c[2])
        } else {
            c[0].to_string()
        }
    });
    let t = replace(t, &s.assignment, |c| {
        if c[3].starts_with(MASK) {
            c[0].to_string()
        } else {
            format!("{}{}{MASK}", &c[1], &c[2])
        }
    });
    let t = replace(t, &s.authorization, |c| format!("{}{MASK}", &c[1]));
    let t = replace(t, &s.bearer, |c| format!("{}{MASK}", &c[1]));
    replace(t, &s.aws_key_id, |_| MASK.to_string())
}

/// `text` with only the credentials recognised by their shape masked (not
/// the registered values): the same result in every process, for digests.
pub fn credentials(text: &str) -> String {
    mask_shapes(text).into_owned()
}

/// Masks every string (and every object key) of a JSON value in place.
pub fn json(value: &mut serde_json::Value) {
    let known = known();
    json_with(value, &known);
}

fn json_with(value: &mut serde_json::Value, known: &Known) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            let shown = redact_with(s, known);
            if shown != *s {
                *s = shown;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| json_with(v, known)),
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let shown = redact_with(&k, known);
                if shown != k {
                    if let Some(v) = map.remove(&k) {
                        map.insert(shown, v);
                    }
                }
            }
            map.values_mut().for_each(|v| json_with(v, known));
        }
        _ => {}
    }
}

/// `value` as a JSON value with every string masked (see [`json`]); `Null`
/// when it cannot be represented as JSON.
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    json(&mut v);
    v
}

/// The part of a text whose beginning was cut off (a bounded tail of a
/// process's output) that redaction can be trusted with: the cut may have
/// left the end of a secret at its start, which no search can recognise,
/// so the partial first line is left out (with no line break, the first
/// bytes as long as the longest secret are).
pub fn cut_start(text: &str) -> &str {
    match text.find('\n') {
        Some(i) => &text[i + 1..],
        None => {
            let mut at = known().max_len.min(text.len());
            while !text.is_char_boundary(at) {
                at += 1;
            }
            &text[at..]
        }
    }
}

/// Masks text that arrives in pieces: each piece is masked as far as it can
/// be decided, and what could be the start of a secret (up to the longest
/// known value's length, and the unfinished line, see [`LINE_HOLD`]) waits
/// for the next piece or [`StreamRedactor::finish`]. A character cut in two
/// by a piece boundary is held back whole too.
#[derive(Debug, Default)]
pub struct StreamRedactor {
    pending: Vec<u8>,
}

impl StreamRedactor {
    /// A redactor with nothing held back.
    pub fn new() -> Self {
        StreamRedactor::default()
    }

    /// Takes the next piece; returns the text that can be shown now.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let known = known();
        let cut = safe_cut(&self.pending, &known);
        if cut == 0 {
            return String::new();
        }
        let ready: Vec<u8> = self.pending.drain(..cut).collect();
        redact_with(&String::from_utf8_lossy(&ready), &known)
    }

    /// Whether something is held back.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Everything held back, masked: the stream ended.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        if rest.is_empty() {
            return String::new();
        }
        text(&String::from_utf8_lossy(&rest))
    }
}

/// How much of `buf` can be masked and shown now: not the unfinished line
/// (a shape may be incomplete), not the last `max_len - 1` bytes (a value
/// may be starting), never inside a complete match, never inside a UTF-8
/// character.
fn safe_cut(buf: &[u8], known: &Known) -> usize {
    let len = buf.len();
    let after = |pos: Option<usize>| pos.map_or(0, |i| i + 1);
    let mut cut = after(buf.iter().rposition(|b| *b == b'\n' || *b == b'\r'));
    if len - cut > LINE_HOLD {
        cut = after(buf.iter().rposition(u8::is_ascii_whitespace));
        if len - cut > LINE_HOLD {
            cut = len - LINE_HOLD;
        }
    }
    cut = cut.min(len.saturating_sub(known.max_len.saturating_sub(1)));
    if let Some(&(s, _)) = known.ranges(buf).iter().find(|(s, e)| *s < cut && cut < *e) {
        cut = s;
    }
    let mut back = 0;
    while cut > 0 && cut < len && buf[cut] & 0xC0 == 0x80 && back < 3 {
        cut -= 1;
        back += 1;
    }
    cut
}

/// Errors of masking a file in place.
#[derive(Debug, thiserror::Error)]
#[error("cannot mask the secrets in {path}")]
pub struct FileError {
    /// The file.
    pub path: String,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// Rewrites `path` with its secrets masked (a file kiln did not write
/// itself, like a serial console log): streamed through a
/// [`StreamRedactor`] into a temporary file beside it, synced, renamed over
/// it. Its permissions are kept.
pub fn file_in_place(path: &Path) -> Result<(), FileError> {
    let err = |source| FileError {
        path: path.display().to_string(),
        source,
    };
    let mut src = std::fs::File::open(path).map_err(err)?;
    let perms = src.metadata().map_err(err)?.permissions();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    let mut stream = StreamRedactor::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = src.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        tmp.write_all(stream.push(&buf[..n]).as_bytes())
            .map_err(err)?;
    }
    tmp.write_all(stream.finish().as_bytes()).map_err(err)?;
    tmp.as_file().set_permissions(perms).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// A handle on the redaction of this process, for the sinks that are given
/// one: creating it registers its values ([`register`]); it masks every
/// known value (its own and every other registered one) and every
/// credential recognised by its shape.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    _registered: (),
}

impl Redactor {
    /// Registers `secrets` (empty values are ignored) and returns a handle.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        register(secrets);
        Redactor { _registered: () }
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        self::text(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry of its own, so tests running in parallel do not see each
    /// other's values.
    fn with(values: &[&str]) -> Known {
        Known::compile(values.iter().map(|s| s.to_string()).collect())
    }

    fn stream(known: &Known, pieces: &[&[u8]]) -> String {
        let mut pending = Vec::new();
        let mut out = String::new();
        for p in pieces {
            pending.extend_from_slice(p);
            let cut = safe_cut(&pending, known);
            let ready: Vec<u8> = pending.drain(..cut).collect();
            out.push_str(&redact_with(&String::from_utf8_lossy(&ready), known));
        }
        out.push_str(&redact_with(&String::from_utf8_lossy(&pending), known));
        out
    }

    #[test]
    fn values_are_masked_wherever_they_are() {
        let k = with(&["hunter2", "s3cr3t-t0ken"]);
        assert_eq!(
            redact_with("pw=hunter2 and s3cr3t-t0ken, hunter2hunter2!", &k),
            "pw=*** and ***, ***!"
        );
        assert_eq!(redact_with("nothing here", &k), "nothing here");
    }

    #[test]
    fn overlapping_and_nested_values_are_masked_whole() {
        let k = with(&["abcd", "cdef", "bc"]);
        assert_eq!(redact_with("xabcdefx", &k), "x***x");
        assert_eq!(redact_with("xbcx", &k), "x***x");
        let k = with(&["aa"]);
        assert_eq!(redact_with("aaa b aa", &k), "*** b ***");
    }

    #[test]
    fn encoded_forms_of_values_are_masked() {
        let k = with(&["p@ss w\"o'rd"]);
        // percent-encoded in a URL
        assert!(!redact_with("https://h/x?q=p%40ss%20w%22o%27rd", &k).contains("p%40ss"));
        // escaped in JSON
        let j = serde_json::to_string("p@ss w\"o'rd").unwrap();
        assert_eq!(redact_with(&j, &k), "\"***\"");
        // quoted by `set -x`
        assert_eq!(redact_with("+ echo 'p@ss w\"o'\\''rd'", &k), "+ echo '***'");
    }

    #[test]
    fn whitespace_values_are_not_registered() {
        let k = Known::compile(
            ["", " ", "\n"]
                .iter()
                .map(|s| s.to_string())
                .filter(|s| is_maskable(s))
                .collect(),
        );
        assert_eq!(redact_with("a b\nc", &k), "a b\nc");
    }

    #[test]
    fn url_userinfo_is_masked() {
        let k = with(&[]);
        let cases = [
            (
                "get https://bob:pa55@host.example/x ok",
                "get https://bob:***@host.example/x ok",
            ),
            (
                "git clone https://ghp_abcdef@github.com/o/r",
                "git clone https://***@github.com/o/r",
            ),
            ("https://u:p@ss@host/x", "https://u:***@host/x"),
            ("ftp://:pw@h", "ftp://***@h"),
            (
                "https://host/path?email=a@b.example",
                "https://host/path?email=a@b.example",
            ),
            ("mail bob@example.com", "mail bob@example.com"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_with(input, &k), want, "{input}");
        }
    }

    #[test]
    fn secret_query_parameters_are_masked() {
        let k = with(&[]);
        let cases = [
            ("https://h/x?token=abc&page=2", "https://h/x?token=***&page=2"),
            (
                "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F2024&X-Amz-Signature=f00d&X-Amz-Security-Token=zz",
                "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Security-Token=***",
            ),
            ("https://h/?access_token=a1&key=k2&sig=s3&password=p4&secret=s5", "https://h/?access_token=***&key=***&sig=***&password=***&secret=***"),
            ("https://h/?api_key=q#frag", "https://h/?api_key=***#frag"),
            ("https://h/?q=rust&lang=en", "https://h/?q=rust&lang=en"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_with(input, &k), want, "{input}");
        }
    }

    #[test]
    fn assignments_headers_and_aws_keys_are_masked() {
        let k = with(&[]);
        let cases = [
            (
                "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG",
                "export AWS_SECRET_ACCESS_KEY=***",
            ),
            (
                "aws_secret_access_key = wJalrXUtnFEMI",
                "aws_secret_access_key = ***",
            ),
            ("--password='a b' --user=x", "--password=*** --user=x"),
            (
                "curl -H 'Authorization: Bearer eyJhbGciOi.x.y' https://h",
                "curl -H 'Authorization: Bearer ***' https://h",
            ),
            ("Authorization: token ghp_1234", "Authorization: token ***"),
            ("sent bearer abcdefghij12", "sent bearer ***"),
            ("key id AKIAIOSFODNN7EXAMPLE used", "key id *** used"),
            (
                "the step failed: token expired",
                "the step failed: token expired",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_with(input, &k), want, "{input}");
        }
    }

    #[test]
    fn json_strings_and_keys_are_masked_and_stay_json() {
        let k = with(&["hunter2", "\""]);
        let mut v = serde_json::json!({
            "a": ["x hunter2", {"hunter2": "https://u:p@h/?token=t"}],
            "n": 3,
            "q": "say \"hi\"",
        });
        json_with(&mut v, &k);
        assert_eq!(
            v,
            serde_json::json!({
                "a": ["x ***", {"***": "https://u:***@h/?token=***"}],
                "n": 3,
                "q": "say ***hi***",
            })
        );
    }

    #[test]
    fn a_value_split_at_every_offset_is_masked() {
        let secret = "Zq9-distinctive-s3cret-é€-Zq9";
        let k = with(&[secret]);
        let text = format!("before {secret} middle {secret}\nafter {secret}");
        let want = "before *** middle ***\nafter ***";
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let got = stream(&k, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(got, want, "split at {cut}");
        }
        for a in 0..bytes.len() {
            for b in a..=bytes.len() {
                let got = stream(&k, &[&bytes[..a], &bytes[a..b], &bytes[b..]]);
                assert_eq!(got, want, "split at {a} and {b}");
            }
        }
        // one byte at a time
        let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(stream(&k, &pieces), want);
    }

    #[test]
    fn shapes_split_across_pieces_are_masked() {
        let k = with(&[]);
        let text = "+ curl https://bob:pa55word@mirror.example/x?token=t0k3n\n";
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let got = stream(&k, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(
                got, "+ curl https://bob:***@mirror.example/x?token=***\n",
                "split at {cut}"
            );
        }
    }

    #[test]
    fn utf8_characters_split_across_pieces_survive() {
        let k = with(&["zzzzz"]);
        let text = "é€😀 line\né€😀\n€€€😀😀";
        let bytes = text.as_bytes();
        for end in 0..=bytes.len() {
            let cut = safe_cut(&bytes[..end], &k);
            assert!(text.is_char_boundary(cut), "prefix {end}: cut {cut}");
        }
        for cut in 0..=bytes.len() {
            assert_eq!(stream(&k, &[&bytes[..cut], &bytes[cut..]]), text, "{cut}");
        }
    }

    #[test]
    fn complete_lines_are_shown_at_once_and_long_lines_are_bounded() {
        let k = with(&[]);
        let mut pending = b"line one\nline tw".to_vec();
        let cut = safe_cut(&pending, &k);
        assert_eq!(&pending[..cut], b"line one\n");
        pending = vec![b'a'; LINE_HOLD * 2];
        assert_eq!(safe_cut(&pending, &k), LINE_HOLD);
        pending.extend_from_slice(b" b");
        assert_eq!(safe_cut(&pending, &k), LINE_HOLD * 2 + 1);
        // a value that may be starting is held back too
        let k = with(&["abcdef"]);
        assert_eq!(safe_cut(b"0123456789\nab", &k), 8);
        assert_eq!(safe_cut(b"line\n", &k), 0);
    }

    #[test]
    fn a_cut_tail_drops_its_partial_first_line() {
        // the registry is global; the value is distinctive to this test
        register(["tail-secret-Kq7"]);
        let cut = cut_start("et-Kq7 partial\nlast tail-secret-Kq7 line");
        assert_eq!(cut, "last tail-secret-Kq7 line");
        assert_eq!(text(cut), "last *** line");
        let t = cut_start("et-Kq7 no break at all, long enough");
        assert!(!t.contains("Kq7"), "{t}");
    }

    #[test]
    fn registered_values_are_masked_by_every_entry_point() {
        let r = Redactor::new(["reg-secret-Wv3".to_string(), String::new()]);
        assert_eq!(r.redact("a reg-secret-Wv3 b"), "a *** b");
        assert_eq!(text("reg-secret-Wv3"), "***");
        let mut s = StreamRedactor::new();
        let mut out = s.push(b"x reg-sec");
        out.push_str(&s.push(b"ret-Wv3 y"));
        out.push_str(&s.finish());
        assert_eq!(out, "x *** y");
        assert_eq!(
            to_json(&serde_json::json!({"k": "reg-secret-Wv3"})),
            serde_json::json!({"k": "***"})
        );
    }

    #[test]
    fn files_are_masked_in_place() {
        register(["file-secret-Pm4"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        let body = "boot\n".repeat(30_000) + "echo file-secret-Pm4\n";
        std::fs::write(&path, &body).unwrap();
        file_in_place(&path).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(!after.contains("file-secret-Pm4"));
        assert!(after.ends_with("echo ***\n"));
        assert_eq!(after.len(), body.len() - "file-secret-Pm4".len() + 3);
    }
}
