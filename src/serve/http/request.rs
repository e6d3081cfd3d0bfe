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
    /// The `Host` header's value, if sent (at most one is accepted).
    pub host: Option<String>,
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
    let mut host = None;
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
            host = Some(String::from_utf8_lossy(value).into_owned());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(Rejection::bad(
                "this API is read-only and takes no request body (Transfer-Encoding sent)",
            ));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            check_no_body(value)?;
        }
    }
    if (http11 && hosts != 1) || hosts > 1 {
        return Err(Rejection::bad(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    // The request line was checked to be visible ASCII, so these are UTF-8.
    Ok(RequestHead {
        method: String::from_utf8_lossy(method).into_owned(),
        target: String::from_utf8_lossy(target).into_owned(),
        host,
    })
}

/// Which `Host` a request may name (the defence against DNS rebinding: a
/// web page whose name was re-pointed at 127.0.0.1 can reach a loopback
/// port, but its requests still carry its own name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostPolicy {
    /// Only loopback names with the listening port: `localhost:PORT` and
    /// loopback address literals such as `127.0.0.1:PORT` and `[::1]:PORT`
    /// (the port may be left out only when it is 80). The default.
    #[default]
    Loopback,
    /// Any host (for an authenticating proxy in front that checks it).
    Any,
}

/// Checks the request's `Host` header, and the authority of an
/// absolute-form target (`GET http://host/path`), against `policy` for a
/// server listening on `port`. An HTTP/1.0 request without `Host` passes
/// (browsers always send one). Refused with 421 Misdirected Request.
pub fn check_host(head: &RequestHead, policy: HostPolicy, port: u16) -> Result<(), Rejection> {
    if policy == HostPolicy::Any {
        return Ok(());
    }
    let authority = ["http://", "https://"].iter().find_map(|scheme| {
        let start = head.target.get(..scheme.len())?;
        start
            .eq_ignore_ascii_case(scheme)
            .then(|| &head.target[scheme.len()..])
            .map(|rest| rest.split(['/', '?']).next().unwrap_or(rest))
    });
    for name in head.host.as_deref().into_iter().chain(authority) {
        if !is_loopback_authority(name, port) {
            return Err(Rejection {
                status: 421,
                message: format!(
                    "this API answers only to localhost:{port}, 127.0.0.1:{port} or [::1]:{port}; the request names another host"
                ),
            });
        }
    }
    Ok(())
}

/// `host[:port]` names a loopback host with `port` (no port means 80).
fn is_loopback_authority(authority: &str, port: u16) -> bool {
    let (host, given) = match authority.rsplit_once(':') {
        // a bracketed IPv6 literal without a port: its colons are inside
        Some((h, _)) if authority.ends_with(']') && h.contains('[') => (authority, None),
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let port_ok = match given {
        None => port == 80,
        Some(p) => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse() == Ok(port),
    };
    let host_ok = if host.eq_ignore_ascii_case("localhost") {
        true
    } else if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| std::net::IpAddr::V6(ip).to_canonical().is_loopback())
    } else {
        // only the dotted-quad form: `127.1` or `0x7f.0.0.1` are not addresses here
        host.parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
    };
    host_ok && port_ok
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
    fn only_loopback_hosts_with_the_port() {
        let check = |target: &str, host: Option<&str>| {
            let head = RequestHead {
                method: "GET".into(),
                target: target.into(),
                host: host.map(str::to_string),
            };
            check_host(&head, HostPolicy::Loopback, 8737).map_err(|r| r.status)
        };
        for ok in [
            "127.0.0.1:8737",
            "localhost:8737",
            "LocalHost:8737",
            "[::1]:8737",
            "127.3.4.5:8737",
            "[::ffff:127.0.0.1]:8737",
        ] {
            assert_eq!(check("/health", Some(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "attacker.example:8737",
            "attacker.example",
            "localhost",
            "127.0.0.1",
            "127.0.0.1:80",
            "127.0.0.1:18737",
            "127.0.0.1:+8737",
            "127.0.0.1:",
            "localhost.:8737",
            "localhost.attacker.example:8737",
            "127.1:8737",
            "0x7f.0.0.1:8737",
            "[::1]",
            "[::2]:8737",
            "10.0.0.1:8737",
            "",
        ] {
            assert_eq!(check("/health", Some(bad)), Err(421), "{bad}");
        }
        // HTTP/1.0 without Host passes; an absolute-form target is checked too
        assert_eq!(check("/health", None), Ok(()));
        assert_eq!(
            check("http://localhost:8737/health", Some("127.0.0.1:8737")),
            Ok(())
        );
        assert_eq!(
            check(
                "http://attacker.example:8737/health",
                Some("127.0.0.1:8737")
            ),
            Err(421)
        );
        assert_eq!(check("HTTP://evil:8737", None), Err(421));
        // port 80 may be left out
        let on80 = |host: &str| {
            let head = RequestHead {
                method: "GET".into(),
                target: "/".into(),
                host: Some(host.into()),
            };
            check_host(&head, HostPolicy::Loopback, 80).is_ok()
        };
        assert!(on80("localhost") && on80("[::1]") && on80("127.0.0.1:80"));
        assert!(!on80("example.com"));
        // anything goes for a proxy that checks it
        let head = RequestHead {
            method: "GET".into(),
            target: "/".into(),
            host: Some("attacker.example".into()),
        };
        assert!(check_host(&head, HostPolicy::Any, 8737).is_ok());
    }

    #[test]
    fn the_host_header_is_kept_and_may_not_repeat() {
        let h = parse_head(b"GET / HTTP/1.1\r\nHost:  localhost:1  \r\n\r\n").unwrap();
        assert_eq!(h.host.as_deref(), Some("localhost:1"));
        assert_eq!(
            parse_head(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
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
