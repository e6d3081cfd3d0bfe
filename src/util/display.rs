//! Showing untrusted text on a terminal or in a log: control characters
//! (escape sequences, carriage returns, bidirectional overrides) are
//! written as visible escapes, so a name cannot rewrite what the operator
//! sees. And an error with its causes on one line.

use std::fmt;

/// True for the characters [`Escaped`] escapes: C0 and C1 controls, DEL,
/// and the Unicode bidirectional overrides and isolates.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn write_escaped(f: &mut fmt::Formatter<'_>, text: &str, keep_newlines: bool) -> fmt::Result {
    let mut rest = text;
    while let Some(i) = rest.find(|c: char| is_unsafe(c) && !(keep_newlines && c == '\n')) {
        f.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or_default();
        match c {
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{1b}' => f.write_str("\\e")?,
            c if (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32)?,
            c => write!(f, "\\u{{{:x}}}", c as u32)?,
        }
        rest = &rest[i + c.len_utf8()..];
    }
    f.write_str(rest)
}

/// Displays a string with every control character escaped (`\e`, `\n`,
/// `\x07`, `\u{202e}` …); other text, backslashes included, is unchanged.
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, false)
    }
}

/// Like [`Escaped`], but keeps line breaks: for multi-line messages made
/// of lines kiln wrote around untrusted text.
#[derive(Clone, Copy, Debug)]
pub struct EscapedLines<'a>(pub &'a str);

impl fmt::Display for EscapedLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, true)
    }
}

/// An error and its causes, joined by `: ` (`cannot read recipe r.yml: it
/// is a folder, not a regular file`).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // `#[error(transparent)]` layers repeat their cause's text
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi_overrides_only() {
        let s = "a\u{1b}[31mred\r\nb\tc\u{7f}\u{9b}d\u{202e}e\\x é";
        assert_eq!(
            Escaped(s).to_string(),
            "a\\e[31mred\\r\\nb\\tc\\x7f\\x9bd\\u{202e}e\\x é"
        );
        assert_eq!(EscapedLines("x\u{1b}\ny").to_string(), "x\\e\ny");
        assert_eq!(Escaped("plain").to_string(), "plain");
    }

    #[test]
    fn chains_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read recipe r.yml")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("boom"));
        assert_eq!(chain(&e), "cannot read recipe r.yml: boom");
    }
}
