//! The Debian base image VM tests boot: `$KILN_TEST_BASE_IMAGE` when set,
//! else bootstrapped once through the library (Debian bookworm from this
//! host's mirror) into `target/kiln-test-cache/`. The bootstrap's lock makes
//! test binaries that start at the same time share one build: the others
//! wait, then use the cached image. Needs network to the Debian mirror the
//! first time (about 4–5 minutes under load), none afterwards.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kiln::build::cache::Cache;
use kiln::build::parent::{self, BootstrapSpec, ParentImage, ResolvedParent};

/// What the tests bootstrap: plain Debian bookworm, no extra packages.
pub fn base_spec() -> BootstrapSpec {
    BootstrapSpec {
        distro: "debian".into(),
        suite: "bookworm".into(),
        mirror: None,
        packages: vec![],
    }
}

/// The cache the tests share: `<target dir>/kiln-test-cache`.
pub fn test_cache() -> Cache {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    Cache::new(tmp.parent().unwrap_or(tmp).join("kiln-test-cache"))
}

/// The base image resolved through the library (bootstrapped on first use),
/// once per test process.
pub fn bootstrap_base_image() -> &'static ResolvedParent {
    static IMAGE: OnceLock<ResolvedParent> = OnceLock::new();
    IMAGE.get_or_init(|| {
        // its own thread and runtime, so callers may be inside a runtime
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            let progress = |m: &str| eprintln!("[base image] {m}");
            rt.block_on(parent::resolve(
                &ParentImage::Bootstrap(base_spec()),
                &test_cache(),
                // a bootstrap parent never reads the catalog
                Path::new("/nonexistent/catalog.sqlite"),
                &progress,
            ))
            .unwrap_or_else(|e| panic!("bootstrapping the test base image failed: {e}"))
        })
        .join()
        .expect("the bootstrap thread")
    })
}

/// The qcow2 base image for VM tests. Never write to it: use overlays.
pub fn base_image() -> PathBuf {
    match std::env::var_os("KILN_TEST_BASE_IMAGE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => bootstrap_base_image().path.clone(),
    }
}
