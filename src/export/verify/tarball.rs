//! A strict, bounded reader of tar archives for checking packages (OVAs,
//! GCE tarballs): ustar, GNU/oldgnu (long names, oldgnu sparse members)
//! and PAX extended headers. Every header is validated (checksum, numeric
//! fields) before any data is read; long names and extended records are
//! size-limited; a sparse member's map is checked against its sizes and
//! its holes are only described, never produced. The data of a member not
//! read is skipped (read and discarded: the stream may be compressed).

use std::io::{self, Read};

/// The tar block size.
pub const BLOCK: u64 = 512;
/// The longest GNU long name or link name accepted.
pub const MAX_LONG_NAME: u64 = 64 << 10;
/// The largest PAX extended header accepted.
pub const MAX_PAX: u64 = 1 << 20;
/// The most data segments a sparse member may list.
pub const MAX_SEGMENTS: usize = 1 << 20;

/// What a member is, by its type flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (`0`, NUL, or contiguous `7`).
    File,
    /// A GNU sparse file (`S`): data segments and holes.
    Sparse,
    /// A folder (`5`).
    Dir,
    /// A symbolic (`2`) or hard (`1`) link.
    Link,
    /// Anything else (devices, FIFOs, vendor types).
    Other(u8),
}

/// One member of the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its name (from a GNU long name or PAX `path` when given), lossy UTF-8.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// The bytes of data stored in the archive for it.
    pub size: u64,
    /// The bytes it stands for: `size`, or a sparse file's real size.
    pub real_size: u64,
    /// A sparse member's data segments (offset in the file, length), in
    /// order; empty for other members.
    pub segments: Vec<(u64, u64)>,
    /// Where its header starts in the archive.
    pub offset: u64,
}

/// Why the archive cannot be read on.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading failed (the stream is damaged, truncated, or cancelled).
    #[error("at byte {offset}: {source}")]
    Io {
        /// Where in the archive.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A header breaks the format.
    #[error("the header at byte {offset}: {message}")]
    Header {
        /// Where in the archive.
        offset: u64,
        /// What is wrong.
        message: String,
    },
}

/// What one 512-byte header block says, before extensions are applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Block {
    /// An all-zero block: the end of the archive.
    End,
    /// A header.
    Header(RawHeader),
}

/// The fields of one header block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawHeader {
    /// The name (ustar prefix joined), raw bytes.
    pub name: Vec<u8>,
    /// The type flag.
    pub typeflag: u8,
    /// The size field: data bytes stored after the header.
    pub size: u64,
    /// For an oldgnu sparse header: its map as far as the header holds it.
    pub sparse: Option<SparseHeader>,
}

/// The sparse map in an oldgnu header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparseHeader {
    /// The data segments listed in the header (offset, length).
    pub segments: Vec<(u64, u64)>,
    /// Whether extension blocks with more segments follow the header.
    pub extended: bool,
    /// The size of the file the member stands for.
    pub real_size: u64,
}

/// A numeric field: octal digits (leading spaces, ending at a NUL or
/// space) or GNU base-256 (first byte's high bit set).
pub fn numeric(field: &[u8]) -> Result<u64, String> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            if first != 0x80 || field.len() < 9 {
                return Err("a negative or oversized base-256 number".into());
            }
            let body = &field[1..];
            let (high, low) = body.split_at(body.len() - 8);
            if high.iter().any(|b| *b != 0) {
                return Err("a base-256 number beyond 64 bits".into());
            }
            return Ok(u64::from_be_bytes(low.try_into().expect("8 bytes")));
        }
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0 && *b != b' ')
        .collect();
    if text.is_empty() {
        return Ok(0);
    }
    let mut n: u64 = 0;
    for b in text {
        if !(b'0'..=b'7').contains(&b) {
            return Err(format!("`{}` in an octal number", b.escape_ascii()));
        }
        n = n
            .checked_mul(8)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or("an octal number beyond 64 bits")?;
    }
    Ok(n)
}

fn cstr(field: &[u8]) -> &[u8] {
    field.split(|b| *b == 0).next().unwrap_or(&[])
}

/// Parses one header block (pure: no I/O).
pub fn parse_block(b: &[u8; 512]) -> Result<Block, String> {
    if b.iter().all(|x| *x == 0) {
        return Ok(Block::End);
    }
    let stored = numeric(&b[148..156]).map_err(|e| format!("checksum field: {e}"))?;
    let unsigned: u64 = b
        .iter()
        .enumerate()
        .map(|(i, x)| u64::from(if (148..156).contains(&i) { b' ' } else { *x }))
        .sum();
    let signed: i64 = b
        .iter()
        .enumerate()
        .map(|(i, x)| {
            i64::from(if (148..156).contains(&i) {
                b' ' as i8
            } else {
                *x as i8
            })
        })
        .sum();
    if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
        return Err(format!(
            "checksum {stored} does not match the header ({unsigned}): damaged, or not a tar"
        ));
    }
    let gnu = &b[257..265] == b"ustar  \0";
    let posix = &b[257..263] == b"ustar\0";
    let mut name = cstr(&b[0..100]).to_vec();
    if posix {
        let prefix = cstr(&b[345..500]);
        if !prefix.is_empty() {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(&name);
            name = full;
        }
    }
    let typeflag = b[156];
    let size = numeric(&b[124..136]).map_err(|e| format!("size field: {e}"))?;
    let sparse = if gnu && typeflag == b'S' {
        let mut segments = Vec::new();
        for i in 0..4 {
            let at = 386 + i * 24;
            push_segment(&mut segments, &b[at..at + 24])?;
        }
        let real = numeric(&b[483..495]).map_err(|e| format!("real size field: {e}"))?;
        Some(SparseHeader {
            segments,
            extended: b[482] != 0,
            real_size: real,
        })
    } else {
        None
    };
    Ok(Block::Header(RawHeader {
        name,
        typeflag,
        size,
        sparse,
    }))
}

/// Adds the segment in a 24-byte (offset, length) entry unless it is empty.
fn push_segment(segments: &mut Vec<(u64, u64)>, entry: &[u8]) -> Result<(), String> {
    if entry[0] == 0 && entry[12] == 0 {
        return Ok(());
    }
    let offset = numeric(&entry[0..12]).map_err(|e| format!("sparse offset: {e}"))?;
    let length = numeric(&entry[12..24]).map_err(|e| format!("sparse length: {e}"))?;
    segments.push((offset, length));
    Ok(())
}

/// Checks a sparse map: segments in order, not overlapping, inside the
/// real size, their lengths adding up to the stored data.
pub fn check_sparse(segments: &[(u64, u64)], stored: u64, real: u64) -> Result<(), String> {
    let mut end = 0u64;
    let mut data = 0u64;
    for &(offset, length) in segments {
        if offset < end {
            return Err(format!(
                "sparse segment at {offset} overlaps or comes before the previous one (ending at {end})"
            ));
        }
        end = offset
            .checked_add(length)
            .filter(|e| *e <= real)
            .ok_or_else(|| {
                format!("sparse segment {offset}+{length} ends beyond the real size {real}")
            })?;
        data = data
            .checked_add(length)
            .ok_or("sparse segment lengths overflow")?;
    }
    if data != stored {
        return Err(format!(
            "the sparse segments hold {data} bytes, the header stores {stored}"
        ));
    }
    Ok(())
}

/// The PAX records this reader uses: `path`, `size`; GNU sparse records
/// (PAX sparse formats) are refused.
fn parse_pax(data: &[u8]) -> Result<(Option<Vec<u8>>, Option<u64>), String> {
    let (mut path, mut size) = (None, None);
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|b| *b == 0) {
            break;
        }
        let space = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or("a PAX record without a length")?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|l| *l > space + 1 && *l <= rest.len())
            .ok_or("a PAX record with a bad length")?;
        let record = &rest[space + 1..len];
        let record = record
            .strip_suffix(b"\n")
            .ok_or("a PAX record not ending in a newline")?;
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or("a PAX record without `=`")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => path = Some(value.to_vec()),
            b"size" => {
                size = Some(
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or("a PAX size that is not a number")?,
                )
            }
            k if k.starts_with(b"GNU.sparse.") => {
                return Err(
                    "a PAX sparse member (GNU.sparse.*); write it with `tar --format=oldgnu -S`"
                        .into(),
                )
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok((path, size))
}

/// Reads members one after the other from a tar stream.
#[derive(Debug)]
pub struct TarReader<R> {
    inner: R,
    pos: u64,
    /// Data bytes of the current member not read yet.
    left: u64,
    /// Padding after the current member's data.
    pad: u64,
    ended: bool,
}

impl<R: Read> TarReader<R> {
    /// A reader at the start of the archive `inner`.
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            pos: 0,
            left: 0,
            pad: 0,
            ended: false,
        }
    }

    /// Bytes of the archive consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The stream, e.g. to read what follows the end-of-archive blocks.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn io(&self, source: io::Error) -> TarError {
        TarError::Io {
            offset: self.pos,
            source,
        }
    }

    /// Reads exactly one block; `None` at a clean end of the stream.
    fn block(&mut self) -> Result<Option<[u8; 512]>, TarError> {
        let mut b = [0u8; 512];
        let mut got = 0;
        while got < b.len() {
            match self.inner.read(&mut b[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => {
                    return Err(self.io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the archive ends inside a header",
                    )))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        self.pos += BLOCK;
        Ok(Some(b))
    }

    /// Reads and discards `n` bytes.
    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        let mut buf = [0u8; 64 << 10];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            match self.inner.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(self.io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the archive ends {n} bytes before the member's data does"),
                    )))
                }
                Ok(k) => {
                    n -= k as u64;
                    self.pos += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(())
    }

    /// Reads a whole extension member's data (at most `limit` bytes).
    fn small_data(&mut self, size: u64, limit: u64, what: &str) -> Result<Vec<u8>, TarError> {
        if size > limit {
            return Err(TarError::Header {
                offset: self.pos,
                message: format!("a {what} of {size} bytes (at most {limit})"),
            });
        }
        let mut data = vec![0u8; size as usize];
        let mut got = 0;
        while got < data.len() {
            match self.inner.read(&mut data[got..]) {
                Ok(0) => {
                    return Err(self.io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the archive ends inside a {what}"),
                    )))
                }
                Ok(n) => {
                    got += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        self.skip(padding(size))?;
        Ok(data)
    }

    /// The next member (the unread data of the previous one is skipped),
    /// or `None` after the end-of-archive block or at the end of the
    /// stream.
    pub fn next_member(&mut self) -> Result<Option<Member>, TarError> {
        if self.ended {
            return Ok(None);
        }
        let rest = self.left + self.pad;
        self.skip(rest)?;
        self.left = 0;
        self.pad = 0;
        let (mut long_name, mut pax_path, mut pax_size) = (None, None, None);
        loop {
            let offset = self.pos;
            let Some(b) = self.block()? else {
                self.ended = true;
                return Ok(None);
            };
            let header = match parse_block(&b) {
                Ok(Block::End) => {
                    self.ended = true;
                    return Ok(None);
                }
                Ok(Block::Header(h)) => h,
                Err(message) => return Err(TarError::Header { offset, message }),
            };
            match header.typeflag {
                b'L' => {
                    let data = self.small_data(header.size, MAX_LONG_NAME, "long name")?;
                    long_name = Some(cstr(&data).to_vec());
                    continue;
                }
                b'K' => {
                    self.small_data(header.size, MAX_LONG_NAME, "long link name")?;
                    continue;
                }
                b'x' | b'g' => {
                    let data = self.small_data(header.size, MAX_PAX, "PAX header")?;
                    if header.typeflag == b'x' {
                        let (p, s) = parse_pax(&data)
                            .map_err(|message| TarError::Header { offset, message })?;
                        pax_path = p;
                        pax_size = s;
                    }
                    continue;
                }
                _ => {}
            }
            let size = pax_size.unwrap_or(header.size);
            let name = pax_path.or(long_name).unwrap_or(header.name);
            let (kind, real_size, segments) = match header.sparse {
                Some(SparseHeader {
                    mut segments,
                    mut extended,
                    real_size: real,
                }) => {
                    while extended {
                        let Some(ext) = self.block()? else {
                            return Err(self.io(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the archive ends inside a sparse map",
                            )));
                        };
                        for i in 0..21 {
                            push_segment(&mut segments, &ext[i * 24..i * 24 + 24])
                                .map_err(|message| TarError::Header { offset, message })?;
                        }
                        if segments.len() > MAX_SEGMENTS {
                            return Err(TarError::Header {
                                offset,
                                message: format!(
                                    "a sparse map of more than {MAX_SEGMENTS} segments"
                                ),
                            });
                        }
                        extended = ext[504] != 0;
                    }
                    check_sparse(&segments, size, real)
                        .map_err(|message| TarError::Header { offset, message })?;
                    (Kind::Sparse, real, segments)
                }
                None => {
                    let kind = match header.typeflag {
                        b'0' | 0 | b'7' => Kind::File,
                        b'5' => Kind::Dir,
                        b'1' | b'2' => Kind::Link,
                        other => Kind::Other(other),
                    };
                    (kind, size, Vec::new())
                }
            };
            // links and folders carry no data whatever their size field says
            let stored = if matches!(kind, Kind::Link | Kind::Dir) {
                0
            } else {
                size
            };
            self.left = stored;
            self.pad = padding(stored);
            return Ok(Some(Member {
                name: String::from_utf8_lossy(&name).into_owned(),
                kind,
                size: stored,
                real_size,
                segments,
                offset,
            }));
        }
    }
}

/// Padding after `size` bytes of data, to the next block.
fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// Reading a [`TarReader`] reads the current member's stored data.
impl<R: Read> Read for TarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.left) as usize;
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the archive ends {} bytes before the member's data does",
                    self.left
                ),
            ));
        }
        self.left -= n as u64;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: u64, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(size);
        h.set_entry_type(kind);
        h.set_cksum();
        h
    }

    fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            b.append(
                &header(name, data.len() as u64, tar::EntryType::Regular),
                *data,
            )
            .unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn members_in_order_with_data() {
        let long = "d/".repeat(80) + "long-name.vmdk";
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        b.append_data(&mut h, &long, &b"xyz"[..]).unwrap();
        let mut bytes = archive(&[("a.ovf", b"<x/>"), ("b.mf", b"")]);
        bytes.truncate(bytes.len() - 1024);
        bytes.extend(b.into_inner().unwrap());
        let mut r = TarReader::new(&bytes[..]);
        let a = r.next_member().unwrap().unwrap();
        assert_eq!((a.name.as_str(), a.kind, a.size), ("a.ovf", Kind::File, 4));
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "<x/>");
        // b.mf's data is not read: skipped
        assert_eq!(r.next_member().unwrap().unwrap().name, "b.mf");
        let l = r.next_member().unwrap().unwrap();
        assert_eq!((l.name.as_str(), l.size), (long.as_str(), 3));
        assert!(r.next_member().unwrap().is_none());
        assert!(r.next_member().unwrap().is_none());
    }

    #[test]
    fn damage_is_an_error() {
        let mut bytes = archive(&[("a", b"abc")]);
        bytes[10] ^= 1;
        let e = TarReader::new(&bytes[..]).next_member().unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        let bytes = archive(&[("a", &[7u8; 2000])]);
        let mut r = TarReader::new(&bytes[..1024]);
        r.next_member().unwrap();
        let e = r.next_member().unwrap_err();
        assert!(e.to_string().contains("ends"), "{e}");
    }

    #[test]
    fn numbers() {
        assert_eq!(numeric(b"00000000012\0"), Ok(10));
        assert_eq!(numeric(b"   12 \0"), Ok(10));
        assert_eq!(numeric(b"\0\0\0"), Ok(0));
        let mut b256 = [0u8; 12];
        b256[0] = 0x80;
        b256[4..].copy_from_slice(&(4u64 << 40).to_be_bytes());
        assert_eq!(numeric(&b256), Ok(4 << 40));
        b256[1] = 1;
        assert!(numeric(&b256).is_err());
        assert!(numeric(b"0009\0").is_err());
        assert!(numeric(b"7777777777777777777777777\0").is_err());
    }

    #[test]
    fn sparse_maps() {
        assert!(check_sparse(&[(0, 512), (4096, 512)], 1024, 8192).is_ok());
        assert!(check_sparse(&[(4096, 0)], 0, 4096).is_ok());
        assert!(check_sparse(&[(4096, 512), (0, 512)], 1024, 8192).is_err());
        assert!(check_sparse(&[(0, 512)], 1024, 8192).is_err());
        assert!(check_sparse(&[(8000, 512)], 512, 8192).is_err());
        assert!(check_sparse(&[(u64::MAX, 2)], 2, u64::MAX).is_err());
    }

    #[test]
    fn pax_records() {
        let rec = |k: &str, v: &str| {
            let body = format!("{k}={v}\n");
            let digits = (1..)
                .find(|d| (d + 1 + body.len()).to_string().len() == *d)
                .unwrap();
            format!("{} {body}", digits + 1 + body.len())
        };
        let data = rec("path", "x/disk.raw") + &rec("size", "12") + &rec("mtime", "1.5");
        assert_eq!(
            parse_pax(data.as_bytes()),
            Ok((Some(b"x/disk.raw".to_vec()), Some(12)))
        );
        assert!(parse_pax(rec("GNU.sparse.major", "1").as_bytes()).is_err());
        assert!(parse_pax(b"99 path=x\n").is_err());
        assert!(parse_pax(b"x").is_err());
    }
}
