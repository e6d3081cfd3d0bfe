//! Reading the member names of an initramfs, as the kernel unpacks it: one
//! or more segments, each either an uncompressed cpio archive (`newc`
//! `070701` or `crc` `070702` headers, 4-byte padding, ending in
//! `TRAILER!!!`) — often an early-microcode archive first — or a
//! compressed stream holding one or more cpio archives. Segments may be
//! separated by zero padding.
//!
//! gzip and zstd are decompressed (streaming: only the names are kept, file
//! contents are skipped); xz, lzma, lz4, bzip2 and lzo are recognised by
//! their magic and reported as [`InitramfsError::Unsupported`].
//!
//! Each compressed member (gzip member, zstd frame) is read as its own
//! stream of whole cpio archives; a cpio header split across two members
//! is reported as truncated.

use std::io::{self, BufRead, BufReader, Read, Write};

/// How one segment of an initramfs is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// An uncompressed cpio archive.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// Zstandard (`28 b5 2f fd`).
    Zstd,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
    /// lzma (`5d 00 00`).
    Lzma,
    /// LZ4, legacy (`02 21 4c 18`, what the kernel reads) or frame format.
    Lz4,
    /// bzip2 (`BZh`).
    Bzip2,
    /// lzop (`89 4c 5a 4f`).
    Lzo,
}

impl Compression {
    /// Its usual name (`zstd`, `xz`…; `none` for plain cpio).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Lzma => "lzma",
            Compression::Lz4 => "lz4",
            Compression::Bzip2 => "bzip2",
            Compression::Lzo => "lzo",
        }
    }

    /// Whether kiln can decompress it.
    pub fn readable(self) -> bool {
        matches!(
            self,
            Compression::None | Compression::Gzip | Compression::Zstd
        )
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an initramfs could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// A segment uses a compression kiln does not decompress.
    #[error("{compression} compression at byte {offset}: kiln reads gzip and zstd initramfs only")]
    Unsupported {
        /// The compression recognised by its magic.
        compression: Compression,
        /// Where the segment starts in the file.
        offset: u64,
    },
    /// Neither a cpio header nor a known compression magic.
    #[error("no cpio header or compression magic at {at} (found {found})")]
    BadMagic {
        /// Where, e.g. `byte 0` or `byte 12 of the zstd data at byte 512`.
        at: String,
        /// The first bytes found there, in hex.
        found: String,
    },
    /// The data ends inside a header, name or file, or before `TRAILER!!!`.
    #[error("truncated at {at}: {what}")]
    Truncated {
        /// Where.
        at: String,
        /// What was being read.
        what: &'static str,
    },
    /// A cpio header field is not hexadecimal, or a name is absurdly long.
    #[error("bad cpio header at {at}: {what}")]
    BadHeader {
        /// Where.
        at: String,
        /// Which field and why.
        what: String,
    },
    /// The compressed data is damaged (bad block, checksum mismatch).
    #[error("damaged {compression} data in the segment at byte {offset}: {source}")]
    Corrupt {
        /// The compression.
        compression: Compression,
        /// Where the segment starts in the file.
        offset: u64,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
    /// Reading the file itself failed.
    #[error("reading the initramfs: {0}")]
    Io(#[source] io::Error),
}

/// What starts at some point of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Magic {
    /// A cpio `newc` or `crc` header.
    Cpio,
    /// A compressed stream.
    Compressed(Compression),
}

/// Recognises the segment starting with `head` (at least 6 bytes to tell
/// all formats apart); `None` for anything else.
pub fn detect(head: &[u8]) -> Option<Magic> {
    const TABLE: [(&[u8], Compression); 8] = [
        (&[0x1f, 0x8b], Compression::Gzip),
        (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
        (&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], Compression::Xz),
        (&[0x5d, 0x00, 0x00], Compression::Lzma),
        (&[0x02, 0x21, 0x4c, 0x18], Compression::Lz4),
        (&[0x04, 0x22, 0x4d, 0x18], Compression::Lz4),
        (b"BZh", Compression::Bzip2),
        (&[0x89, 0x4c, 0x5a, 0x4f], Compression::Lzo),
    ];
    if head.starts_with(b"070701") || head.starts_with(b"070702") {
        return Some(Magic::Cpio);
    }
    TABLE
        .iter()
        .find(|(m, _)| head.starts_with(m))
        .map(|&(_, c)| Magic::Compressed(c))
}

/// The kernel module a member path is (`…/virtio_blk.ko`, also `.ko.xz`,
/// `.ko.zst`, `.ko.gz`), with `-` written `_` as the kernel does.
pub fn module_name(member: &str) -> Option<String> {
    let base = member.rsplit('/').next().unwrap_or(member);
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| base.strip_suffix(ext))?;
    (!stem.is_empty()).then(|| stem.replace('-', "_"))
}

/// The longest member name accepted (Linux's PATH_MAX).
const NAME_MAX: usize = 4096;
const HEADER: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// A reader that counts the bytes taken from it, for error positions.
struct Counted<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.pos += amt as u64;
        self.inner.consume(amt);
    }
}

/// Where a stream's bytes are, for messages.
#[derive(Clone, Copy)]
struct Place {
    /// `None` for the file itself; the segment's compression and file offset otherwise.
    segment: Option<(Compression, u64)>,
}

impl Place {
    fn at(self, pos: u64) -> String {
        match self.segment {
            None => format!("byte {pos}"),
            Some((c, off)) => format!("byte {pos} of the {c} data at byte {off}"),
        }
    }
}

/// Skips zero bytes; returns false at the end of the stream.
fn skip_zeros<R: BufRead>(r: &mut Counted<R>) -> io::Result<bool> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        let zeros = buf.iter().take_while(|&&b| b == 0).count();
        let all = zeros == buf.len();
        r.consume(zeros);
        if !all {
            return Ok(true);
        }
    }
}

/// Up to `n` bytes at the current position, without consuming them.
fn peek<R: BufRead>(r: &mut Counted<R>, n: usize) -> io::Result<Vec<u8>> {
    let buf = r.fill_buf()?;
    Ok(buf[..buf.len().min(n)].to_vec())
}

fn hex_field(
    h: &[u8],
    at: usize,
    name: &str,
    place: Place,
    pos: u64,
) -> Result<u64, InitramfsError> {
    std::str::from_utf8(&h[at..at + 8])
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(|| InitramfsError::BadHeader {
            at: place.at(pos),
            what: format!("{name} is not 8 hex digits"),
        })
}

/// Reads exactly `buf.len()` bytes; the end of the stream is `Truncated`.
fn fill<R: Read>(
    r: &mut Counted<R>,
    buf: &mut [u8],
    what: &'static str,
    place: Place,
    io_err: &dyn Fn(io::Error) -> InitramfsError,
) -> Result<(), InitramfsError> {
    let start = r.pos;
    r.read_exact(buf)
        .map_err(|e| truncated_or(e, place.at(start), what, io_err))
}

fn truncated_or(
    e: io::Error,
    at: String,
    what: &'static str,
    io_err: &dyn Fn(io::Error) -> InitramfsError,
) -> InitramfsError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        InitramfsError::Truncated { at, what }
    } else {
        io_err(e)
    }
}

/// Bytes of padding after `len` bytes to reach a multiple of 4.
fn pad4(len: u64) -> u64 {
    (4 - len % 4) % 4
}

/// Reads one cpio archive up to and including its trailer (and its
/// padding), calling `on_name` for every member but the trailer.
fn archive<R: BufRead>(
    r: &mut Counted<R>,
    place: Place,
    io_err: &dyn Fn(io::Error) -> InitramfsError,
    on_name: &mut dyn FnMut(&str),
) -> Result<(), InitramfsError> {
    loop {
        let pos = r.pos;
        let mut h = [0u8; HEADER];
        fill(
            r,
            &mut h,
            "a cpio header (no TRAILER!!! yet)",
            place,
            io_err,
        )?;
        if detect(&h) != Some(Magic::Cpio) {
            return Err(InitramfsError::BadMagic {
                at: place.at(pos),
                found: hex::encode(&h[..8]),
            });
        }
        let size = hex_field(&h, 54, "c_filesize", place, pos)?;
        let namesize = hex_field(&h, 94, "c_namesize", place, pos)? as usize;
        if namesize == 0 || namesize > NAME_MAX {
            return Err(InitramfsError::BadHeader {
                at: place.at(pos),
                what: format!("c_namesize {namesize} is not between 1 and {NAME_MAX}"),
            });
        }
        let mut name = vec![0u8; namesize + pad4((HEADER + namesize) as u64) as usize];
        fill(r, &mut name, "a member name", place, io_err)?;
        name.truncate(namesize);
        if name.last() == Some(&0) {
            name.pop();
        }
        let name = String::from_utf8_lossy(&name);
        let body = size + pad4(size);
        let start = r.pos;
        let skipped = io::copy(&mut r.by_ref().take(body), &mut io::sink())
            .map_err(|e| truncated_or(e, place.at(start), "a member's data", io_err))?;
        if skipped < body {
            return Err(InitramfsError::Truncated {
                at: place.at(r.pos),
                what: "a member's data",
            });
        }
        if name == TRAILER {
            return Ok(());
        }
        on_name(&name);
    }
}

/// Reads a decompressed stream: whole cpio archives, zero padding between,
/// up to its end.
fn archives<R: BufRead>(
    r: &mut Counted<R>,
    place: Place,
    io_err: &dyn Fn(io::Error) -> InitramfsError,
    on_name: &mut dyn FnMut(&str),
) -> Result<(), InitramfsError> {
    while skip_zeros(r).map_err(|e| truncated_or(e, place.at(r.pos), "padding", io_err))? {
        archive(r, place, io_err, on_name)?;
    }
    Ok(())
}

/// Lists an initramfs: calls `on_name` with every member path (file
/// contents are skipped, nothing but the current name is held) and
/// returns the storage of each segment in order.
pub fn scan<R: Read>(
    source: R,
    mut on_name: impl FnMut(&str),
) -> Result<Vec<Compression>, InitramfsError> {
    let mut r = Counted {
        inner: BufReader::with_capacity(64 << 10, source),
        pos: 0,
    };
    let file = Place { segment: None };
    let mut segments = Vec::new();
    while skip_zeros(&mut r).map_err(InitramfsError::Io)? {
        let offset = r.pos;
        let head = peek(&mut r, 6).map_err(InitramfsError::Io)?;
        match detect(&head) {
            Some(Magic::Cpio) => {
                archive(&mut r, file, &InitramfsError::Io, &mut on_name)?;
                segments.push(Compression::None);
            }
            Some(Magic::Compressed(c)) if c.readable() => {
                compressed(&mut r, c, offset, &mut on_name)?;
                segments.push(c);
            }
            Some(Magic::Compressed(compression)) => {
                return Err(InitramfsError::Unsupported {
                    compression,
                    offset,
                })
            }
            None => {
                return Err(InitramfsError::BadMagic {
                    at: file.at(offset),
                    found: hex::encode(&head),
                })
            }
        }
    }
    if segments.is_empty() {
        return Err(InitramfsError::Truncated {
            at: file.at(0),
            what: "the file is empty or all zeros",
        });
    }
    Ok(segments)
}

/// A decompressed stream, buffered and counted from 0.
fn stream<R: Read>(inner: R) -> Counted<BufReader<R>> {
    Counted {
        inner: BufReader::with_capacity(64 << 10, inner),
        pos: 0,
    }
}

/// Reads one gzip member or zstd frame starting at `offset`, leaving `r`
/// just after it.
fn compressed<R: BufRead>(
    r: &mut Counted<R>,
    c: Compression,
    offset: u64,
    on_name: &mut dyn FnMut(&str),
) -> Result<(), InitramfsError> {
    let place = Place {
        segment: Some((c, offset)),
    };
    let corrupt = move |source: io::Error| InitramfsError::Corrupt {
        compression: c,
        offset,
        source,
    };
    match c {
        Compression::Gzip => {
            let mut d = stream(flate2::bufread::GzDecoder::new(&mut *r));
            archives(&mut d, place, &corrupt, on_name)
        }
        Compression::Zstd => {
            let mut dec = ruzstd::decoding::StreamingDecoder::new(&mut *r).map_err(|e| {
                InitramfsError::Corrupt {
                    compression: c,
                    offset,
                    source: io::Error::other(e.to_string()),
                }
            })?;
            archives(&mut stream(&mut dec), place, &corrupt, on_name)?;
            let f = &dec.decoder;
            match (f.get_checksum_from_data(), f.get_calculated_checksum()) {
                (Some(want), Some(got)) if want != got => Err(corrupt(io::Error::other(format!(
                    "content checksum {got:08x} does not match the frame's {want:08x}"
                )))),
                _ => Ok(()),
            }
        }
        other => Err(InitramfsError::Unsupported {
            compression: other,
            offset,
        }),
    }
}

/// Writes a `newc` cpio archive of regular files (mode 0644) with its
/// trailer, as `cpio -o -H newc` does; for building test initramfs images.
pub fn write_newc<W: Write>(mut w: W, files: &[(&str, &[u8])]) -> io::Result<()> {
    let mut written = 0u64;
    let trailer: &[u8] = &[];
    for (i, (name, data)) in files
        .iter()
        .copied()
        .chain(std::iter::once((TRAILER, trailer)))
        .enumerate()
    {
        let mode = if name == TRAILER { 0 } else { 0o100644 };
        let namesize = name.len() + 1;
        let header = format!(
            "070701{:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
            i + 1,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            0
        );
        w.write_all(header.as_bytes())?;
        w.write_all(name.as_bytes())?;
        w.write_all(&[0])?;
        written += (HEADER + namesize) as u64;
        w.write_all(&[0; 3][..pad4(written) as usize])?;
        written += pad4(written);
        w.write_all(data)?;
        written += data.len() as u64;
        w.write_all(&[0; 3][..pad4(written) as usize])?;
        written += pad4(written);
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: [(&str, &[u8]); 4] = [
        ("usr", b""),
        (
            "usr/lib/modules/6.1.0-13-amd64/kernel/drivers/nvme/host/nvme.ko",
            b"\x7fELF nvme",
        ),
        (
            "usr/lib/modules/6.1.0-13-amd64/kernel/drivers/block/xen-blkfront.ko.zst",
            b"\x28\xb5\x2f\xfd",
        ),
        ("init", b"#!/bin/sh\n"),
    ];

    fn cpio(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        write_newc(&mut v, files).unwrap();
        v
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn names(data: &[u8]) -> Result<(Vec<Compression>, Vec<String>), InitramfsError> {
        let mut names = Vec::new();
        let segs = scan(data, |n| names.push(n.to_string()))?;
        Ok((segs, names))
    }

    fn main_names() -> Vec<String> {
        MAIN.iter().map(|(n, _)| n.to_string()).collect()
    }

    /// A microcode archive then the main one, as Debian and dracut write them.
    fn microcode() -> Vec<u8> {
        let mut v = cpio(&[
            ("kernel", b""),
            ("kernel/x86/microcode/GenuineIntel.bin", &[0xAB; 1001]),
        ]);
        v.resize(v.len().next_multiple_of(512), 0);
        v
    }

    #[test]
    fn plain_and_gzip_archives() {
        let plain = cpio(&MAIN);
        assert_eq!(
            names(&plain).unwrap(),
            (vec![Compression::None], main_names())
        );
        assert_eq!(
            names(&gzip(&plain)).unwrap(),
            (vec![Compression::Gzip], main_names())
        );
    }

    /// Made with `zstd -19 --check` from `write_newc(MAIN)` (the zstd CLI
    /// writes one frame with a content checksum).
    const ZSTD_FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/initramfs/main.cpio.zst");

    #[test]
    fn zstd_archive_from_the_zstd_cli() {
        assert_eq!(
            names(ZSTD_FIXTURE).unwrap(),
            (vec![Compression::Zstd], main_names())
        );
        let mut bad = ZSTD_FIXTURE.to_vec();
        let n = bad.len();
        bad[n - 2] ^= 0xff; // in the checksum
        assert!(
            matches!(
                names(&bad),
                Err(InitramfsError::Corrupt {
                    compression: Compression::Zstd,
                    ..
                })
            ),
            "{:?}",
            names(&bad)
        );
    }

    #[test]
    fn microcode_then_compressed_main() {
        for (main, c) in [
            (gzip(&cpio(&MAIN)), Compression::Gzip),
            (ZSTD_FIXTURE.to_vec(), Compression::Zstd),
        ] {
            let mut img = microcode();
            img.extend(&main);
            img.extend([0u8; 7]); // trailing padding
            let (segs, got) = names(&img).unwrap();
            assert_eq!(segs, vec![Compression::None, c]);
            assert_eq!(got[1], "kernel/x86/microcode/GenuineIntel.bin");
            assert_eq!(got[2..], main_names()[..]);
        }
    }

    #[test]
    fn truncated_archives_are_errors() {
        let plain = cpio(&MAIN);
        for cut in [50, 110, 200, plain.len() - 120] {
            let r = names(&plain[..cut]);
            assert!(
                matches!(r, Err(InitramfsError::Truncated { .. })),
                "cut {cut}: {r:?}"
            );
        }
        let gz = gzip(&plain);
        let r = names(&gz[..gz.len() - 30]);
        assert!(
            matches!(r, Err(InitramfsError::Truncated { ref at, .. }) if at.contains("gzip data at byte 0")),
            "{r:?}"
        );
        let r = names(&ZSTD_FIXTURE[..ZSTD_FIXTURE.len() - 10]);
        assert!(r.is_err(), "{r:?}");
        assert!(matches!(
            names(&[0u8; 64]),
            Err(InitramfsError::Truncated { .. })
        ));
    }

    #[test]
    fn bad_magic_and_unsupported_compressions() {
        let r = names(b"\x7fELF\x02\x01\x01\x00 not an initramfs");
        assert!(
            matches!(r, Err(InitramfsError::BadMagic { ref at, ref found }) if at == "byte 0" && found == "7f454c460201"),
            "{r:?}"
        );
        let mut img = microcode();
        let at = img.len() as u64;
        img.extend([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0]);
        let r = names(&img);
        assert!(
            matches!(r, Err(InitramfsError::Unsupported { compression: Compression::Xz, offset }) if offset == at),
            "{r:?}"
        );
        assert!(r.unwrap_err().to_string().contains("xz compression"));
        for (magic, c) in [
            (&[0x02u8, 0x21, 0x4c, 0x18][..], Compression::Lz4),
            (&[0x5d, 0, 0, 0x80, 0], Compression::Lzma),
            (b"BZh91AY", Compression::Bzip2),
        ] {
            assert_eq!(detect(magic), Some(Magic::Compressed(c)));
        }
        let mut hdr = cpio(&MAIN);
        hdr[60] = b'g'; // inside c_filesize
        assert!(matches!(names(&hdr), Err(InitramfsError::BadHeader { .. })));
    }

    #[test]
    fn module_names() {
        assert_eq!(
            module_name("lib/modules/6.1/kernel/drivers/block/xen-blkfront.ko.xz").as_deref(),
            Some("xen_blkfront")
        );
        assert_eq!(module_name("a/nvme.ko").as_deref(), Some("nvme"));
        assert_eq!(module_name("nvme.ko.zst").as_deref(), Some("nvme"));
        assert_eq!(module_name("a/nvme.ko.bak"), None);
        assert_eq!(module_name("a/.ko"), None);
    }
}
