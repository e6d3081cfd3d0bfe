//! kiln's streamOptimized VMDK writer: a version-3 sparse extent header
//! (compressed grains, markers, the grain directory at the end), the
//! embedded descriptor, zlib grains compressed in parallel and written in
//! order, each grain table after its grains, then the grain directory, the
//! footer and the end-of-stream marker, as VMware's "Virtual Disk Format
//! 5.0" specifies and QEMU's block/vmdk.c reads. Unallocated and all-zero
//! grains are skipped; the source is streamed (no full-size temporary
//! copy); the bytes written do not depend on the number of threads.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use libdeflater::{CompressionLvl, Compressor};

use super::source::{self, BlockPlan, Source, SourceError};
use super::write::{ExportError, ExportJob};
use crate::util::cancel::{Cancel, Cancelled};
use crate::util::io::ProgressFn;

/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// Sectors per grain.
pub const GRAIN_SECTORS: u64 = 128;
/// Bytes per grain (64 KiB).
pub const GRAIN_BYTES: u64 = GRAIN_SECTORS * SECTOR;
/// Grain table entries per grain table.
pub const GTES_PER_GT: u64 = 512;
/// `gdOffset` in the header of a stream: the directory is at the end.
pub const GD_AT_END: u64 = u64::MAX;
/// The header magic, `KDMV` on disk.
pub const MAGIC: u32 = 0x564d_444b;
/// Header flag: the newline-detection characters are valid.
pub const FLAG_NEWLINE_TEST: u32 = 1;
/// Header flag: grains are compressed.
pub const FLAG_COMPRESSED: u32 = 1 << 16;
/// Header flag: grains and metadata have markers.
pub const FLAG_MARKERS: u32 = 1 << 17;
/// `compressAlgorithm`: deflate (zlib streams, RFC 1950).
pub const COMPRESSION_DEFLATE: u16 = 1;
/// Marker type: end of stream.
pub const MARKER_EOS: u32 = 0;
/// Marker type: a grain table follows.
pub const MARKER_GT: u32 = 1;
/// Marker type: the grain directory follows.
pub const MARKER_GD: u32 = 2;
/// Marker type: the footer follows.
pub const MARKER_FOOTER: u32 = 3;
/// Sectors reserved for the embedded descriptor.
pub const DESCRIPTOR_SECTORS: u64 = 20;
/// Sectors before the first grain (the header and the descriptor, padded
/// to a grain, as VMware lays it out).
pub const OVERHEAD_SECTORS: u64 = GRAIN_SECTORS;
/// Grains per block read and compressed as one unit (1 MiB); a grain
/// table's span (512 grains) is a whole number of blocks.
const GRAINS_PER_BLOCK: u64 = 16;
/// The libdeflate level. Measured by scripts/bench-vmdk.sh on 1.9 GiB of
/// /usr in ext4 against `qemu-img convert` (zlib level 6): level 4 is
/// 1.011x its size at 3.7x its speed on 2 cores, level 6 0.990x at 2.0x.
pub const DEFAULT_LEVEL: i32 = 4;

/// Errors of the VMDK writer.
#[derive(Debug, thiserror::Error)]
pub enum VmdkError {
    /// Ctrl-C, SIGTERM or a dropped export.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    /// The source could not be read.
    #[error("reading the source disk")]
    Source(#[from] SourceError),
    /// The output could not be written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The disk is larger than a VMDK sparse extent can address.
    #[error("the disk ({0} bytes) is too large for one streamOptimized VMDK extent")]
    TooLarge(u64),
    /// A compression level libdeflate does not have.
    #[error("compression level {0} is not one of libdeflate's 0..=12")]
    Level(i32),
    /// A file that is not a well-formed streamOptimized VMDK.
    #[error("not a well-formed streamOptimized VMDK: {0}")]
    Malformed(String),
}

/// What the writer wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmdkStats {
    /// Bytes of the written file.
    pub file_bytes: u64,
    /// Grains written (compressed).
    pub grains_written: u64,
    /// Grains skipped (unallocated or all zeros).
    pub grains_skipped: u64,
}

/// How to write.
#[derive(Clone, Copy, Debug)]
pub struct VmdkOptions {
    /// Compression threads (`None`: every core).
    pub threads: Option<usize>,
    /// libdeflate level (1..=12).
    pub level: i32,
}

impl Default for VmdkOptions {
    fn default() -> Self {
        VmdkOptions {
            threads: None,
            level: DEFAULT_LEVEL,
        }
    }
}

/// The fields of a sparse extent header that vary (the rest are fixed for
/// a streamOptimized disk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// `version`.
    pub version: u32,
    /// `flags`.
    pub flags: u32,
    /// Disk size in sectors.
    pub capacity: u64,
    /// Sectors per grain.
    pub grain_size: u64,
    /// First sector of the embedded descriptor.
    pub descriptor_offset: u64,
    /// Sectors of the embedded descriptor.
    pub descriptor_size: u64,
    /// Grain table entries per grain table.
    pub gtes_per_gt: u32,
    /// Sector of the grain directory ([`GD_AT_END`] in the header).
    pub gd_offset: u64,
    /// Sectors before the first grain.
    pub overhead: u64,
    /// `compressAlgorithm`.
    pub compress_algorithm: u16,
}

impl Header {
    /// The header of a streamOptimized disk of `capacity` sectors.
    pub fn stream(capacity: u64) -> Header {
        Header {
            version: 3,
            flags: FLAG_NEWLINE_TEST | FLAG_COMPRESSED | FLAG_MARKERS,
            capacity,
            grain_size: GRAIN_SECTORS,
            descriptor_offset: 1,
            descriptor_size: DESCRIPTOR_SECTORS,
            gtes_per_gt: GTES_PER_GT as u32,
            gd_offset: GD_AT_END,
            overhead: OVERHEAD_SECTORS,
            compress_algorithm: COMPRESSION_DEFLATE,
        }
    }

    /// The 512 bytes of `SparseExtentHeader` (packed, little-endian).
    pub fn to_bytes(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..20].copy_from_slice(&self.capacity.to_le_bytes());
        b[20..28].copy_from_slice(&self.grain_size.to_le_bytes());
        b[28..36].copy_from_slice(&self.descriptor_offset.to_le_bytes());
        b[36..44].copy_from_slice(&self.descriptor_size.to_le_bytes());
        b[44..48].copy_from_slice(&self.gtes_per_gt.to_le_bytes());
        // 48..56 rgdOffset: no redundant directory in a stream
        b[56..64].copy_from_slice(&self.gd_offset.to_le_bytes());
        b[64..72].copy_from_slice(&self.overhead.to_le_bytes());
        // 72 uncleanShutdown = 0; the newline-detection characters
        b[73..77].copy_from_slice(b"\n \r\n");
        b[77..79].copy_from_slice(&self.compress_algorithm.to_le_bytes());
        b
    }

    /// Parses a header (or footer) sector.
    pub fn parse(b: &[u8]) -> Result<Header, VmdkError> {
        if b.len() < 512 {
            return Err(VmdkError::Malformed("the header is short".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        if u32_at(0) != MAGIC {
            return Err(VmdkError::Malformed("no KDMV magic".into()));
        }
        if &b[73..77] != b"\n \r\n" {
            return Err(VmdkError::Malformed(
                "the newline-detection characters are damaged (transferred as text?)".into(),
            ));
        }
        Ok(Header {
            version: u32_at(4),
            flags: u32_at(8),
            capacity: u64_at(12),
            grain_size: u64_at(20),
            descriptor_offset: u64_at(28),
            descriptor_size: u64_at(36),
            gtes_per_gt: u32_at(44),
            gd_offset: u64_at(56),
            overhead: u64_at(64),
            compress_algorithm: u16::from_le_bytes([b[77], b[78]]),
        })
    }
}

/// A metadata marker sector: `numSectors`, `size` 0, `type`.
pub fn marker(num_sectors: u64, kind: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..8].copy_from_slice(&num_sectors.to_le_bytes());
    b[12..16].copy_from_slice(&kind.to_le_bytes());
    b
}

/// The (cylinders, heads, sectors) geometry VMware gives a SCSI disk of
/// `capacity` sectors (255 heads, 63 sectors, cylinders capped at 65535).
pub fn geometry(capacity: u64) -> (u64, u64, u64) {
    let cylinders = (capacity / (255 * 63)).clamp(1, 65535);
    (cylinders, 255, 63)
}

/// The embedded descriptor of a disk of `capacity` sectors in the file
/// `file_name`. The content ID is derived from the name and size, so the
/// same source gives the same bytes.
pub fn descriptor(file_name: &str, capacity: u64) -> String {
    let (c, h, s) = geometry(capacity);
    let cid = fnv1a32(format!("{file_name}\0{capacity}").as_bytes());
    format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"streamOptimized\"\n\
         \n\
         # Extent description\n\
         RW {capacity} SPARSE \"{file_name}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.virtualHWVersion = \"4\"\n\
         ddb.geometry.cylinders = \"{c}\"\n\
         ddb.geometry.heads = \"{h}\"\n\
         ddb.geometry.sectors = \"{s}\"\n\
         ddb.adapterType = \"lsilogic\"\n\
         ddb.toolsInstallType = \"4\"\n"
    )
}

fn fnv1a32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The compressed grains of one block, framed (marker + zlib stream,
/// padded to a sector), and where each one starts in `bytes` (sectors).
#[derive(Debug, Default)]
struct Framed {
    bytes: Vec<u8>,
    grains: Vec<(u64, u64)>,
    skipped: u64,
}

/// Compresses the grains of block `index` (`data`: its bytes, whole
/// grains; `None`: zeros), skipping all-zero grains.
fn frame_block(c: &mut Compressor, index: u64, data: Option<&[u8]>) -> Framed {
    let mut out = Framed::default();
    let Some(data) = data else {
        out.skipped = GRAINS_PER_BLOCK;
        return out;
    };
    for (i, grain) in data.chunks(GRAIN_BYTES as usize).enumerate() {
        if grain.iter().all(|&b| b == 0) {
            out.skipped += 1;
            continue;
        }
        let grain_index = index * GRAINS_PER_BLOCK + i as u64;
        let start = out.bytes.len();
        let bound = c.zlib_compress_bound(grain.len());
        out.bytes.resize(start + 12 + bound, 0);
        let n = c
            .zlib_compress(grain, &mut out.bytes[start + 12..])
            .expect("the buffer holds the compress bound");
        out.bytes[start..start + 8].copy_from_slice(&(grain_index * GRAIN_SECTORS).to_le_bytes());
        out.bytes[start + 8..start + 12].copy_from_slice(&(n as u32).to_le_bytes());
        let framed = (12 + n as u64).div_ceil(SECTOR) * SECTOR;
        out.bytes.truncate(start + framed as usize);
        out.bytes.resize(start + framed as usize, 0);
        out.grains.push((grain_index, start as u64 / SECTOR));
    }
    out
}

/// The output stream: position in sectors, the grain table being filled,
/// the grain directory.
struct Stream<W: Write> {
    out: W,
    pos: u64,
    gt_index: u64,
    gt: Vec<u32>,
    gd: Vec<u32>,
}

impl<W: Write> Stream<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        debug_assert_eq!(bytes.len() as u64 % SECTOR, 0);
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64 / SECTOR;
        Ok(())
    }

    /// Writes the current grain table (if it has any grain) and starts
    /// table `next`.
    fn finish_gt(&mut self, next: u64) -> std::io::Result<()> {
        if self.gt.iter().any(|&e| e != 0) {
            let sectors = GTES_PER_GT * 4 / SECTOR;
            self.put(&marker(sectors, MARKER_GT))?;
            self.gd[self.gt_index as usize] = self.pos as u32;
            let bytes: Vec<u8> = self.gt.iter().flat_map(|e| e.to_le_bytes()).collect();
            self.put(&bytes)?;
            self.gt.fill(0);
        }
        self.gt_index = next;
        Ok(())
    }

    fn add(&mut self, index: u64, block: Framed) -> std::io::Result<()> {
        let gt = index * GRAINS_PER_BLOCK / GTES_PER_GT;
        if gt != self.gt_index {
            self.finish_gt(gt)?;
        }
        let base = self.pos;
        self.put(&block.bytes)?;
        for (grain, at) in block.grains {
            self.gt[(grain % GTES_PER_GT) as usize] = (base + at) as u32;
        }
        Ok(())
    }

    /// The last grain table, the directory, the footer, end of stream.
    fn finish(&mut self, capacity: u64) -> std::io::Result<()> {
        self.finish_gt(self.gt_index)?;
        let mut gd: Vec<u8> = self.gd.iter().flat_map(|e| e.to_le_bytes()).collect();
        gd.resize(
            (gd.len() as u64).div_ceil(SECTOR).max(1) as usize * SECTOR as usize,
            0,
        );
        self.put(&marker(gd.len() as u64 / SECTOR, MARKER_GD))?;
        let gd_offset = self.pos;
        self.put(&gd)?;
        self.put(&marker(1, MARKER_FOOTER))?;
        self.put(
            &Header {
                gd_offset,
                ..Header::stream(capacity)
            }
            .to_bytes(),
        )?;
        self.put(&marker(0, MARKER_EOS))
    }
}

/// Writes `source` (any format qemu-img reads) as a streamOptimized VMDK at
/// `dest` (a private temporary path: publishing is the caller's), with
/// `threads` compression threads (`None`: every core).
pub async fn write_stream_optimized(
    source: &Path,
    dest: &Path,
    threads: Option<usize>,
    cancel: &Cancel,
) -> Result<VmdkStats, VmdkError> {
    write_with(
        source,
        dest,
        VmdkOptions {
            threads,
            ..VmdkOptions::default()
        },
        cancel,
        None,
    )
    .await
}

/// [`write_stream_optimized`] with every option, reporting progress every
/// few seconds. On error (and when cancelled) `dest` is removed.
pub async fn write_with(
    source: &Path,
    dest: &Path,
    options: VmdkOptions,
    cancel: &Cancel,
    progress: Option<ProgressFn<'_>>,
) -> Result<VmdkStats, VmdkError> {
    cancel.check()?;
    let level = CompressionLvl::new(options.level).map_err(|_| VmdkError::Level(options.level))?;
    let mut src = Source::open(source).await?;
    let size = src.virtual_size();
    let dest = dest.to_path_buf();
    let job_cancel = cancel.clone();
    let threads = source::worker_threads(options.threads);
    source::run_blocking(
        move |done| {
            let result = write_blocking(&mut src, &dest, level, threads, &job_cancel, &done);
            if result.is_err() {
                let _ = std::fs::remove_file(&dest);
            }
            result
        },
        "writing the VMDK",
        size,
        cancel,
        progress,
    )
    .await
}

fn write_blocking(
    src: &mut Source,
    dest: &Path,
    level: CompressionLvl,
    threads: usize,
    cancel: &Cancel,
    done: &std::sync::atomic::AtomicU64,
) -> Result<VmdkStats, VmdkError> {
    let size = src.virtual_size();
    let capacity = size.div_ceil(SECTOR);
    let grains = capacity.div_ceil(GRAIN_SECTORS);
    let gts = grains.div_ceil(GTES_PER_GT);
    // grain table entries are 32-bit sector numbers
    if capacity > u64::from(u32::MAX) {
        return Err(VmdkError::TooLarge(size));
    }
    let io = |what| {
        let path = dest.to_path_buf();
        move |source| VmdkError::Io { what, path, source }
    };
    let file = File::create(dest).map_err(io("create"))?;
    let mut s = Stream {
        out: BufWriter::with_capacity(4 << 20, file),
        pos: 0,
        gt_index: 0,
        gt: vec![0; GTES_PER_GT as usize],
        gd: vec![0; gts as usize],
    };
    let name = dest
        .file_name()
        .map_or_else(|| "disk.vmdk".into(), |n| n.to_string_lossy().into_owned());
    let mut head = Header::stream(capacity).to_bytes().to_vec();
    let desc = descriptor(&name, capacity);
    if desc.len() as u64 > DESCRIPTOR_SECTORS * SECTOR {
        return Err(VmdkError::Malformed(format!(
            "the descriptor for {name} does not fit its {DESCRIPTOR_SECTORS} sectors"
        )));
    }
    head.extend_from_slice(desc.as_bytes());
    head.resize((OVERHEAD_SECTORS * SECTOR) as usize, 0);
    s.put(&head).map_err(io("write"))?;
    let mut written = 0;
    let mut skipped = 0;
    let block_bytes = GRAINS_PER_BLOCK * GRAIN_BYTES;
    let blocks = grains.div_ceil(GRAINS_PER_BLOCK);
    let mut last = 0u64;
    source::par_blocks(
        src,
        BlockPlan {
            block_size: block_bytes as usize,
            threads,
            length: size,
            zero_blocks: false,
        },
        cancel,
        || {
            let mut c = Compressor::new(level);
            move |b: &source::Block<'_>| frame_block(&mut c, b.index, b.data)
        },
        |index, framed: Framed| {
            written += framed.grains.len() as u64;
            skipped += framed.skipped + (index - last) * GRAINS_PER_BLOCK;
            last = index + 1;
            s.add(index, framed).map_err(io("write"))?;
            done.store((index + 1) * block_bytes, Ordering::Relaxed);
            Ok::<(), VmdkError>(())
        },
    )?;
    skipped += (blocks - last) * GRAINS_PER_BLOCK;
    // the last block's grains past the disk's end are not grains at all
    skipped -= blocks * GRAINS_PER_BLOCK - grains;
    cancel.check()?;
    s.finish(capacity).map_err(io("write"))?;
    let file = s
        .out
        .into_inner()
        .map_err(|e| io("write")(e.into_error()))?;
    file.sync_all().map_err(io("flush"))?;
    Ok(VmdkStats {
        file_bytes: s.pos * SECTOR,
        grains_written: written,
        grains_skipped: skipped,
    })
}

/// What [`scan`] found walking a stream's markers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The header.
    pub header: Header,
    /// The embedded descriptor's text.
    pub descriptor: String,
    /// Grain markers.
    pub grains: u64,
    /// Grain table markers.
    pub grain_tables: u64,
    /// The sector the grain directory marker points past.
    pub gd_sector: Option<u64>,
    /// The footer.
    pub footer: Option<Header>,
    /// Whether the stream ends with an end-of-stream marker, at the end.
    pub eos: bool,
}

/// The most sectors [`scan`] accepts before the first grain (64 MiB; a
/// streamOptimized VMDK has 128).
pub const MAX_OVERHEAD_SECTORS: u64 = 1 << 17;

/// Walks a streamOptimized VMDK from its header through every marker to
/// the end-of-stream marker.
pub fn scan(mut r: impl Read) -> Result<Layout, VmdkError> {
    let io = |source| VmdkError::Io {
        what: "read",
        path: PathBuf::from("(vmdk stream)"),
        source,
    };
    let mut sector = [0u8; 512];
    r.read_exact(&mut sector).map_err(io)?;
    let header = Header::parse(&sector)?;
    // the header's numbers are the file's: bounded before use
    if header.overhead > MAX_OVERHEAD_SECTORS {
        return Err(VmdkError::Malformed(format!(
            "an overhead of {} sectors before the first grain (at most {MAX_OVERHEAD_SECTORS})",
            header.overhead
        )));
    }
    let mut rest = vec![0u8; ((header.overhead.max(1) - 1) * SECTOR) as usize];
    r.read_exact(&mut rest).map_err(io)?;
    let sectors = |n: u64| usize::try_from(n.saturating_mul(SECTOR)).unwrap_or(usize::MAX);
    let d0 = sectors(header.descriptor_offset.max(1) - 1);
    let d1 = d0
        .saturating_add(sectors(header.descriptor_size))
        .min(rest.len());
    let text = &rest[d0.min(d1)..d1];
    let descriptor = String::from_utf8_lossy(text)
        .trim_end_matches('\0')
        .to_string();
    let mut layout = Layout {
        header,
        descriptor,
        grains: 0,
        grain_tables: 0,
        gd_sector: None,
        footer: None,
        eos: false,
    };
    let mut pos = header.overhead;
    let skip = |r: &mut dyn Read, n: u64| -> Result<(), VmdkError> {
        std::io::copy(&mut r.take(n), &mut std::io::sink()).map_err(io)?;
        Ok(())
    };
    loop {
        r.read_exact(&mut sector).map_err(io)?;
        pos = pos.saturating_add(1);
        let value = u64::from_le_bytes(sector[0..8].try_into().expect("8 bytes"));
        let size = u32::from_le_bytes(sector[8..12].try_into().expect("4 bytes"));
        if size != 0 {
            layout.grains += 1;
            if value % GRAIN_SECTORS != 0 || value >= header.capacity {
                return Err(VmdkError::Malformed(format!(
                    "a grain marker at sector {} has LBA {value}",
                    pos - 1
                )));
            }
            let more = (12 + u64::from(size)).div_ceil(SECTOR) - 1;
            skip(&mut r, more * SECTOR)?;
            pos = pos.saturating_add(more);
            continue;
        }
        match u32::from_le_bytes(sector[12..16].try_into().expect("4 bytes")) {
            MARKER_EOS => {
                let mut extra = [0u8; 1];
                layout.eos = r.read(&mut extra).map_err(io)? == 0;
                return Ok(layout);
            }
            MARKER_GT => layout.grain_tables += 1,
            MARKER_GD => layout.gd_sector = Some(pos),
            MARKER_FOOTER => {
                let mut f = [0u8; 512];
                r.read_exact(&mut f).map_err(io)?;
                layout.footer = Some(Header::parse(&f)?);
                pos = pos.saturating_add(1);
                continue;
            }
            other => {
                return Err(VmdkError::Malformed(format!(
                    "unknown marker type {other} at sector {}",
                    pos - 1
                )))
            }
        }
        skip(&mut r, value.saturating_mul(SECTOR))?;
        pos = pos.saturating_add(value);
    }
}

/// The `vmdk` export: writes `job.file_name` in `job.dir`; returns the
/// files written, relative to `job.dir`.
pub async fn export(
    job: &ExportJob<'_>,
    cancel: &Cancel,
    progress: ProgressFn<'_>,
) -> Result<Vec<PathBuf>, ExportError> {
    write_with(
        job.source,
        &job.dir.join(job.file_name),
        VmdkOptions {
            threads: job.threads,
            ..VmdkOptions::default()
        },
        cancel,
        Some(progress),
    )
    .await
    .map_err(|e| match e {
        VmdkError::Cancelled(c) => ExportError::Cancelled(c),
        other => ExportError::Vmdk(other),
    })?;
    Ok(vec![PathBuf::from(job.file_name)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let h = Header::stream(4_194_304);
        let b = h.to_bytes();
        assert_eq!(&b[0..4], b"KDMV");
        assert_eq!(&b[4..8], &[3, 0, 0, 0]);
        assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 0x30001);
        assert_eq!(&b[56..64], &[0xff; 8]);
        assert_eq!(u16::from_le_bytes([b[77], b[78]]), 1);
        assert_eq!(Header::parse(&b).unwrap(), h);
        let mut text = b;
        text[75] = b'\n';
        assert!(Header::parse(&text).is_err());
    }

    #[test]
    fn hostile_headers_are_errors() {
        // an overhead that would allocate exabytes
        let mut h = Header::stream(8192);
        h.overhead = u64::MAX;
        let e = scan(&h.to_bytes()[..]).unwrap_err();
        assert!(e.to_string().contains("overhead"), "{e}");
        // a descriptor beyond the overhead and a marker skipping u64::MAX
        // sectors: read errors, no overflow
        let mut h = Header::stream(8192);
        h.overhead = 2;
        h.descriptor_size = u64::MAX;
        let mut bytes = h.to_bytes().to_vec();
        bytes.extend([0u8; 512]);
        bytes.extend(marker(u64::MAX, MARKER_GT));
        assert!(scan(&bytes[..]).is_err());
    }

    #[test]
    fn markers_and_descriptor() {
        let m = marker(4, MARKER_GT);
        assert_eq!(m[0], 4);
        assert_eq!(m[12], 1);
        assert!(m[8..12].iter().all(|&b| b == 0));
        let d = descriptor("x.vmdk", 2 << 21);
        assert!(d.contains("createType=\"streamOptimized\""));
        assert!(d.contains("RW 4194304 SPARSE \"x.vmdk\""));
        assert!(d.contains("ddb.adapterType = \"lsilogic\""));
        assert!(d.contains("ddb.geometry.cylinders = \"261\""));
        assert_eq!(d, descriptor("x.vmdk", 2 << 21), "deterministic");
        assert_eq!(geometry(10).0, 1);
    }

    #[test]
    fn zero_grains_are_skipped_and_grains_decompress() {
        let mut c = Compressor::new(CompressionLvl::new(6).unwrap());
        let mut data = vec![0u8; (GRAINS_PER_BLOCK * GRAIN_BYTES) as usize];
        data[3 * GRAIN_BYTES as usize + 5] = 7;
        let f = frame_block(&mut c, 2, Some(&data));
        assert_eq!(f.skipped, GRAINS_PER_BLOCK - 1);
        assert_eq!(f.grains, [(2 * GRAINS_PER_BLOCK + 3, 0)]);
        assert_eq!(f.bytes.len() % 512, 0);
        let lba = u64::from_le_bytes(f.bytes[0..8].try_into().unwrap());
        assert_eq!(lba, (2 * GRAINS_PER_BLOCK + 3) * GRAIN_SECTORS);
        let n = u32::from_le_bytes(f.bytes[8..12].try_into().unwrap()) as usize;
        let mut back = vec![0u8; GRAIN_BYTES as usize];
        let got = libdeflater::Decompressor::new()
            .zlib_decompress(&f.bytes[12..12 + n], &mut back)
            .unwrap();
        assert_eq!(got, GRAIN_BYTES as usize);
        assert_eq!(
            back[..],
            data[3 * GRAIN_BYTES as usize..4 * GRAIN_BYTES as usize]
        );
        assert_eq!(frame_block(&mut c, 0, None).skipped, GRAINS_PER_BLOCK);
    }
}
