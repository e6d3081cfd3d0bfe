//! A small native ISO 9660 writer: one root directory of regular files, with
//! Rock Ridge names. It exists for the cloud-init seed (`cidata`), so kiln
//! needs no `genisoimage` or `xorriso` on the host.
//!
//! # Names
//!
//! ISO 9660 level 1 allows only `A-Z 0-9 _` names in 8.3 form, so
//! `user-data` is recorded as `USER_DAT.;1` in the primary directory. The
//! real name is carried by a Rock Ridge (RRIP 1.10, `RRIP_1991A`) `NM`
//! entry, with a `PX` entry (POSIX mode, links, owner) on every record, the
//! `SP` indicator and, through a continuation area (`CE`), the `ER`
//! extension record in the root's `.` entry — the same shape `genisoimage -R`
//! writes. Linux's isofs uses Rock Ridge names whenever they are present (its
//! default mount options), so cloud-init sees exactly `user-data` and
//! `meta-data` on the volume labelled `cidata`. Rock Ridge was chosen over
//! Joliet because Linux prefers it when both exist, it needs no second
//! directory tree, and it keeps the names byte for byte (Joliet is UCS-2 and
//! limited to 64 characters). Relying on isofs's default lower-casing of
//! plain ISO names instead would need `-` in a primary name, which is not a
//! valid d-character.
//!
//! # Layout (2048-byte sectors)
//!
//! | sector | content |
//! |---|---|
//! | 0–15 | system area (zeros) |
//! | 16 | primary volume descriptor |
//! | 17 | volume descriptor set terminator |
//! | 18 | type L path table (little-endian) |
//! | 19 | type M path table (big-endian) |
//! | 20 | Rock Ridge continuation area (the `ER` entry) |
//! | 21… | root directory (as many sectors as its records need) |
//! | then | each file's data, from a sector boundary, zero padded |
//! | last 150 | zeros, as `genisoimage` pads by default: Linux read-ahead near
//! the end of a CD-ROM can fail, and some readers (libisoburn) ignore a
//! volume shorter than 64 KiB |

use chrono::{DateTime, Datelike, Timelike, Utc};

/// Bytes per logical sector (and logical block).
pub const SECTOR: usize = 2048;

const PVD_SECTOR: u32 = 16;
const TERMINATOR_SECTOR: u32 = 17;
const L_PATH_TABLE_SECTOR: u32 = 18;
const M_PATH_TABLE_SECTOR: u32 = 19;
const CONTINUATION_SECTOR: u32 = 20;
const ROOT_SECTOR: u32 = 21;
/// Zero sectors after the last file, counted in the volume size.
pub const PAD_SECTORS: u32 = 150;

/// The longest file name accepted: a directory record holds at most 255
/// bytes, and the name shares it with the ISO name and the `PX` entry.
pub const MAX_NAME_LEN: usize = 150;

const DIR_MODE: u32 = 0o040555;
const FILE_MODE: u32 = 0o100444;

const ER_ID: &str = "RRIP_1991A";
const ER_DESCRIPTOR: &str =
    "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SOURCE: &str = "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

/// Why an image cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    /// A file name cannot be stored.
    #[error("file name {name:?} cannot be stored in the ISO image: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Two names map to the same ISO 9660 name.
    #[error("file names {first:?} and {second:?} both map to the ISO 9660 name {iso}")]
    NameCollision {
        /// One name.
        first: String,
        /// The other.
        second: String,
        /// The shared ISO name.
        iso: String,
    },
    /// The volume label is too long or not printable ASCII.
    #[error("volume label {0:?} must be 1 to 32 printable ASCII characters")]
    BadLabel(String),
    /// A file is larger than ISO 9660's 32-bit sizes allow.
    #[error("file {name:?} is {size} bytes; ISO 9660 files must be under 4 GiB")]
    TooLarge {
        /// The name.
        name: String,
        /// Its size.
        size: usize,
    },
}

/// A file of the image.
struct Entry<'a> {
    name: &'a str,
    iso_name: String,
    data: &'a [u8],
    extent: u32,
}

fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

fn sectors_for(len: usize) -> u32 {
    len.div_ceil(SECTOR) as u32
}

/// The level-1 ISO 9660 name for `name`: upper case, other characters
/// than `A-Z 0-9 _` replaced by `_`, 8.3, version `;1`.
pub fn iso_name(name: &str) -> String {
    let map = |s: &str, max: usize| -> String {
        s.chars()
            .map(|c| match c.to_ascii_uppercase() {
                u @ ('A'..='Z' | '0'..='9' | '_') => u,
                _ => '_',
            })
            .take(max)
            .collect()
    };
    let (base, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i + 1..]),
        _ => (name, ""),
    };
    let base = map(base, 8);
    let base = if base.is_empty() { "_".into() } else { base };
    format!("{base}.{};1", map(ext, 3))
}

/// ISO 9660 orders directory records by name, then extension, each
/// compared as if padded with spaces.
fn sort_key(iso: &str) -> (String, String) {
    let stem = iso.trim_end_matches(";1");
    let (base, ext) = stem.split_once('.').unwrap_or((stem, ""));
    (format!("{base:<8}"), format!("{ext:<3}"))
}

fn check_name(name: &str) -> Result<(), IsoError> {
    let bad = |reason| {
        Err(IsoError::BadName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name == "." || name == ".." {
        return bad("it is empty, `.` or `..`");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("it contains `/` or NUL");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 150 bytes");
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), IsoError> {
    if label.is_empty() || label.len() > 32 || !label.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(IsoError::BadLabel(label.to_string()));
    }
    Ok(())
}

/// The 7-byte recording date of a directory record (UTC).
fn record_date(t: &DateTime<Utc>) -> [u8; 7] {
    [
        (t.year() - 1900).clamp(0, 255) as u8,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        0,
    ]
}

/// The 17-byte volume descriptor date (`YYYYMMDDHHMMSScc` + UTC offset).
fn volume_date(t: &DateTime<Utc>) -> [u8; 17] {
    let mut d = [0u8; 17];
    d[..16].copy_from_slice(t.format("%Y%m%d%H%M%S00").to_string().as_bytes());
    d
}

/// A SUSP `PX` entry (RRIP 1.10: mode, links, uid, gid).
fn px(mode: u32, links: u32) -> Vec<u8> {
    let mut e = vec![b'P', b'X', 36, 1];
    for v in [mode, links, 0, 0] {
        e.extend_from_slice(&both32(v));
    }
    e
}

/// A SUSP `NM` entry carrying the real file name.
fn nm(name: &str) -> Vec<u8> {
    let mut e = vec![b'N', b'M', (5 + name.len()) as u8, 1, 0];
    e.extend_from_slice(name.as_bytes());
    e
}

/// The `ER` entry that names Rock Ridge (kept in the continuation area).
fn er() -> Vec<u8> {
    let mut e = vec![
        b'E',
        b'R',
        (8 + ER_ID.len() + ER_DESCRIPTOR.len() + ER_SOURCE.len()) as u8,
        1,
        ER_ID.len() as u8,
        ER_DESCRIPTOR.len() as u8,
        ER_SOURCE.len() as u8,
        1,
    ];
    for s in [ER_ID, ER_DESCRIPTOR, ER_SOURCE] {
        e.extend_from_slice(s.as_bytes());
    }
    e
}

/// The system use area of the root's `.` record: `SP`, `PX`, and `CE`
/// pointing at the `ER` entry.
fn root_dot_system_use(er_len: usize) -> Vec<u8> {
    let mut e = vec![b'S', b'P', 7, 1, 0xBE, 0xEF, 0];
    e.extend(px(DIR_MODE, 2));
    e.extend_from_slice(&[b'C', b'E', 28, 1]);
    e.extend_from_slice(&both32(CONTINUATION_SECTOR));
    e.extend_from_slice(&both32(0));
    e.extend_from_slice(&both32(er_len as u32));
    e
}

/// One directory record.
fn dir_record(
    ident: &[u8],
    extent: u32,
    size: u32,
    is_dir: bool,
    date: [u8; 7],
    system_use: &[u8],
) -> Vec<u8> {
    let mut r = vec![0u8; 33];
    r[2..10].copy_from_slice(&both32(extent));
    r[10..18].copy_from_slice(&both32(size));
    r[18..25].copy_from_slice(&date);
    r[25] = if is_dir { 0x02 } else { 0x00 };
    r[28..32].copy_from_slice(&both16(1));
    r[32] = ident.len() as u8;
    r.extend_from_slice(ident);
    if ident.len().is_multiple_of(2) {
        r.push(0); // pads the identifier so the system use area starts even
    }
    r.extend_from_slice(system_use);
    if r.len() % 2 == 1 {
        r.push(0);
    }
    r[0] = r.len() as u8;
    r
}

/// Packs records into sectors: a record never crosses a sector boundary.
fn pack_records(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let used = out.len() % SECTOR;
        if used + r.len() > SECTOR {
            out.resize(out.len() + SECTOR - used, 0);
        }
        out.extend_from_slice(r);
    }
    out.resize(sectors_for(out.len()) as usize * SECTOR, 0);
    out
}

/// A path table with the root as its only directory.
fn path_table(root: u32, big_endian: bool) -> [u8; 10] {
    let mut t = [0u8; 10];
    t[0] = 1; // identifier length
    let loc = if big_endian {
        root.to_be_bytes()
    } else {
        root.to_le_bytes()
    };
    t[2..6].copy_from_slice(&loc);
    let parent = if big_endian {
        1u16.to_be_bytes()
    } else {
        1u16.to_le_bytes()
    };
    t[6..8].copy_from_slice(&parent);
    // t[8] = 0: the root's identifier; t[9]: padding to an even length
    t
}

fn padded(s: &str, len: usize) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.resize(len, b' ');
    v
}

fn primary_descriptor(
    label: &str,
    total_sectors: u32,
    root_record: &[u8],
    at: &DateTime<Utc>,
) -> Vec<u8> {
    let mut d = vec![0u8; SECTOR];
    d[0] = 1;
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    d[8..40].copy_from_slice(&padded("LINUX", 32));
    d[40..72].copy_from_slice(&padded(label, 32));
    d[80..88].copy_from_slice(&both32(total_sectors));
    d[120..124].copy_from_slice(&both16(1));
    d[124..128].copy_from_slice(&both16(1));
    d[128..132].copy_from_slice(&both16(SECTOR as u16));
    d[132..140].copy_from_slice(&both32(10));
    d[140..144].copy_from_slice(&L_PATH_TABLE_SECTOR.to_le_bytes());
    d[148..152].copy_from_slice(&M_PATH_TABLE_SECTOR.to_be_bytes());
    d[156..190].copy_from_slice(root_record);
    d[190..318].copy_from_slice(&padded("", 128));
    d[318..446].copy_from_slice(&padded("", 128));
    d[446..574].copy_from_slice(&padded("KILN", 128));
    d[574..702].copy_from_slice(&padded("KILN CLOUD-INIT SEED", 128));
    d[702..813].copy_from_slice(&padded("", 111));
    let date = volume_date(at);
    d[813..830].copy_from_slice(&date);
    d[830..847].copy_from_slice(&date);
    d[847..863].copy_from_slice(b"0000000000000000");
    d[864..880].copy_from_slice(b"0000000000000000");
    d[881] = 1;
    d
}

fn terminator() -> Vec<u8> {
    let mut d = vec![0u8; SECTOR];
    d[0] = 255;
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    d
}

/// Builds an ISO 9660 image with volume label `label` and the given files
/// (name, content) in its root directory, recorded at time `at`.
pub fn build(label: &str, files: &[(&str, &[u8])], at: DateTime<Utc>) -> Result<Vec<u8>, IsoError> {
    check_label(label)?;
    let mut entries = Vec::new();
    for (name, data) in files {
        check_name(name)?;
        if data.len() > u32::MAX as usize {
            return Err(IsoError::TooLarge {
                name: name.to_string(),
                size: data.len(),
            });
        }
        entries.push(Entry {
            name,
            iso_name: iso_name(name),
            data,
            extent: 0,
        });
    }
    entries.sort_by_key(|e| sort_key(&e.iso_name));
    for pair in entries.windows(2) {
        if pair[0].iso_name == pair[1].iso_name {
            return Err(IsoError::NameCollision {
                first: pair[0].name.to_string(),
                second: pair[1].name.to_string(),
                iso: pair[0].iso_name.clone(),
            });
        }
    }
    let date = record_date(&at);
    let er = er();

    // The root directory's size depends only on its records' lengths, so it
    // is laid out once with placeholder extents to learn where files start.
    let root_records = |root_len: u32, entries: &[Entry]| -> Vec<Vec<u8>> {
        let mut records = vec![
            dir_record(
                &[0],
                ROOT_SECTOR,
                root_len,
                true,
                date,
                &root_dot_system_use(er.len()),
            ),
            dir_record(&[1], ROOT_SECTOR, root_len, true, date, &px(DIR_MODE, 2)),
        ];
        for e in entries {
            let mut su = px(FILE_MODE, 1);
            su.extend(nm(e.name));
            records.push(dir_record(
                e.iso_name.as_bytes(),
                e.extent,
                e.data.len() as u32,
                false,
                date,
                &su,
            ));
        }
        records
    };
    let root_len = pack_records(&root_records(0, &entries)).len() as u32;
    let mut next = ROOT_SECTOR + sectors_for(root_len as usize);
    for e in &mut entries {
        e.extent = next;
        next += sectors_for(e.data.len());
    }
    let total_sectors = next + PAD_SECTORS;
    let root = pack_records(&root_records(root_len, &entries));

    let mut img = vec![0u8; total_sectors as usize * SECTOR];
    let put = |img: &mut Vec<u8>, sector: u32, bytes: &[u8]| {
        let at = sector as usize * SECTOR;
        img[at..at + bytes.len()].copy_from_slice(bytes);
    };
    let root_record = dir_record(&[0], ROOT_SECTOR, root_len, true, date, &[]);
    put(
        &mut img,
        PVD_SECTOR,
        &primary_descriptor(label, total_sectors, &root_record, &at),
    );
    put(&mut img, TERMINATOR_SECTOR, &terminator());
    put(
        &mut img,
        L_PATH_TABLE_SECTOR,
        &path_table(ROOT_SECTOR, false),
    );
    put(
        &mut img,
        M_PATH_TABLE_SECTOR,
        &path_table(ROOT_SECTOR, true),
    );
    put(&mut img, CONTINUATION_SECTOR, &er);
    put(&mut img, ROOT_SECTOR, &root);
    for e in &entries {
        put(&mut img, e.extent, e.data);
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn le32(b: &[u8]) -> u32 {
        u32::from_le_bytes(b[..4].try_into().unwrap())
    }

    fn be32(b: &[u8]) -> u32 {
        u32::from_be_bytes(b[..4].try_into().unwrap())
    }

    /// A both-endian field must hold the same number twice.
    fn both(b: &[u8]) -> u32 {
        assert_eq!(le32(b), be32(&b[4..]), "both-endian field disagrees");
        le32(b)
    }

    struct Record {
        ident: Vec<u8>,
        extent: u32,
        size: u32,
        flags: u8,
        system_use: Vec<u8>,
    }

    fn records(dir: &[u8]) -> Vec<Record> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < dir.len() {
            let len = dir[i] as usize;
            if len == 0 {
                i = (i / SECTOR + 1) * SECTOR; // rest of the sector is padding
                continue;
            }
            let r = &dir[i..i + len];
            assert_eq!(len % 2, 0, "records have even lengths");
            let id_len = r[32] as usize;
            let su_start = 33 + id_len + (1 - id_len % 2);
            out.push(Record {
                ident: r[33..33 + id_len].to_vec(),
                extent: both(&r[2..10]),
                size: both(&r[10..18]),
                flags: r[25],
                system_use: r[su_start..].to_vec(),
            });
            i += len;
        }
        out
    }

    /// SUSP entries as (signature, body without the 4-byte header).
    fn susp(area: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i + 4 <= area.len() {
            let len = area[i + 2] as usize;
            if len < 4 {
                break;
            }
            out.push((
                String::from_utf8(area[i..i + 2].to_vec()).unwrap(),
                area[i + 4..i + len].to_vec(),
            ));
            i += len;
        }
        out
    }

    fn sector(img: &[u8], n: u32) -> &[u8] {
        &img[n as usize * SECTOR..(n as usize + 1) * SECTOR]
    }

    #[test]
    fn names_map_to_level_one() {
        assert_eq!(iso_name("user-data"), "USER_DAT.;1");
        assert_eq!(iso_name("meta-data"), "META_DAT.;1");
        assert_eq!(iso_name("network-config"), "NETWORK_.;1");
        assert_eq!(iso_name("a.tar.gz"), "A_TAR.GZ;1");
        assert_eq!(iso_name(".hidden"), "_HIDDEN.;1");
        assert_eq!(iso_name("x.json"), "X.JSO;1");
    }

    #[test]
    fn volume_descriptors_and_path_tables() {
        let img = build("cidata", &[("user-data", b"u"), ("meta-data", b"m")], at()).unwrap();
        assert_eq!(img.len() % SECTOR, 0);
        assert!(img[..16 * SECTOR].iter().all(|&b| b == 0), "system area");
        let pvd = sector(&img, 16);
        assert_eq!(&pvd[..7], b"\x01CD001\x01");
        assert_eq!(&pvd[40..72], padded("cidata", 32).as_slice());
        assert_eq!(both(&pvd[80..88]) as usize * SECTOR, img.len());
        assert_eq!(&pvd[128..132], &both16(2048));
        assert_eq!(both(&pvd[132..140]), 10);
        assert_eq!(le32(&pvd[140..144]), 18);
        assert_eq!(be32(&pvd[148..152]), 19);
        assert_eq!(&pvd[813..829], b"2026112203040500");
        assert_eq!(pvd[881], 1);
        let root = &pvd[156..190];
        assert_eq!(root[0], 34);
        assert_eq!(both(&root[2..10]), ROOT_SECTOR);
        assert_eq!(both(&root[10..18]), SECTOR as u32);
        assert_eq!(root[25], 2);
        assert_eq!(&root[18..25], &[126, 11, 22, 3, 4, 5, 0]);
        assert_eq!(&sector(&img, 17)[..7], b"\xffCD001\x01");
        let l = sector(&img, 18);
        assert_eq!((l[0], le32(&l[2..6]), l[6], l[7]), (1, ROOT_SECTOR, 1, 0));
        let m = sector(&img, 19);
        assert_eq!((m[0], be32(&m[2..6]), m[6], m[7]), (1, ROOT_SECTOR, 0, 1));
    }

    #[test]
    fn root_directory_has_dot_dotdot_and_rock_ridge_names() {
        let user = b"#cloud-config\n{}\n".to_vec();
        let meta = vec![b'x'; 5000]; // spans three sectors
        let img = build(
            "cidata",
            &[("user-data", &user), ("meta-data", &meta)],
            at(),
        )
        .unwrap();
        let recs = records(sector(&img, ROOT_SECTOR));
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[0].ident, [0]);
        assert_eq!(recs[1].ident, [1]);
        assert!(recs[..2]
            .iter()
            .all(|r| r.extent == ROOT_SECTOR && r.flags == 2));
        // ISO order: META_DAT before USER_DAT
        assert_eq!(recs[2].ident, b"META_DAT.;1");
        assert_eq!(recs[3].ident, b"USER_DAT.;1");

        let dot = susp(&recs[0].system_use);
        assert_eq!(dot[0].0, "SP");
        assert_eq!(dot[0].1, [0xBE, 0xEF, 0]);
        assert_eq!(dot[1].0, "PX");
        assert_eq!(both(&dot[1].1[..8]), DIR_MODE);
        assert_eq!(dot[2].0, "CE");
        let (ce_sector, ce_off, ce_len) = (
            both(&dot[2].1[..8]),
            both(&dot[2].1[8..16]),
            both(&dot[2].1[16..24]),
        );
        let ce = &sector(&img, ce_sector)[ce_off as usize..(ce_off + ce_len) as usize];
        let er = susp(ce);
        assert_eq!(er[0].0, "ER");
        assert_eq!(&er[0].1[4..14], ER_ID.as_bytes());

        for (rec, name, data) in [
            (&recs[2], "meta-data", &meta),
            (&recs[3], "user-data", &user),
        ] {
            let entries = susp(&rec.system_use);
            let px = entries.iter().find(|e| e.0 == "PX").unwrap();
            assert_eq!(both(&px.1[..8]), FILE_MODE);
            let nm = entries.iter().find(|e| e.0 == "NM").unwrap();
            assert_eq!(&nm.1[1..], name.as_bytes());
            assert_eq!(rec.flags, 0);
            assert_eq!(rec.size as usize, data.len());
            let start = rec.extent as usize * SECTOR;
            assert_eq!(&img[start..start + data.len()], data.as_slice());
        }
        // files do not overlap: meta-data takes 3 sectors right after the root
        assert_eq!(recs[2].extent, ROOT_SECTOR + 1);
        assert_eq!(recs[3].extent, ROOT_SECTOR + 4);
        assert_eq!(img.len(), (ROOT_SECTOR + 5 + PAD_SECTORS) as usize * SECTOR);
    }

    #[test]
    fn names_that_collide_at_eight_three_are_rejected() {
        let err = build(
            "cidata",
            &[("network-config", b""), ("network-cfg", b"")],
            at(),
        )
        .unwrap_err();
        assert!(matches!(err, IsoError::NameCollision { .. }), "{err}");
    }

    #[test]
    fn a_directory_larger_than_a_sector_packs_records_without_crossing() {
        let names: Vec<String> = (0..40)
            .map(|i| format!("f{i:02}.{}", "y".repeat(100)))
            .collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"data"[..])).collect();
        let img = build("cidata", &files, at()).unwrap();
        let pvd = sector(&img, 16);
        let root_len = both(&pvd[156 + 10..156 + 18]) as usize;
        assert!(root_len > SECTOR, "the test needs a multi-sector root");
        let root_at = ROOT_SECTOR as usize * SECTOR;
        let recs = records(&img[root_at..root_at + root_len]);
        assert_eq!(recs.len(), 42);
        let mut seen: Vec<String> = recs[2..]
            .iter()
            .map(|r| {
                let e = susp(&r.system_use);
                String::from_utf8(e.iter().find(|e| e.0 == "NM").unwrap().1[1..].to_vec()).unwrap()
            })
            .collect();
        seen.sort();
        assert_eq!(seen, names);
        // the '.' record's size field covers the whole directory
        assert_eq!(recs[0].size as usize, root_len);
    }

    #[test]
    fn bad_inputs_are_rejected() {
        for name in ["", ".", "..", "a/b", "nul\0"] {
            assert!(matches!(
                build("cidata", &[(name, b"")], at()),
                Err(IsoError::BadName { .. })
            ));
        }
        let long = "n".repeat(MAX_NAME_LEN + 1);
        assert!(build("cidata", &[(long.as_str(), b"")], at()).is_err());
        let longest = "n".repeat(MAX_NAME_LEN);
        assert!(build("cidata", &[(longest.as_str(), b"")], at()).is_ok());
        assert!(matches!(
            build(&"L".repeat(33), &[], at()),
            Err(IsoError::BadLabel(_))
        ));
        assert!(matches!(build("", &[], at()), Err(IsoError::BadLabel(_))));
    }

    #[test]
    fn empty_files_take_no_sectors() {
        let img = build("cidata", &[("a", b""), ("b", b"1")], at()).unwrap();
        let recs = records(sector(&img, ROOT_SECTOR));
        assert_eq!(recs[2].size, 0);
        assert_eq!(recs[2].extent, recs[3].extent);
        assert_eq!(img.len(), (ROOT_SECTOR + 2 + PAD_SECTORS) as usize * SECTOR);
    }
}
