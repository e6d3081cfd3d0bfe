//! POSIX shell quoting. An SSH `exec` request is one string that the login
//! user's shell parses, so every word kiln sends is quoted here.

/// Why a word cannot be passed through a shell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} contains a NUL byte, which no command-line argument can hold")]
pub struct NulInWord(pub String);

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b)
}

/// Quotes `word` so that any POSIX shell reads it back as exactly one word
/// with the same bytes: plain words stay as they are, anything else is
/// wrapped in single quotes, with `'` written as `'\''`.
pub fn quote(word: &str) -> Result<String, NulInWord> {
    if word.contains('\0') {
        return Err(NulInWord(word.to_string()));
    }
    if !word.is_empty() && word.bytes().all(is_plain) {
        return Ok(word.to_string());
    }
    Ok(format!("'{}'", word.replace('\'', r"'\''")))
}

/// Quotes each word and joins them with spaces: a command line.
pub fn command_line<S: AsRef<str>>(words: &[S]) -> Result<String, NulInWord> {
    let quoted: Result<Vec<String>, NulInWord> = words.iter().map(|w| quote(w.as_ref())).collect();
    Ok(quoted?.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `sh` makes of a command line: its words, one per NUL-ended record.
    fn words_seen_by_sh(line: &str) -> Vec<String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\0' {line}"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_terminator('\0').map(str::to_string).collect()
    }

    #[test]
    fn plain_words_are_unchanged() {
        assert_eq!(
            quote("abc-1.2_3/x:y,z@h%+=").unwrap(),
            "abc-1.2_3/x:y,z@h%+="
        );
        assert_eq!(quote("").unwrap(), "''");
        assert_eq!(quote("a b").unwrap(), "'a b'");
        assert_eq!(quote("it's").unwrap(), r"'it'\''s'");
    }

    #[test]
    fn the_shell_reads_back_every_word_exactly() {
        let nasty = [
            "it's",
            "$HOME",
            "$(id -u)",
            "`id`",
            "a b  c",
            "line1\nline2",
            "",
            "*",
            "~",
            "\\",
            "\"",
            "'",
            "''",
            "-n",
            "tab\there",
            "semi;colon&amp|pipe>redir<in",
            "ünïcødé ✓",
            "!bang",
            "#hash",
        ];
        let line = command_line(&nasty).unwrap();
        assert_eq!(words_seen_by_sh(&line), nasty);
    }

    #[test]
    fn nul_bytes_are_refused() {
        assert_eq!(quote("a\0b"), Err(NulInWord("a\0b".into())));
        assert!(command_line(&["ok", "bad\0"]).is_err());
    }
}
