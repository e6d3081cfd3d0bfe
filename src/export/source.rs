//! Reading a source disk image of any format qemu-img reads, streaming and
//! with no full-size temporary copy: its virtual size, its data / zero /
//! hole extents (`qemu-img map`), and its bytes at offsets; and the block
//! pipeline the writers share (read in order, transform on worker threads,
//! write in order).
//!
//! Raw files are read directly (`pread`). Every other format is read
//! through `qemu-nbd --read-only` on a private unix socket, with the small
//! NBD client below: qemu's own block drivers decode the format (so every
//! format and every corruption check qemu has is supported), and kiln
//! reads bytes at offsets without converting the image first. qemu-nbd is
//! a supervised child (own process group, killed on drop and when kiln
//! dies).
//!
//! A corrupt or truncated source is an error, never zeros: qcow2, VMDK
//! and VHDX sources must pass `qemu-img check` (leaks aside) when opened,
//! data extents that `qemu-img map` places beyond the end of the file (a
//! truncated image reads those as zeros) are refused, and qemu-nbd's read
//! errors come back as NBD errors.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::disk::img::{self, Format, ImgError};
use crate::util::cancel::{Cancel, Cancelled};
use crate::util::io::ProgressFn;
use crate::util::task::{Running, Task, TaskError};

/// How long qemu-nbd may take to open the image and listen.
const NBD_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors of reading a source disk.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The format could not be detected (the file cannot be read).
    #[error("detecting the format of {}", path.display())]
    Format {
        /// The source.
        path: PathBuf,
        /// The cause.
        #[source]
        source: ImgError,
    },
    /// `qemu-img check` could not check the image.
    #[error("checking {}", path.display())]
    Check {
        /// The source.
        path: PathBuf,
        /// The cause.
        #[source]
        source: ImgError,
    },
    /// `qemu-img map` or `qemu-nbd` could not be started, or refused the
    /// image (the task's error names the image, the command and its
    /// messages, or the package to install).
    #[error(transparent)]
    Tool(#[from] TaskError),
    /// `qemu-img map` printed something this module does not understand.
    #[error("{}: cannot parse the output of `qemu-img map`: {source}", path.display())]
    Map {
        /// The source.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The image is damaged (truncated, corrupt) or empty.
    #[error("{}: {message}", path.display())]
    Corrupt {
        /// The source.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The NBD server broke the protocol or reported an error.
    #[error("{}: reading through qemu-nbd: {message}", path.display())]
    Nbd {
        /// The source.
        path: PathBuf,
        /// What happened.
        message: String,
    },
    /// A file or socket operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The file or socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SourceError + 'a {
    move |source| SourceError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// What a range of the virtual disk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtentKind {
    /// Allocated data: must be read.
    Data,
    /// Allocated, reads as zeros.
    Zero,
    /// Unallocated in the whole chain: reads as zeros.
    Hole,
}

/// A range of the virtual disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
    /// What it holds.
    pub kind: ExtentKind,
    /// Where the data is in the image file itself (depth 0, uncompressed).
    pub host_offset: Option<u64>,
}

#[derive(serde::Deserialize)]
struct MapEntry {
    start: u64,
    length: u64,
    #[serde(default)]
    depth: u64,
    #[serde(default = "yes")]
    present: bool,
    zero: bool,
    data: bool,
    #[serde(default)]
    compressed: bool,
    offset: Option<u64>,
}

fn yes() -> bool {
    true
}

/// Parses `qemu-img map --output=json`. A range that is neither data nor
/// zero is read (as data): only what qemu says reads as zeros is skipped.
pub fn parse_map(json: &str) -> Result<Vec<Extent>, serde_json::Error> {
    let entries: Vec<MapEntry> = serde_json::from_str(json)?;
    Ok(entries
        .into_iter()
        .filter(|e| e.length > 0)
        .map(|e| Extent {
            start: e.start,
            length: e.length,
            kind: match (e.zero, e.present) {
                (true, true) => ExtentKind::Zero,
                (true, false) => ExtentKind::Hole,
                (false, _) => ExtentKind::Data,
            },
            host_offset: e
                .offset
                .filter(|_| e.data && e.depth == 0 && !e.compressed && !e.zero),
        })
        .collect())
}

/// The first data extent whose bytes lie beyond `file_len` in the image
/// file (a truncated image), for formats whose host offsets point into the
/// file itself.
pub fn beyond_end(extents: &[Extent], file_len: u64) -> Option<&Extent> {
    extents.iter().find(|e| {
        e.kind == ExtentKind::Data
            && e.host_offset
                .is_some_and(|o| o.saturating_add(e.length) > file_len)
    })
}

/// Which blocks of `block_size` bytes hold data, as merged ranges of block
/// indexes `[first, end)` (a block holding any data extent is read whole).
pub fn data_blocks(extents: &[Extent], block_size: u64) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for e in extents.iter().filter(|e| e.kind == ExtentKind::Data) {
        let first = e.start / block_size;
        let end = (e.start + e.length).div_ceil(block_size);
        match ranges.last_mut() {
            Some(last) if first <= last.1 => last.1 = last.1.max(end),
            _ => ranges.push((first, end)),
        }
    }
    ranges
}

/// A running `qemu-nbd`: killed (its whole group) when dropped.
#[derive(Debug)]
struct QemuNbd {
    _task: Running,
    _dir: tempfile::TempDir,
}

/// How the bytes are read.
#[derive(Debug)]
enum Reader {
    Raw(File),
    Nbd {
        conn: NbdConn,
        // dropped after the connection (fields drop in order)
        _server: Box<QemuNbd>,
    },
}

/// An open source disk image.
#[derive(Debug)]
pub struct Source {
    path: PathBuf,
    format: Format,
    size: u64,
    extents: Vec<Extent>,
    reader: Reader,
}

impl Source {
    /// Opens `path` (format detected by its magic bytes): maps its extents
    /// and, for formats other than raw, starts qemu-nbd on it.
    pub async fn open(path: &Path) -> Result<Source, SourceError> {
        let format = img::detect_format(path).map_err(|source| SourceError::Format {
            path: path.to_path_buf(),
            source,
        })?;
        let file_len = std::fs::metadata(path).map_err(io_err("stat", path))?.len();
        // nothing below may open a backing file or an extent elsewhere
        img::info_untrusted(path)
            .await
            .map_err(|source| SourceError::Check {
                path: path.to_path_buf(),
                source,
            })?;
        if img::checkable(format) {
            // a damaged header or table can read as zeros: only the check sees it
            let report = img::check(path)
                .await
                .map_err(|source| SourceError::Check {
                    path: path.to_path_buf(),
                    source,
                })?;
            if report.corruptions > 0 || report.check_errors > 0 {
                return Err(SourceError::Corrupt {
                    path: path.to_path_buf(),
                    message: format!(
                        "damaged: `qemu-img check` finds {} corruption(s) and {} error(s); run it for details",
                        report.corruptions, report.check_errors
                    ),
                });
            }
        }
        let extents = map(path, format).await?;
        if format != Format::Raw {
            if let Some(e) = beyond_end(&extents, file_len) {
                return Err(SourceError::Corrupt {
                    path: path.to_path_buf(),
                    message: format!(
                        "truncated: the data of bytes {}..{} is at offset {} of the file, beyond its end ({file_len} bytes)",
                        e.start,
                        e.start + e.length,
                        e.host_offset.unwrap_or(0)
                    ),
                });
            }
        }
        let (size, reader) = match format {
            Format::Raw => {
                let f = File::open(path).map_err(io_err("open", path))?;
                (file_len, Reader::Raw(f))
            }
            _ => {
                let (conn, server) = start_nbd(path, format).await?;
                (
                    conn.size,
                    Reader::Nbd {
                        conn,
                        _server: Box::new(server),
                    },
                )
            }
        };
        if size == 0 {
            return Err(SourceError::Corrupt {
                path: path.to_path_buf(),
                message: "the disk is empty (0 bytes)".into(),
            });
        }
        let mapped = extents.last().map_or(0, |e| e.start + e.length);
        if mapped < size {
            return Err(SourceError::Corrupt {
                path: path.to_path_buf(),
                message: format!("qemu-img map covers {mapped} of its {size} bytes"),
            });
        }
        Ok(Source {
            path: path.to_path_buf(),
            format,
            size,
            extents,
            reader,
        })
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The virtual disk's size in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.size
    }

    /// Its extents, in order, covering the whole disk.
    pub fn extents(&self) -> &[Extent] {
        &self.extents
    }

    /// Reads `buf.len()` bytes at `offset` of the virtual disk; bytes past
    /// the end of the disk read as zeros.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let inside = self.size.saturating_sub(offset).min(buf.len() as u64) as usize;
        let (head, tail) = buf.split_at_mut(inside);
        tail.fill(0);
        if head.is_empty() {
            return Ok(());
        }
        match &mut self.reader {
            Reader::Raw(f) => f.read_exact_at(head, offset).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    SourceError::Corrupt {
                        path: self.path.clone(),
                        message: format!(
                            "the file shrank while being read (at offset {offset}, {} bytes expected)",
                            self.size
                        ),
                    }
                } else {
                    io_err("read", &self.path)(e)
                }
            }),
            Reader::Nbd { conn, .. } => conn.read(offset, head).map_err(|e| match e {
                NbdFailure::Io(source) => SourceError::Io {
                    what: "read through qemu-nbd",
                    path: self.path.clone(),
                    source,
                },
                NbdFailure::Protocol(message) => SourceError::Nbd {
                    path: self.path.clone(),
                    message: format!("at offset {offset}: {message}"),
                },
            }),
        }
    }
}

/// The most bytes of `qemu-img map` output read (about 600,000 extents).
const MAP_OUTPUT_LIMIT: usize = 64 << 20;

/// `qemu-img map --output=json -f FORMAT PATH`.
async fn map(path: &Path, format: Format) -> Result<Vec<Extent>, SourceError> {
    let args: Vec<std::ffi::OsString> = vec![
        "map".into(),
        "--output=json".into(),
        "-f".into(),
        format.qemu_name().into(),
        img::tool_path(path).into(),
    ];
    let out = Task::new(
        format!(
            "listing the allocated extents of {} with qemu-img",
            path.display()
        ),
        "qemu-img",
    )
    .args(&args)
    .stdout_limit(MAP_OUTPUT_LIMIT)
    .output()
    .await?;
    parse_map(&out.stdout_text()).map_err(|source| SourceError::Map {
        path: path.to_path_buf(),
        source,
    })
}

/// Starts `qemu-nbd --read-only` on `path` and connects to it.
async fn start_nbd(path: &Path, format: Format) -> Result<(NbdConn, QemuNbd), SourceError> {
    let dir = tempfile::Builder::new()
        .prefix("kiln-nbd.")
        .tempdir()
        .map_err(io_err(
            "create a folder for the NBD socket in",
            &std::env::temp_dir(),
        ))?;
    let socket = dir.path().join("nbd.sock");
    let log = dir.path().join("qemu-nbd.log");
    let stderr = File::create(&log).map_err(io_err("create", &log))?;
    let args: Vec<std::ffi::OsString> = vec![
        "--read-only".into(),
        format!("--format={}", format.qemu_name()).into(),
        {
            let mut s = std::ffi::OsString::from("--socket=");
            s.push(&socket);
            s
        },
        img::tool_path(path).into(),
    ];
    let mut running = Task::new(
        format!("serving {} read-only with qemu-nbd", path.display()),
        "qemu-nbd",
    )
    .args(&args)
    .stdout(Stdio::null())
    .stderr(Stdio::from(stderr))
    .spawn()?;
    let started = Instant::now();
    let stream = loop {
        if let Some(status) = running.try_wait()? {
            let messages = std::fs::read(&log).map_err(io_err("read", &log))?;
            return Err(running.failed(status, &messages).into());
        }
        match UnixStream::connect(&socket) {
            Ok(s) => break s,
            Err(_) if started.elapsed() < NBD_START_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => return Err(io_err("connect to qemu-nbd's socket", &socket)(e)),
        }
    };
    let conn = NbdConn::handshake(stream).map_err(|e| SourceError::Nbd {
        path: path.to_path_buf(),
        message: format!("handshake: {}", e.message()),
    })?;
    Ok((
        conn,
        QemuNbd {
            _task: running,
            _dir: dir,
        },
    ))
}

/// What went wrong talking NBD.
#[derive(Debug)]
enum NbdFailure {
    Io(std::io::Error),
    Protocol(String),
}

impl NbdFailure {
    fn message(&self) -> String {
        match self {
            NbdFailure::Io(e) => e.to_string(),
            NbdFailure::Protocol(m) => m.clone(),
        }
    }
}

impl From<std::io::Error> for NbdFailure {
    fn from(e: std::io::Error) -> Self {
        NbdFailure::Io(e)
    }
}

const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943; // "NBDMAGIC"
const NBD_IHAVEOPT: u64 = 0x4948_4156_454f_5054; // "IHAVEOPT"
const NBD_FLAG_FIXED_NEWSTYLE: u16 = 1;
const NBD_FLAG_NO_ZEROES: u16 = 2;
const NBD_OPT_EXPORT_NAME: u32 = 1;
const NBD_REQUEST_MAGIC: u32 = 0x2560_9513;
const NBD_SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const NBD_CMD_READ: u16 = 0;
const NBD_CMD_DISC: u16 = 2;

/// The server's greeting: `NBDMAGIC`, `IHAVEOPT`, handshake flags. Returns
/// the flags the client answers with.
fn parse_greeting(g: &[u8; 18]) -> Result<u32, NbdFailure> {
    let magic = u64::from_be_bytes(g[0..8].try_into().expect("8 bytes"));
    let opt = u64::from_be_bytes(g[8..16].try_into().expect("8 bytes"));
    if magic != NBD_MAGIC || opt != NBD_IHAVEOPT {
        return Err(NbdFailure::Protocol(
            "not a newstyle NBD server greeting".into(),
        ));
    }
    let flags = u16::from_be_bytes([g[16], g[17]]);
    if flags & NBD_FLAG_FIXED_NEWSTYLE == 0 {
        return Err(NbdFailure::Protocol(
            "the server does not speak fixed newstyle".into(),
        ));
    }
    Ok(u32::from(
        flags & (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES),
    ))
}

/// One NBD_CMD request (28 bytes).
fn request(kind: u16, handle: u64, offset: u64, length: u32) -> [u8; 28] {
    let mut r = [0u8; 28];
    r[0..4].copy_from_slice(&NBD_REQUEST_MAGIC.to_be_bytes());
    r[6..8].copy_from_slice(&kind.to_be_bytes());
    r[8..16].copy_from_slice(&handle.to_be_bytes());
    r[16..24].copy_from_slice(&offset.to_be_bytes());
    r[24..28].copy_from_slice(&length.to_be_bytes());
    r
}

/// Checks a simple reply (16 bytes) to request `handle`.
fn check_reply(r: &[u8; 16], handle: u64) -> Result<(), NbdFailure> {
    let magic = u32::from_be_bytes(r[0..4].try_into().expect("4 bytes"));
    let error = u32::from_be_bytes(r[4..8].try_into().expect("4 bytes"));
    let got = u64::from_be_bytes(r[8..16].try_into().expect("8 bytes"));
    if magic != NBD_SIMPLE_REPLY_MAGIC {
        return Err(NbdFailure::Protocol(format!(
            "unexpected reply magic {magic:#x}"
        )));
    }
    if got != handle {
        return Err(NbdFailure::Protocol(format!(
            "reply to request {got}, expected {handle}"
        )));
    }
    if error != 0 {
        return Err(NbdFailure::Protocol(format!(
            "the server failed the read: {} (NBD error {error}); the image is damaged",
            std::io::Error::from_raw_os_error(error as i32)
        )));
    }
    Ok(())
}

/// A connection in the transmission phase (one request at a time).
#[derive(Debug)]
struct NbdConn {
    stream: UnixStream,
    size: u64,
    handle: u64,
}

/// The largest read request sent (qemu-nbd accepts 32 MiB).
const NBD_MAX_READ: usize = 4 << 20;

impl NbdConn {
    /// Fixed newstyle handshake with `NBD_OPT_EXPORT_NAME` of the default
    /// export (`""`).
    fn handshake(mut stream: UnixStream) -> Result<NbdConn, NbdFailure> {
        let mut greeting = [0u8; 18];
        stream.read_exact(&mut greeting)?;
        let client_flags = parse_greeting(&greeting)?;
        let mut hello = Vec::with_capacity(20);
        hello.extend_from_slice(&client_flags.to_be_bytes());
        hello.extend_from_slice(&NBD_IHAVEOPT.to_be_bytes());
        hello.extend_from_slice(&NBD_OPT_EXPORT_NAME.to_be_bytes());
        hello.extend_from_slice(&0u32.to_be_bytes());
        stream.write_all(&hello)?;
        let mut export = [0u8; 10];
        stream.read_exact(&mut export)?;
        if client_flags & u32::from(NBD_FLAG_NO_ZEROES) == 0 {
            stream.read_exact(&mut [0u8; 124])?;
        }
        Ok(NbdConn {
            stream,
            size: u64::from_be_bytes(export[0..8].try_into().expect("8 bytes")),
            handle: 0,
        })
    }

    /// Reads `buf.len()` bytes at `offset` (within the export).
    fn read(&mut self, mut offset: u64, buf: &mut [u8]) -> Result<(), NbdFailure> {
        for chunk in buf.chunks_mut(NBD_MAX_READ) {
            self.handle += 1;
            self.stream.write_all(&request(
                NBD_CMD_READ,
                self.handle,
                offset,
                chunk.len() as u32,
            ))?;
            let mut reply = [0u8; 16];
            self.stream.read_exact(&mut reply)?;
            check_reply(&reply, self.handle)?;
            self.stream.read_exact(chunk)?;
            offset += chunk.len() as u64;
        }
        Ok(())
    }
}

impl Drop for NbdConn {
    fn drop(&mut self) {
        // a polite goodbye; qemu-nbd is killed right after anyway
        let _ = self
            .stream
            .write_all(&request(NBD_CMD_DISC, self.handle + 1, 0, 0));
    }
}

/// One block handed to a worker.
#[derive(Debug)]
pub struct Block<'a> {
    /// Its index (`offset / block_size`).
    pub index: u64,
    /// Its bytes (zeros past the end of the disk), or `None` when the map
    /// says it reads as zeros (nothing was read).
    pub data: Option<&'a [u8]>,
}

/// How [`par_blocks`] walks a source.
#[derive(Clone, Copy, Debug)]
pub struct BlockPlan {
    /// Bytes per block.
    pub block_size: usize,
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Bytes to cover (at least the disk's size; more reads as zeros).
    pub length: u64,
    /// Whether blocks the map says are zero are handed over too (with no
    /// data), or skipped.
    pub zero_blocks: bool,
}

/// The number of worker threads for `threads` (`None`: every core).
pub fn worker_threads(threads: Option<usize>) -> usize {
    threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

struct Job {
    seq: u64,
    index: u64,
    read: bool,
    buf: Vec<u8>,
}

/// Reads `source` block by block in order, runs `worker()`'s function (one
/// per thread) on `plan.threads` threads, and hands the results to `sink`
/// in block order on the calling thread. Memory is bounded (a fixed pool
/// of buffers); `cancel` is checked between blocks; the first error stops
/// everything.
pub fn par_blocks<T, E, M, W>(
    source: &mut Source,
    plan: BlockPlan,
    cancel: &Cancel,
    worker: M,
    mut sink: impl FnMut(u64, T) -> Result<(), E>,
) -> Result<(), E>
where
    T: Send,
    E: From<SourceError> + From<Cancelled> + Send,
    M: Fn() -> W + Sync,
    W: FnMut(&Block<'_>) -> T,
{
    let bs = plan.block_size as u64;
    let total = plan.length.max(source.size).div_ceil(bs);
    let mut wanted: Vec<(u64, u64, bool)> = Vec::new();
    let mut next = 0;
    for (first, end) in data_blocks(&source.extents, bs) {
        let end = end.min(total);
        if first > next && plan.zero_blocks {
            wanted.push((next, first, false));
        }
        wanted.push((first, end, true));
        next = end;
    }
    if next < total && plan.zero_blocks {
        wanted.push((next, total, false));
    }
    let threads = plan.threads.max(1);
    let pool = 2 * threads + 2;
    let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(pool);
    for _ in 0..pool {
        free_tx
            .send(Vec::with_capacity(plan.block_size))
            .expect("the pool has room");
    }
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(pool);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<Result<(u64, u64, T, Vec<u8>), E>>();
    std::thread::scope(|scope| {
        let reader_done = done_tx.clone();
        scope.spawn(move || {
            let mut seq = 0;
            for &(first, end, read) in &wanted {
                for index in first..end {
                    let step = (|| {
                        cancel.check()?;
                        let Ok(mut buf) = free_rx.recv() else {
                            return Ok(None); // the sink stopped
                        };
                        if read {
                            buf.resize(plan.block_size, 0);
                            source.read_at(index * bs, &mut buf)?;
                        }
                        Ok(Some(Job {
                            seq,
                            index,
                            read,
                            buf,
                        }))
                    })();
                    match step {
                        Ok(Some(job)) => {
                            if job_tx.send(job).is_err() {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(e) => {
                            let _ = reader_done.send(Err(e));
                            return;
                        }
                    }
                    seq += 1;
                }
            }
        });
        for _ in 0..threads {
            let done = done_tx.clone();
            let job_rx = &job_rx;
            let worker = &worker;
            scope.spawn(move || {
                let mut work = worker();
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let out = work(&Block {
                        index: job.index,
                        data: job.read.then_some(&job.buf[..]),
                    });
                    if done.send(Ok((job.seq, job.index, out, job.buf))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut pending = std::collections::BTreeMap::new();
        let mut want = 0u64;
        let result = (|| {
            for msg in &done_rx {
                let (seq, index, out, buf) = msg?;
                pending.insert(seq, (index, out, buf));
                while let Some((index, out, buf)) = pending.remove(&want) {
                    cancel.check()?;
                    sink(index, out)?;
                    want += 1;
                    let _ = free_tx.send(buf);
                }
            }
            cancel.check()?;
            Ok(())
        })();
        // unblock the reader and the workers, then let the scope join them
        drop(free_tx);
        drop(done_rx);
        result
    })
}

/// Runs blocking export work `f` on a thread of its own while reporting
/// progress: `f` adds the bytes it has done to the counter, of `total`.
/// If the returned future is dropped, `cancel` is set so `f` stops.
pub async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce(Arc<AtomicU64>) -> T + Send + 'static,
    what: &str,
    total: u64,
    cancel: &Cancel,
    progress: Option<ProgressFn<'_>>,
) -> T {
    /// Cancels unless the work finished.
    struct StopUnlessDone<'a>(&'a Cancel, bool);
    impl Drop for StopUnlessDone<'_> {
        fn drop(&mut self) {
            if !self.1 {
                self.0.cancel();
            }
        }
    }
    let mut guard = StopUnlessDone(cancel, false);
    let done = Arc::new(AtomicU64::new(0));
    let counter = done.clone();
    let mut task = tokio::task::spawn_blocking(move || f(counter));
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    let out = loop {
        tokio::select! {
            out = &mut task => break out,
            _ = tick.tick() => {
                if let Some(p) = progress {
                    let d = done.load(Ordering::Relaxed);
                    p(&format!(
                        "{what}: {}% ({} of {} MiB)",
                        d.saturating_mul(100) / total.max(1),
                        d >> 20,
                        total >> 20
                    ));
                }
            }
        }
    };
    guard.1 = true;
    match out {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = r#"[{ "start": 0, "length": 196608, "depth": 0, "present": false, "zero": true, "data": false, "compressed": false},
{ "start": 196608, "length": 131072, "depth": 0, "present": true, "zero": false, "data": true, "compressed": false, "offset": 327680},
{ "start": 327680, "length": 65536, "depth": 0, "present": true, "zero": true, "data": false, "compressed": false, "offset": 0},
{ "start": 393216, "length": 65536, "depth": 1, "present": true, "zero": false, "data": true, "compressed": false, "offset": 9999999},
{ "start": 458752, "length": 10027008, "depth": 0, "present": false, "zero": true, "data": false, "compressed": false}]"#;

    #[test]
    fn map_kinds_and_host_offsets() {
        let m = parse_map(MAP).unwrap();
        let kinds: Vec<_> = m.iter().map(|e| e.kind).collect();
        use ExtentKind::*;
        assert_eq!(kinds, [Hole, Data, Zero, Data, Hole]);
        assert_eq!(m[1].host_offset, Some(327680));
        assert_eq!(m[2].host_offset, None, "zero extents have no data");
        assert_eq!(m[3].host_offset, None, "backing data is not in this file");
        assert!(beyond_end(&m, 327680 + 131072).is_none());
        assert_eq!(beyond_end(&m, 327680 + 131071), Some(&m[1]));
        assert!(parse_map("[{\"start\": 0}]").is_err());
    }

    #[test]
    fn data_blocks_merge_and_round_out() {
        let m = parse_map(MAP).unwrap();
        // 1 MiB blocks: both data extents are in block 0
        assert_eq!(data_blocks(&m, 1 << 20), [(0, 1)]);
        // 64 KiB blocks: 3..5 and 6..7
        assert_eq!(data_blocks(&m, 64 << 10), [(3, 5), (6, 7)]);
        // an extent straddling blocks
        let e = [Extent {
            start: 100,
            length: 200,
            kind: ExtentKind::Data,
            host_offset: None,
        }];
        assert_eq!(data_blocks(&e, 128), [(0, 3)]);
    }

    #[test]
    fn nbd_greeting_request_reply() {
        let mut g = [0u8; 18];
        g[0..8].copy_from_slice(b"NBDMAGIC");
        g[8..16].copy_from_slice(b"IHAVEOPT");
        g[17] = 3;
        assert_eq!(parse_greeting(&g).unwrap(), 3);
        g[17] = 2;
        assert!(parse_greeting(&g).is_err(), "not fixed newstyle");
        g[0] = b'X';
        g[17] = 1;
        assert!(parse_greeting(&g).is_err());

        let r = request(NBD_CMD_READ, 7, 1 << 20, 65536);
        assert_eq!(&r[0..4], &[0x25, 0x60, 0x95, 0x13]);
        assert_eq!(u64::from_be_bytes(r[8..16].try_into().unwrap()), 7);
        assert_eq!(u32::from_be_bytes(r[24..28].try_into().unwrap()), 65536);

        let mut reply = [0u8; 16];
        reply[0..4].copy_from_slice(&NBD_SIMPLE_REPLY_MAGIC.to_be_bytes());
        reply[8..16].copy_from_slice(&7u64.to_be_bytes());
        assert!(check_reply(&reply, 7).is_ok());
        assert!(check_reply(&reply, 8).is_err());
        reply[4..8].copy_from_slice(&5u32.to_be_bytes());
        let e = check_reply(&reply, 7).unwrap_err().message();
        assert!(e.contains("damaged"), "{e}");
    }
}
