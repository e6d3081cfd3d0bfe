//! Reading an HTTP/1.1 request head and its target: pure functions over
//! bytes and text, no I/O.

/// The most header lines a request may have.
pub const MAX_HEADERS: usize = 100;

/// A request refused before routing: the status to answer and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status (400, 414, 431, 505).
    pub status: u16,
    /// What is wrong, for the JSON error body.
    pub message: String,
}

impl Rejection {
    fn bad(message: impl Into<String>) -> Self {
        Rejection {
            status: 400,
            message: message.into(),
        }
    }
}

/// A parsed request head (the body, if any, is never read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, case-sensitive as sent (`GET`, `HEAD`, …).
    pub method: String,
    /// The request target as sent, e.g. `/v1/images?name=web`.
    pub target: String,
}

/// Where the request head in `buf` ends: the index just after the empty
/// line (`\r\n\r\n`, or a bare `\n\n` as RFC 9112 allows), or `None` when
/// the head is not complete yet.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match buf.get(i + 1..) {
            Some([b'\n', ..]) => Some(i + 2),
            Some([b'\r', b'\n', ..]) => Some(i + 3),
            _ => None,
        }
    })
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Parses a complete request head (as delimited by [`head_end`]): the
/// request line `METHOD TARGET HTTP/1.x` and the header lines. Refuses
/// what this read-only server cannot or will not handle: a malformed line,
/// obsolete line folding, HTTP/1.1 without exactly one `Host`, a request
/// body (`Transfer-Encoding`, or `Content-Length` other than 0), more than
/// [`MAX_HEADERS`] headers (431), and HTTP versions other than 1.0 and 1.1
/// (505).
pub fn parse_head(head: &[u8]) -> Result<RequestHead, Rejection> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let parts: Vec<&[u8]> = request_line.split(|&b| b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(Rejection::bad(
            "the request line is not `METHOD TARGET HTTP/1.1`",
        ));
    };
    if !is_token(method) {
        return Err(Rejection::bad("the request method is not a valid token"));
    }
    if target.is_empty() || !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(Rejection::bad(
            "the request target is empty or has characters that must be percent-encoded",
        ));
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        v if v.starts_with(b"HTTP/") => {
            return Err(Rejection {
                status: 505,
                message: "this server speaks HTTP/1.1 and HTTP/1.0 only".into(),
            })
        }
        _ => return Err(Rejection::bad("the request line has no HTTP version")),
    };
    let mut hosts = 0usize;
    let mut count = 0usize;
    for line in lines.take_while(|l| !l.is_empty()) {
        count += 1;
        if count > MAX_HEADERS {
            return Err(Rejection {
                status: 431,
                message: format!("more than {MAX_HEADERS} header lines"),
            });
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            return Err(Rejection::bad(
                "obsolete header line folding is not accepted",
            ));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| Rejection::bad("a header line has no `:`"))?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if !is_token(name) {
            return Err(Rejection::bad(
                "a header name is empty or has spaces or invalid characters",
            ));
        }
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(Rejection::bad(
                "this API is read-only and takes no request body (Transfer-Encoding sent)",
            ));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            check_no_body(value)?;
        }
    }
    if http11 && hosts != 1 {
        return Err(Rejection::bad(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    // The request line was checked to be visible ASCII, so these are UTF-8.
    Ok(RequestHead {
        method: String::from_utf8_lossy(method).into_owned(),
        target: String::from_utf8_lossy(target).into_owned(),
    })
}

/// A `Content-Length` value (possibly a list, `0, 0`) must be all zeros.
fn check_no_body(value: &[u8]) -> Result<(), Rejection> {
    for item in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
        if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
            return Err(Rejection::bad("Content-Length is not a number"));
        }
        if item.iter().any(|&b| b != b'0') {
            return Err(Rejection::bad(
                "this API is read-only and takes no request body (Content-Length > 0)",
            ));
        }
    }
    Ok(())
}

/// A request target split into its path and query (without the `?`).
/// Accepts the origin form (`/path?query`) and the absolute form
/// (`http://host/path?query`) that RFC 9112 requires servers to accept.
pub fn split_target(target: &str) -> Result<(&str, Option<&str>), Rejection> {
    let origin = match ["http://", "https://"]
        .iter()
        .find_map(|s| target.strip_prefix(s))
    {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    if !origin.starts_with('/') {
        return Err(Rejection::bad(format!(
            "the request target `{target}` is not a path starting with `/`"
        )));
    }
    Ok(match origin.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (origin, None),
    })
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as in
/// query strings). The result must be UTF-8.
pub fn percent_decode(text: &str, plus_is_space: bool) -> Result<String, Rejection> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        Rejection::bad(format!("`{text}` has a `%` not followed by two hex digits"))
                    })?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| Rejection::bad(format!("`{text}` does not decode to UTF-8 text")))
}

/// The decoded `name=value` pairs of a query string, in order. Empty
/// pieces (`a=1&&b=2`) are skipped; a name without `=` has an empty value.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, Rejection> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &str) -> u16 {
        parse_head(head.as_bytes()).unwrap_err().status
    }

    #[test]
    fn finds_the_end_of_the_head() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r"), None);
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn parses_a_request() {
        let h = parse_head(b"GET /v1/images?name=web HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nUser-Agent: \xff\xfe\r\n\r\n").unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, "/v1/images?name=web");
        // HTTP/1.0 needs no Host
        assert!(parse_head(b"HEAD / HTTP/1.0\r\n\r\n").is_ok());
        // lower-case header names, spaces around values
        assert!(parse_head(b"GET / HTTP/1.1\r\nhost:   x  \r\n\r\n").is_ok());
    }

    #[test]
    fn refuses_malformed_heads() {
        for head in [
            "\r\n\r\n",
            "GET /\r\nHost: x\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
            "G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / FTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n  folded\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(status(head), 400, "{head:?}");
        }
        assert_eq!(status("GET / HTTP/2.0\r\n\r\n"), 505);
        let many = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS)
        );
        assert_eq!(status(&many), 431);
    }

    #[test]
    fn splits_targets() {
        assert_eq!(split_target("/a?b=c").unwrap(), ("/a", Some("b=c")));
        assert_eq!(split_target("/a").unwrap(), ("/a", None));
        assert_eq!(
            split_target("http://localhost:8080/v1?x").unwrap(),
            ("/v1", Some("x"))
        );
        assert_eq!(split_target("http://localhost").unwrap(), ("/", None));
        assert_eq!(split_target("*").unwrap_err().status, 400);
        assert_eq!(split_target("v1/images").unwrap_err().status, 400);
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(
            percent_decode("web%2F1.0.0%2f2", false).unwrap(),
            "web/1.0.0/2"
        );
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert_eq!(percent_decode("a+b%20c", true).unwrap(), "a b c");
        assert_eq!(percent_decode("caf%C3%A9", false).unwrap(), "café");
        for bad in ["%", "%4", "%zz", "a%g1", "%ff", "%+f"] {
            assert!(percent_decode(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_queries() {
        assert_eq!(
            parse_query("pipeline=web%20nightly&&limit=5&flag").unwrap(),
            vec![
                ("pipeline".into(), "web nightly".into()),
                ("limit".into(), "5".into()),
                ("flag".into(), String::new())
            ]
        );
        assert!(parse_query("").unwrap().is_empty());
        assert!(parse_query("a=%zz").is_err());
    }
}
