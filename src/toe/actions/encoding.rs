//! Text encodings of the file actions: UTF-8, UTF-16 and UTF-32, each
//! little- or big-endian. Output never has a byte-order mark; input may have
//! one, which is dropped.

/// A text encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8.
    Utf8,
    /// UTF-16, little-endian (what bare `utf16` means).
    Utf16Le,
    /// UTF-16, big-endian.
    Utf16Be,
    /// UTF-32, little-endian (what bare `utf32` means).
    Utf32Le,
    /// UTF-32, big-endian.
    Utf32Be,
}

impl Encoding {
    /// Parses an AWSTOE encoding name, ignoring case: `utf8`, `utf-8`,
    /// `utf16`, `utf-16`, `utf16-LE`, `utf-16-LE`, `utf16-BE`, `utf-16-BE`,
    /// and the same for 32.
    pub fn parse(name: &str) -> Option<Encoding> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "utf8" | "utf-8" => Encoding::Utf8,
            "utf16" | "utf-16" | "utf16-le" | "utf-16-le" => Encoding::Utf16Le,
            "utf16-be" | "utf-16-be" => Encoding::Utf16Be,
            "utf32" | "utf-32" | "utf32-le" | "utf-32-le" => Encoding::Utf32Le,
            "utf32-be" | "utf-32-be" => Encoding::Utf32Be,
            _ => return None,
        })
    }

    /// A display name, e.g. `UTF-16LE`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Utf16Le => "UTF-16LE",
            Encoding::Utf16Be => "UTF-16BE",
            Encoding::Utf32Le => "UTF-32LE",
            Encoding::Utf32Be => "UTF-32BE",
        }
    }

    /// `text` in this encoding, without a byte-order mark.
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Encoding::Utf8 => text.as_bytes().to_vec(),
            Encoding::Utf16Le | Encoding::Utf16Be => {
                let mut out = Vec::with_capacity(text.len() * 2);
                for c in text.chars() {
                    for unit in utf16_units(c) {
                        let bytes = if self == Encoding::Utf16Le {
                            unit.to_le_bytes()
                        } else {
                            unit.to_be_bytes()
                        };
                        out.extend_from_slice(&bytes);
                    }
                }
                out
            }
            Encoding::Utf32Le | Encoding::Utf32Be => {
                let mut out = Vec::with_capacity(text.len() * 4);
                for c in text.chars() {
                    let bytes = if self == Encoding::Utf32Le {
                        (c as u32).to_le_bytes()
                    } else {
                        (c as u32).to_be_bytes()
                    };
                    out.extend_from_slice(&bytes);
                }
                out
            }
        }
    }

    /// Decodes `bytes`; a leading byte-order mark is dropped. Invalid data
    /// is an error that says where it is.
    pub fn decode(self, bytes: &[u8]) -> Result<String, String> {
        let text = match self {
            Encoding::Utf8 => std::str::from_utf8(bytes)
                .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?
                .to_string(),
            Encoding::Utf16Le | Encoding::Utf16Be => {
                if !bytes.len().is_multiple_of(2) {
                    return Err(format!(
                        "{} bytes is not a whole number of UTF-16 units",
                        bytes.len()
                    ));
                }
                let units = bytes.chunks_exact(2).map(|b| {
                    let pair = [b[0], b[1]];
                    if self == Encoding::Utf16Le {
                        u16::from_le_bytes(pair)
                    } else {
                        u16::from_be_bytes(pair)
                    }
                });
                decode_utf16(units)?
            }
            Encoding::Utf32Le | Encoding::Utf32Be => {
                if !bytes.len().is_multiple_of(4) {
                    return Err(format!(
                        "{} bytes is not a whole number of UTF-32 units",
                        bytes.len()
                    ));
                }
                let mut out = String::with_capacity(bytes.len() / 4);
                for (i, b) in bytes.chunks_exact(4).enumerate() {
                    let quad = [b[0], b[1], b[2], b[3]];
                    let v = if self == Encoding::Utf32Le {
                        u32::from_le_bytes(quad)
                    } else {
                        u32::from_be_bytes(quad)
                    };
                    let c = char::from_u32(v).ok_or_else(|| {
                        format!("invalid UTF-32 code point {v:#x} at byte {}", i * 4)
                    })?;
                    out.push(c);
                }
                out
            }
        };
        Ok(match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_string(),
            None => text,
        })
    }
}

/// The UTF-16 code units of one character (one, or a surrogate pair).
fn utf16_units(c: char) -> impl Iterator<Item = u16> {
    let v = c as u32;
    let (first, second) = if v < 0x1_0000 {
        (v as u16, None)
    } else {
        let v = v - 0x1_0000;
        (0xD800 | (v >> 10) as u16, Some(0xDC00 | (v & 0x3FF) as u16))
    };
    std::iter::once(first).chain(second)
}

/// Decodes UTF-16 code units, rejecting unpaired surrogates.
fn decode_utf16(units: impl Iterator<Item = u16>) -> Result<String, String> {
    let mut out = String::new();
    let mut units = units.enumerate().peekable();
    while let Some((i, u)) = units.next() {
        let v = match u {
            0xD800..=0xDBFF => match units.peek() {
                Some(&(_, low @ 0xDC00..=0xDFFF)) => {
                    units.next();
                    0x1_0000 + (((u as u32) - 0xD800) << 10) + ((low as u32) - 0xDC00)
                }
                _ => return Err(format!("unpaired UTF-16 surrogate at byte {}", i * 2)),
            },
            0xDC00..=0xDFFF => return Err(format!("unpaired UTF-16 surrogate at byte {}", i * 2)),
            _ => u as u32,
        };
        // every value built above is a valid scalar value
        out.push(char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_awstoe_name_ignoring_case() {
        for (name, enc) in [
            ("utf8", Encoding::Utf8),
            ("UTF-8", Encoding::Utf8),
            ("utf16", Encoding::Utf16Le),
            ("UTF-16", Encoding::Utf16Le),
            ("utf16-LE", Encoding::Utf16Le),
            ("utf-16-le", Encoding::Utf16Le),
            ("utf16-BE", Encoding::Utf16Be),
            ("UTF-16-BE", Encoding::Utf16Be),
            ("utf32", Encoding::Utf32Le),
            ("UTF-32", Encoding::Utf32Le),
            ("utf32-LE", Encoding::Utf32Le),
            ("utf-32-LE", Encoding::Utf32Le),
            ("utf32-BE", Encoding::Utf32Be),
            ("utf-32-be", Encoding::Utf32Be),
        ] {
            assert_eq!(Encoding::parse(name), Some(enc), "{name}");
        }
        assert_eq!(Encoding::parse("latin1"), None);
        assert_eq!(Encoding::parse("utf-7"), None);
    }

    #[test]
    fn encodes_without_bom() {
        assert_eq!(Encoding::Utf8.encode("Aé"), b"A\xc3\xa9");
        assert_eq!(Encoding::Utf16Le.encode("Aé"), [0x41, 0, 0xe9, 0]);
        assert_eq!(Encoding::Utf16Be.encode("Aé"), [0, 0x41, 0, 0xe9]);
        assert_eq!(Encoding::Utf32Le.encode("A"), [0x41, 0, 0, 0]);
        assert_eq!(Encoding::Utf32Be.encode("é"), [0, 0, 0, 0xe9]);
        assert!(Encoding::Utf16Le.encode("").is_empty());
    }

    #[test]
    fn encodes_surrogate_pairs() {
        // U+1F600 is D83D DE00 in UTF-16
        assert_eq!(Encoding::Utf16Le.encode("😀"), [0x3d, 0xd8, 0x00, 0xde]);
        assert_eq!(Encoding::Utf16Be.encode("😀"), [0xd8, 0x3d, 0xde, 0x00]);
        assert_eq!(Encoding::Utf32Be.encode("😀"), [0, 0x01, 0xf6, 0x00]);
        // same as the standard library's encoder
        let text = "a😀b\u{10FFFF}\u{FFFF}";
        let want: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(Encoding::Utf16Le.encode(text), want);
    }

    #[test]
    fn round_trips() {
        let text = "line 1\nÜnïcødé 😀 \u{10FFFF}\n";
        for enc in [
            Encoding::Utf8,
            Encoding::Utf16Le,
            Encoding::Utf16Be,
            Encoding::Utf32Le,
            Encoding::Utf32Be,
        ] {
            assert_eq!(enc.decode(&enc.encode(text)).unwrap(), text, "{enc:?}");
        }
    }

    #[test]
    fn decode_drops_bom_and_rejects_bad_data() {
        assert_eq!(Encoding::Utf8.decode(b"\xef\xbb\xbfhi").unwrap(), "hi");
        assert_eq!(
            Encoding::Utf16Le.decode(&[0xff, 0xfe, b'h', 0]).unwrap(),
            "h"
        );
        assert!(Encoding::Utf8
            .decode(b"a\xffb")
            .unwrap_err()
            .contains("byte 1"));
        assert!(Encoding::Utf16Le.decode(&[1, 2, 3]).is_err());
        // lone low surrogate, then a high surrogate not followed by a low one
        assert!(Encoding::Utf16Le.decode(&[0x00, 0xdc]).is_err());
        assert!(Encoding::Utf16Be.decode(&[0xd8, 0x3d, 0, 0x41]).is_err());
        assert!(Encoding::Utf32Le.decode(&[0, 0, 0x11, 0]).is_err());
        assert!(Encoding::Utf32Le.decode(&[0, 0xd8, 0, 0]).is_err());
        assert!(Encoding::Utf32Be.decode(&[0, 0, 0]).is_err());
    }
}
