//! The cache of saved build VMs ("layers"): the build VM of a parent just
//! after it booted (SSH up, cloud-init done), and the build VM after each
//! build component's build phase. A layer is a folder
//! `<cache>/layers/<key>/` holding the VM's state (`state.zst`), its disk
//! as it was when saved (`disk.qcow2`, a qcow2 overlay whose backing file is
//! the layer below, or the parent image), the seed the VM booted with, the
//! throwaway SSH keys kiln gave it, the engine's chaining values, and
//! `meta.json`.
//!
//! The key is a digest of everything that makes the state valid: the
//! parent image's digest, the machine (vCPUs, memory, machine type,
//! accelerator, disk size, network mode), the QEMU version and kiln's layer
//! format; a component layer adds, in order, each component's document
//! digest and parameters (values hashed with this cache's secret salt, so
//! the folder name reveals no parameter).
//!
//! Safety rules: files are 0600 in 0700 folders; a layer is written under a
//! temporary name and renamed into place whole, so a layer being written is
//! never read; a build holds a shared lock on every layer its disk chain
//! uses until the build ends, and pruning takes the exclusive lock, so a
//! layer in use is never removed; removing a layer removes the layers
//! built on it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{DirBuilder, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lock::{FileLock, LockError};
use crate::util::atomic;
use crate::util::digest::sha256_hex;
use crate::util::io::IoError;

/// The version of the layer format; a change makes every old layer unused.
pub const LAYER_FORMAT: u32 = 1;

/// How long a component layer is used by default (`build.cache.maxAgeHours`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(168 * 3600);

/// The files of a layer.
pub const STATE_FILE: &str = "state.zst";
/// The disk as it was when the layer was saved.
pub const DISK_FILE: &str = "disk.qcow2";
/// The NoCloud seed the VM booted with (a restored VM gets it again, so a
/// reboot in a later component sees the same instance).
pub const SEED_FILE: &str = "seed.iso";
/// The private key the guest's build user accepts (replaced after restore).
pub const CLIENT_KEY_FILE: &str = "client_key";
/// The guest's SSH host key (pinned).
pub const HOST_KEY_FILE: &str = "host_key";
/// The engine's chaining values after the layer's component.
pub const CHAINING_FILE: &str = "chaining.json";
const META_FILE: &str = "meta.json";

/// Errors of the layer cache.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A lock failed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A layer's description is damaged.
    #[error("the layer description {} is damaged", path.display())]
    Meta {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// What a layer holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    /// The parent, booted.
    Booted,
    /// After a build component's build phase.
    Component,
}

/// The component a layer ends with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerComponent {
    /// Its position in the recipe (1-based).
    pub index: usize,
    /// Its document's name.
    pub name: String,
    /// How the recipe names it.
    pub reference: String,
    /// The document's sha256.
    pub sha256: String,
}

/// `meta.json` of a layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerMeta {
    /// [`LAYER_FORMAT`] when written.
    pub format: u32,
    /// The key (also the folder's name).
    pub key: String,
    /// What it holds.
    pub kind: LayerKind,
    /// For a component layer, the component.
    pub component: Option<LayerComponent>,
    /// The key of the layer its disk is backed by (`None`: the parent).
    pub below: Option<String>,
    /// The backing file of its disk when saved.
    pub backing: PathBuf,
    /// The parent image's sha256.
    pub parent_sha256: String,
    /// When it was saved (RFC 3339).
    pub created_at: String,
    /// When a build last used it (RFC 3339).
    pub last_used_at: String,
    /// Size of the state file.
    pub state_bytes: u64,
    /// Size of the disk file.
    pub disk_bytes: u64,
    /// Guest memory.
    pub guest_ram_bytes: u64,
    /// How long the save took.
    pub save_seconds: f64,
}

impl LayerMeta {
    /// The layer's age at `now` (zero when its time cannot be read).
    pub fn age(&self, now: chrono::DateTime<chrono::Utc>) -> Duration {
        chrono::DateTime::parse_from_rfc3339(&self.created_at)
            .ok()
            .and_then(|t| (now - t.with_timezone(&chrono::Utc)).to_std().ok())
            .unwrap_or_default()
    }

    fn last_used(&self) -> String {
        self.last_used_at.clone()
    }
}

/// What makes a booted parent's state valid. Its digest is the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BootedInputs {
    /// The parent image's sha256.
    pub parent_sha256: String,
    /// Where the parent is (the saved disk is backed by this path).
    pub parent_path: PathBuf,
    /// vCPUs.
    pub cpus: u32,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// QEMU's machine type.
    pub machine: String,
    /// The accelerator.
    pub accel: String,
    /// The root disk's virtual size.
    pub disk_bytes: u64,
    /// The guest's network mode.
    pub network: String,
    /// `qemu-system-x86_64 --version`'s first line.
    pub qemu_version: String,
    /// The seed and build-user conventions of this kiln.
    pub seed_format: u32,
}

/// The key of a booted parent's layer.
pub fn booted_key(inputs: &BootedInputs) -> String {
    let json = serde_json::json!({ "layer": LAYER_FORMAT, "booted": inputs });
    sha256_hex(json.to_string().as_bytes())
}

/// The key of the layer after `component` on top of the layer `below`:
/// its document digest and its parameters, each value hashed with `salt`.
pub fn component_key(
    below: &str,
    document_sha256: &str,
    parameters: &BTreeMap<String, String>,
    salt: &[u8],
) -> String {
    let params: BTreeMap<&str, String> = parameters
        .iter()
        .map(|(k, v)| {
            let mut salted = salt.to_vec();
            salted.extend_from_slice(v.as_bytes());
            (k.as_str(), sha256_hex(&salted))
        })
        .collect();
    let json = serde_json::json!({
        "layer": LAYER_FORMAT,
        "below": below,
        "document": document_sha256,
        "parameters": params,
    });
    sha256_hex(json.to_string().as_bytes())
}

/// What a build knows of a layer it is about to save.
#[derive(Debug)]
pub struct LayerDraft<'a> {
    /// Its key.
    pub key: &'a str,
    /// What it holds.
    pub kind: LayerKind,
    /// The component it ends with.
    pub component: Option<LayerComponent>,
    /// The layer below (`None`: the parent).
    pub below: Option<&'a str>,
    /// The saved disk's backing file.
    pub backing: &'a Path,
    /// The parent image's sha256.
    pub parent_sha256: &'a str,
}

impl LayerDraft<'_> {
    /// The description of the layer once `saved` is written into `writer`.
    pub fn meta(&self, saved: &crate::vm::snapshot::Saved, writer: &LayerWriter) -> LayerMeta {
        let now = chrono::Utc::now().to_rfc3339();
        let size = |name: &str| std::fs::metadata(writer.file(name)).map_or(0, |m| m.len());
        LayerMeta {
            format: LAYER_FORMAT,
            key: self.key.to_string(),
            kind: self.kind.clone(),
            component: self.component.clone(),
            below: self.below.map(String::from),
            backing: std::fs::canonicalize(self.backing).unwrap_or(self.backing.to_path_buf()),
            parent_sha256: self.parent_sha256.to_string(),
            created_at: now.clone(),
            last_used_at: now,
            state_bytes: saved.file_bytes,
            disk_bytes: size(DISK_FILE),
            guest_ram_bytes: saved.guest_ram_bytes,
            save_seconds: saved.seconds,
        }
    }

    /// What it holds, for people.
    pub fn what(&self) -> String {
        match &self.component {
            Some(c) => format!("build VM after component {} ({})", c.index, c.name),
            None => "booted parent".to_string(),
        }
    }
}

/// A layer found in the cache, held with a shared lock until dropped.
#[derive(Debug)]
pub struct Layer {
    /// Its folder.
    pub dir: PathBuf,
    /// Its description.
    pub meta: LayerMeta,
    _lock: FileLock,
}

impl Layer {
    /// A file of the layer.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Why a layer was not used.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    /// No such layer.
    Absent,
    /// It is older than the limit.
    Expired {
        /// Its age.
        age: Duration,
    },
    /// A file is missing or its description is damaged.
    Damaged(String),
    /// Another kiln is writing or pruning it.
    Busy,
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::Absent => f.write_str("none cached"),
            Miss::Expired { age } => write!(f, "the cached one is {} h old", age.as_secs() / 3600),
            Miss::Damaged(why) => write!(f, "the cached one is damaged ({why})"),
            Miss::Busy => f.write_str("another kiln is writing it"),
        }
    }
}

/// A layer being written; dropped uncommitted, its folder is removed.
#[derive(Debug)]
pub struct LayerWriter {
    dir: PathBuf,
    dest: PathBuf,
    root: PathBuf,
    committed: bool,
    _lock: FileLock,
}

impl LayerWriter {
    /// The folder to write the layer's files into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the layer being written.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes a small private file (0600) into the layer.
    pub fn write_private(&self, name: &str, bytes: &[u8]) -> Result<(), LayerError> {
        Ok(write_new_private(&self.file(name), bytes)?)
    }

    /// Flushes every file, writes `meta.json`, and renames the folder into
    /// place (replacing an older layer of the same key).
    pub fn commit(mut self, meta: &LayerMeta) -> Result<PathBuf, LayerError> {
        atomic::write_json(&self.file(META_FILE), meta)?;
        for e in std::fs::read_dir(&self.dir).map_err(IoError::at("read", &self.dir))? {
            let path = e.map_err(IoError::at("read", &self.dir))?.path();
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(IoError::at("flush", &path))?;
        }
        atomic::sync_dir(&self.dir)?;
        if self.dest.exists() {
            std::fs::remove_dir_all(&self.dest).map_err(IoError::at("remove", &self.dest))?;
        }
        std::fs::rename(&self.dir, &self.dest).map_err(IoError::at("rename", &self.dir))?;
        atomic::sync_dir(&self.root)?;
        self.committed = true;
        Ok(self.dest.clone())
    }
}

impl Drop for LayerWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Creates `path` (which must not exist) as a 0600 file holding `bytes`,
/// flushed to disk.
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(IoError::at("create", path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(IoError::at("write", path))
}

/// A layer as `kiln cache list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LayerInfo {
    /// Its description.
    #[serde(flatten)]
    pub meta: LayerMeta,
    /// Bytes on disk (every file).
    pub bytes: u64,
    /// Whether a build uses it now.
    pub in_use: bool,
}

/// What pruning removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pruned {
    /// Keys removed, with why.
    pub removed: Vec<(String, String)>,
    /// Bytes freed.
    pub bytes: u64,
    /// Keys kept because a build uses them.
    pub in_use: Vec<String>,
}

/// `<cache>/layers`.
#[derive(Clone, Debug)]
pub struct LayerStore {
    root: PathBuf,
}

fn private_dir(path: &Path) -> Result<(), IoError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(IoError::at("create", path))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

impl LayerStore {
    /// The store under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LayerStore { root: root.into() }
    }

    /// Its folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock_path(&self, key: &str) -> PathBuf {
        self.root.join(format!("{key}.lock"))
    }

    fn read_meta(&self, dir: &Path) -> Result<LayerMeta, LayerError> {
        let path = dir.join(META_FILE);
        let text = std::fs::read_to_string(&path).map_err(IoError::at("read", &path))?;
        serde_json::from_str(&text).map_err(|source| LayerError::Meta { path, source })
    }

    /// This cache's secret salt for parameter values (made on first use).
    pub fn salt(&self) -> Result<Vec<u8>, LayerError> {
        private_dir(&self.root)?;
        let path = self.root.join("salt");
        match std::fs::read(&path) {
            Ok(s) if s.len() == 32 => return Ok(s),
            Ok(_) | Err(_) => {}
        }
        let salt: [u8; 32] = rand::random();
        let tmp = self.root.join(format!(".salt-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        write_new_private(&tmp, &salt)?;
        // the first kiln to rename wins; every kiln then reads the same salt
        if std::fs::hard_link(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
            return std::fs::read(&path).map_err(|e| IoError::at("read", &path)(e).into());
        }
        let _ = std::fs::remove_file(&tmp);
        Ok(salt.to_vec())
    }

    /// The layer `key`, held shared, when it exists, is whole, and is
    /// younger than `max_age`; otherwise why not.
    pub fn open(
        &self,
        key: &str,
        max_age: Option<Duration>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Result<Layer, Miss>, LayerError> {
        let dir = self.root.join(key);
        if !dir.is_dir() {
            return Ok(Err(Miss::Absent));
        }
        let Some(lock) = FileLock::try_shared(&self.lock_path(key))? else {
            return Ok(Err(Miss::Busy));
        };
        let mut meta = match self.read_meta(&dir) {
            Ok(m) => m,
            Err(e) => return Ok(Err(Miss::Damaged(e.to_string()))),
        };
        if meta.format != LAYER_FORMAT || meta.key != key {
            return Ok(Err(Miss::Damaged("another layer format".into())));
        }
        for name in [
            STATE_FILE,
            DISK_FILE,
            SEED_FILE,
            CLIENT_KEY_FILE,
            HOST_KEY_FILE,
        ] {
            if !dir.join(name).is_file() {
                return Ok(Err(Miss::Damaged(format!("{name} is missing"))));
            }
        }
        if let Some(limit) = max_age {
            let age = meta.age(now);
            if age > limit {
                return Ok(Err(Miss::Expired { age }));
            }
        }
        meta.last_used_at = now.to_rfc3339();
        // last use is advisory: two readers may race, either time is right
        let _ = atomic::write_json(&dir.join(META_FILE), &meta);
        Ok(Ok(Layer {
            dir,
            meta,
            _lock: lock,
        }))
    }

    /// Starts writing the layer `key`; `None` when another kiln holds it
    /// (writing it, or building on it).
    pub fn writer(&self, key: &str) -> Result<Option<LayerWriter>, LayerError> {
        private_dir(&self.root)?;
        let Some(lock) = FileLock::try_exclusive(&self.lock_path(key))? else {
            return Ok(None);
        };
        let dir = self
            .root
            .join(format!(".new-{key}-{}", uuid::Uuid::new_v4().simple()));
        private_dir(&dir)?;
        Ok(Some(LayerWriter {
            dir,
            dest: self.root.join(key),
            root: self.root.clone(),
            committed: false,
            _lock: lock,
        }))
    }

    /// Every layer, oldest use first.
    pub fn list(&self) -> Result<Vec<LayerInfo>, LayerError> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(out);
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.starts_with('.') || !path.is_dir() {
                continue;
            }
            let Ok(meta) = self.read_meta(&path) else {
                continue;
            };
            let in_use = FileLock::try_exclusive(&self.lock_path(&name))?.is_none();
            out.push(LayerInfo {
                bytes: dir_bytes(&path),
                meta,
                in_use,
            });
        }
        out.sort_by_key(|l| l.meta.last_used());
        Ok(out)
    }

    /// Removes layers older than `max_age` and, least recently used first,
    /// layers until the rest fit in `max_bytes`; a removed layer takes the
    /// layers built on it along. Layers in use are kept. Leftovers of
    /// writers that died are removed too.
    pub fn prune(
        &self,
        max_age: Option<Duration>,
        max_bytes: Option<u64>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Pruned, LayerError> {
        let mut pruned = Pruned::default();
        self.remove_dead_writers()?;
        let layers = self.list()?;
        let size: BTreeMap<&str, u64> = layers
            .iter()
            .map(|l| (l.meta.key.as_str(), l.bytes))
            .collect();
        let mut total: u64 = size.values().sum();
        let mut gone: BTreeSet<String> = BTreeSet::new();
        for l in &layers {
            let key = &l.meta.key;
            if gone.contains(key) {
                continue;
            }
            let why = if max_age.is_some_and(|m| l.meta.age(now) > m) {
                "older than the limit".to_string()
            } else if max_bytes.is_some_and(|m| total > m) {
                "least recently used, over the size limit".to_string()
            } else {
                continue;
            };
            let group = built_on(&layers, key);
            if let Err(busy) = self.remove_all(&group)? {
                pruned.in_use.push(busy);
                continue;
            }
            for k in group {
                let freed = size.get(k.as_str()).copied().unwrap_or(0);
                total = total.saturating_sub(freed);
                pruned.bytes += freed;
                let reason = if &k == key {
                    why.clone()
                } else {
                    format!("built on {}", &key[..12.min(key.len())])
                };
                pruned.removed.push((k.clone(), reason));
                gone.insert(k);
            }
        }
        Ok(pruned)
    }

    /// Removes `.new-KEY-*` folders whose writer is gone (its lock is free).
    fn remove_dead_writers(&self) -> Result<(), LayerError> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(".new-") else {
                continue;
            };
            let key = rest.rsplit_once('-').map_or(rest, |(k, _)| k);
            if let Some(_lock) = FileLock::try_exclusive(&self.lock_path(key))? {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(())
    }

    /// Removes the layer `key` (damaged, or to be replaced) and the layers
    /// built on it; false when a build uses one of them.
    pub fn remove(&self, key: &str) -> Result<bool, LayerError> {
        let group = built_on(&self.list()?, key);
        Ok(self.remove_all(&group)?.is_ok())
    }

    /// Removes every layer of `keys` when none is in use; else the key of
    /// one that is, and nothing is removed.
    fn remove_all(&self, keys: &[String]) -> Result<Result<(), String>, LayerError> {
        let mut locks = Vec::new();
        for k in keys {
            match FileLock::try_exclusive(&self.lock_path(k))? {
                Some(l) => locks.push(l),
                None => return Ok(Err(k.clone())),
            }
        }
        for k in keys {
            let dir = self.root.join(k);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(IoError::at("remove", &dir))?;
            }
            let _ = std::fs::remove_file(self.lock_path(k));
        }
        Ok(Ok(()))
    }
}

/// `key` and every layer built on it, directly or not.
fn built_on(layers: &[LayerInfo], key: &str) -> Vec<String> {
    let mut group = vec![key.to_string()];
    let mut i = 0;
    while i < group.len() {
        let below = group[i].clone();
        group.extend(
            layers
                .iter()
                .filter(|l| l.meta.below.as_deref() == Some(below.as_str()))
                .map(|l| l.meta.key.clone()),
        );
        i += 1;
    }
    group
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str, below: Option<&str>, created: &str, used: &str) -> LayerMeta {
        LayerMeta {
            format: LAYER_FORMAT,
            key: key.into(),
            kind: if below.is_some() {
                LayerKind::Component
            } else {
                LayerKind::Booted
            },
            component: None,
            below: below.map(String::from),
            backing: "/p/base.qcow2".into(),
            parent_sha256: "ab".into(),
            created_at: created.into(),
            last_used_at: used.into(),
            state_bytes: 10,
            disk_bytes: 10,
            guest_ram_bytes: 1 << 30,
            save_seconds: 1.0,
        }
    }

    fn write(store: &LayerStore, m: &LayerMeta, bytes: usize) {
        let w = store.writer(&m.key).unwrap().unwrap();
        for name in [SEED_FILE, CLIENT_KEY_FILE, HOST_KEY_FILE, DISK_FILE] {
            w.write_private(name, b"x").unwrap();
        }
        w.write_private(STATE_FILE, &vec![7u8; bytes]).unwrap();
        w.commit(m).unwrap();
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        "2026-12-02T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn keys_change_with_every_input_and_hide_parameter_values() {
        let base = BootedInputs {
            parent_sha256: "aa".into(),
            parent_path: "/p".into(),
            cpus: 2,
            memory_mib: 2048,
            machine: "q35".into(),
            accel: "tcg".into(),
            disk_bytes: 4 << 30,
            network: "outbound".into(),
            qemu_version: "QEMU emulator version 7.2.22".into(),
            seed_format: 1,
        };
        let k = booted_key(&base);
        assert_eq!(k, booted_key(&base.clone()));
        for changed in [
            BootedInputs {
                cpus: 1,
                ..base.clone()
            },
            BootedInputs {
                memory_mib: 1024,
                ..base.clone()
            },
            BootedInputs {
                accel: "kvm".into(),
                ..base.clone()
            },
            BootedInputs {
                qemu_version: "8.2".into(),
                ..base.clone()
            },
            BootedInputs {
                disk_bytes: 8 << 30,
                ..base.clone()
            },
            BootedInputs {
                parent_sha256: "bb".into(),
                ..base.clone()
            },
        ] {
            assert_ne!(booted_key(&changed), k);
        }
        let p = BTreeMap::from([("password".to_string(), "hunter2".to_string())]);
        let c1 = component_key(&k, "d1", &p, b"salt-a");
        assert_ne!(c1, component_key(&k, "d2", &p, b"salt-a"));
        assert_ne!(c1, component_key("other", "d1", &p, b"salt-a"));
        assert_ne!(c1, component_key(&k, "d1", &p, b"salt-b"));
        let q = BTreeMap::from([("password".to_string(), "hunter3".to_string())]);
        assert_ne!(c1, component_key(&k, "d1", &q, b"salt-a"));
    }

    #[test]
    fn written_whole_then_found_held_and_expired() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayerStore::new(dir.path().join("layers"));
        assert_eq!(
            store.open("k1", None, now()).unwrap().unwrap_err(),
            Miss::Absent
        );
        // being written: not visible, and dropped unfinished it leaves nothing
        let w = store.writer("k1").unwrap().unwrap();
        w.write_private(STATE_FILE, b"x").unwrap();
        assert_eq!(
            store.open("k1", None, now()).unwrap().unwrap_err(),
            Miss::Absent
        );
        drop(w);
        assert_eq!(
            std::fs::read_dir(store.root())
                .unwrap()
                .flatten()
                .filter(|e| e.path().is_dir())
                .count(),
            0
        );

        write(
            &store,
            &meta("k1", None, "2026-12-01T12:00:00Z", "2026-12-01T12:00:00Z"),
            100,
        );
        let mode = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(store.root()), 0o700);
        assert_eq!(mode(&store.root().join("k1/state.zst")), 0o600);
        let layer = store.open("k1", None, now()).unwrap().unwrap();
        assert_eq!(layer.meta.last_used_at, now().to_rfc3339());
        // held: no writer and no prune can take it
        assert!(store.writer("k1").unwrap().is_none());
        let p = store
            .prune(Some(Duration::from_secs(1)), None, now())
            .unwrap();
        assert!(
            p.removed.is_empty() && p.in_use == vec!["k1".to_string()],
            "{p:?}"
        );
        drop(layer);
        // 24 h old: expired for a 1 h limit, fine for 48 h
        let miss = store
            .open("k1", Some(Duration::from_secs(3600)), now())
            .unwrap()
            .unwrap_err();
        assert!(matches!(miss, Miss::Expired { .. }), "{miss:?}");
        assert!(store
            .open("k1", Some(Duration::from_secs(48 * 3600)), now())
            .unwrap()
            .is_ok());
        // a missing file makes it damaged
        std::fs::remove_file(store.root().join("k1/disk.qcow2")).unwrap();
        assert!(matches!(
            store.open("k1", None, now()).unwrap().unwrap_err(),
            Miss::Damaged(_)
        ));
    }

    #[test]
    fn prune_by_age_and_size_takes_layers_above_along() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayerStore::new(dir.path().join("layers"));
        write(
            &store,
            &meta("boot", None, "2026-12-02T00:00:00Z", "2026-12-02T01:00:00Z"),
            1000,
        );
        write(
            &store,
            &meta(
                "c1",
                Some("boot"),
                "2026-12-02T00:00:00Z",
                "2026-12-02T11:00:00Z",
            ),
            1000,
        );
        write(
            &store,
            &meta("old", None, "2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z"),
            1000,
        );
        // a writer that died left its folder
        std::fs::create_dir(store.root().join(".new-zz-123")).unwrap();
        let p = store
            .prune(Some(Duration::from_secs(7 * 24 * 3600)), None, now())
            .unwrap();
        assert_eq!(
            p.removed,
            vec![("old".to_string(), "older than the limit".to_string())]
        );
        assert!(!store.root().join(".new-zz-123").exists());
        // over the size limit: the least recently used goes, and c1 with it
        let p = store.prune(None, Some(1500), now()).unwrap();
        let keys: Vec<&str> = p.removed.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["boot", "c1"], "{p:?}");
        assert!(p.removed[1].1.starts_with("built on boot"));
        assert!(store.list().unwrap().is_empty());
    }
}
