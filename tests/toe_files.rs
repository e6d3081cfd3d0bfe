//! The file-system actions against the real file system, through the local
//! target. Tests run as root (ownership tests chown to `nobody`, uid 65534).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use kiln::target::local::LocalTarget;
use kiln::toe::actions::transfer::Clients;
use kiln::toe::actions::{run, ActionContext, ActionError, ActionOutcome, Inputs};
use kiln::toe::console::{Console, Redactor};
use serde_json::{json, Value};
use tempfile::TempDir;

const NOBODY: u32 = 65534;

/// A temp folder to work in and a way to run actions.
struct Env {
    dir: TempDir,
    scratch: TempDir,
}

fn items(inputs: Value) -> Vec<Inputs> {
    match inputs {
        Value::Array(list) => list
            .into_iter()
            .map(|v| Inputs(v.as_object().expect("an input map").clone()))
            .collect(),
        Value::Object(map) => vec![Inputs(map)],
        other => panic!("bad inputs {other}"),
    }
}

impl Env {
    fn new() -> Env {
        Env {
            dir: TempDir::new().unwrap(),
            scratch: TempDir::new().unwrap(),
        }
    }

    /// The absolute path of `rel` in the temp folder.
    fn p(&self, rel: &str) -> String {
        format!("{}/{rel}", self.dir.path().display())
    }

    fn put(&self, rel: &str, content: &str) -> String {
        let path = self.p(rel);
        fs::create_dir_all(Path::new(&path).parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        path
    }

    fn mkdir(&self, rel: &str) -> String {
        let path = self.p(rel);
        fs::create_dir_all(&path).unwrap();
        path
    }

    async fn run_with(
        &self,
        action: &str,
        inputs: Value,
        console: &Console,
        quiet: bool,
    ) -> Result<ActionOutcome, ActionError> {
        let target = LocalTarget;
        let clients = Clients::default();
        let ctx = ActionContext {
            target: &target,
            console,
            scratch_dir: self.scratch.path().to_str().unwrap(),
            quiet,
            env: &[],
            clients: &clients,
        };
        run(action, &items(inputs), &ctx).await
    }

    async fn run(&self, action: &str, inputs: Value) -> Result<ActionOutcome, ActionError> {
        self.run_with(action, inputs, &Console::discard(), false)
            .await
    }

    async fn ok(&self, action: &str, inputs: Value) -> ActionOutcome {
        match self.run(action, inputs.clone()).await {
            Ok(out) => out,
            Err(e) => panic!("{action} {inputs} failed: {e}"),
        }
    }

    /// Runs an action that must fail; its message must name the action.
    async fn err(&self, action: &str, inputs: Value) -> String {
        match self.run(action, inputs.clone()).await {
            Ok(out) => panic!("{action} {inputs} should fail, gave {:?}", out.outputs),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with(&format!("{action}: ")), "{msg}");
                msg
            }
        }
    }
}

fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn mode(path: &str) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn exists(path: &str) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn assert_has(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "`{message}` lacks `{part}`");
    }
}

// ---------------------------------------------------------------- CreateFile

#[tokio::test]
async fn create_file_writes_content_and_creates_parents() {
    let env = Env::new();
    let path = env.p("a/b/c/new.txt");
    env.ok(
        "CreateFile",
        json!({"path": path, "content": "hello\nworld\n"}),
    )
    .await;
    assert_eq!(read(&path), "hello\nworld\n");
    assert!(Path::new(&env.p("a/b/c")).is_dir());
    // content defaults to empty
    let empty = env.p("empty.txt");
    env.ok("CreateFile", json!({"path": empty})).await;
    assert_eq!(fs::read(&empty).unwrap(), b"");
}

#[tokio::test]
async fn create_file_overwrites_by_default_and_not_with_overwrite_false() {
    let env = Env::new();
    let path = env.put("f.txt", "a much longer old content");
    env.ok("CreateFile", json!({"path": path, "content": "new"}))
        .await;
    assert_eq!(read(&path), "new", "truncated and replaced");
    env.ok(
        "CreateFile",
        json!({"path": path, "content": "newer", "overwrite": "true"}),
    )
    .await;
    assert_eq!(read(&path), "newer");

    let msg = env
        .err(
            "CreateFile",
            json!({"path": path, "content": "x", "overwrite": false}),
        )
        .await;
    assert_has(&msg, &[&path, "already exists", "overwrite"]);
    assert_eq!(read(&path), "newer", "left alone");
    // the string form works too, and a new file is fine without overwrite
    env.err(
        "CreateFile",
        json!({"path": path, "content": "x", "overwrite": "false"}),
    )
    .await;
    let fresh = env.p("fresh.txt");
    env.ok(
        "CreateFile",
        json!({"path": fresh, "content": "x", "overwrite": "false"}),
    )
    .await;
    assert_eq!(read(&fresh), "x");
}

#[tokio::test]
async fn create_file_permissions_are_octal_text() {
    let env = Env::new();
    let a = env.p("a.sh");
    env.ok("CreateFile", json!({"path": a, "permissions": "0640"}))
        .await;
    assert_eq!(mode(&a), 0o640);
    let b = env.p("b.sh");
    env.ok("CreateFile", json!({"path": b, "permissions": "755"}))
        .await;
    assert_eq!(mode(&b), 0o755);
    // permissions also apply when the file existed
    env.ok("CreateFile", json!({"path": b, "permissions": "0700"}))
        .await;
    assert_eq!(mode(&b), 0o700);
    // without permissions: the umask default, like any new file
    let c = env.p("c.txt");
    env.ok("CreateFile", json!({"path": c})).await;
    let reference = env.put("reference.txt", "");
    assert_eq!(mode(&c), mode(&reference));
    assert_eq!(mode(&c) & 0o111, 0, "not executable by default");

    let bad = env.p("bad.txt");
    let msg = env
        .err(
            "CreateFile",
            json!({"path": bad, "permissions": "rwxr-xr-x"}),
        )
        .await;
    assert_has(&msg, &["rwxr-xr-x", "octal"]);
    assert!(!exists(&bad), "nothing created on bad input");
}

#[tokio::test]
async fn create_file_sets_owner_and_group() {
    let env = Env::new();
    let a = env.p("owned.txt");
    env.ok("CreateFile", json!({"path": a, "owner": "nobody"}))
        .await;
    assert_eq!(fs::metadata(&a).unwrap().uid(), NOBODY);
    let b = env.p("owned2.txt");
    env.ok(
        "CreateFile",
        json!({"path": b, "owner": "65534", "group": "65534"}),
    )
    .await;
    let md = fs::metadata(&b).unwrap();
    assert_eq!((md.uid(), md.gid()), (NOBODY, NOBODY));
    // a group alone keeps the owner
    let c = env.p("group-only.txt");
    env.ok("CreateFile", json!({"path": c, "group": "65534"}))
        .await;
    let md = fs::metadata(&c).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, NOBODY));

    let msg = env
        .err(
            "CreateFile",
            json!({"path": env.p("x.txt"), "owner": "no-such-user-kiln"}),
        )
        .await;
    assert_has(&msg, &["x.txt"]);
}

#[tokio::test]
async fn create_file_writes_each_encoding_without_bom() {
    let env = Env::new();
    let cases: &[(&str, &[u8])] = &[
        ("utf8", b"A\xc3\xa9"),
        ("UTF-8", b"A\xc3\xa9"),
        ("utf16", &[0x41, 0, 0xe9, 0]),
        ("UTF-16", &[0x41, 0, 0xe9, 0]),
        ("utf-16-LE", &[0x41, 0, 0xe9, 0]),
        ("utf16-BE", &[0, 0x41, 0, 0xe9]),
        ("utf-16-BE", &[0, 0x41, 0, 0xe9]),
        ("utf32", &[0x41, 0, 0, 0, 0xe9, 0, 0, 0]),
        ("UTF-32", &[0x41, 0, 0, 0, 0xe9, 0, 0, 0]),
        ("utf32-LE", &[0x41, 0, 0, 0, 0xe9, 0, 0, 0]),
        ("utf-32-BE", &[0, 0, 0, 0x41, 0, 0, 0, 0xe9]),
    ];
    for (i, (enc, want)) in cases.iter().enumerate() {
        let path = env.p(&format!("enc{i}.txt"));
        env.ok(
            "CreateFile",
            json!({"path": path, "content": "Aé", "encoding": enc}),
        )
        .await;
        assert_eq!(fs::read(&path).unwrap(), *want, "{enc}");
    }
    // a character outside the BMP becomes a surrogate pair
    let path = env.p("emoji.txt");
    env.ok(
        "CreateFile",
        json!({"path": path, "content": "😀", "encoding": "utf16-BE"}),
    )
    .await;
    assert_eq!(fs::read(&path).unwrap(), [0xd8, 0x3d, 0xde, 0x00]);
    let msg = env
        .err(
            "CreateFile",
            json!({"path": env.p("x"), "encoding": "latin1"}),
        )
        .await;
    assert_has(&msg, &["latin1"]);
}

#[tokio::test]
async fn create_file_refuses_folders() {
    let env = Env::new();
    let dir = env.mkdir("folder");
    let msg = env
        .err("CreateFile", json!({"path": dir, "content": "x"}))
        .await;
    assert_has(&msg, &[&dir, "folder"]);
    assert!(Path::new(&dir).is_dir());
    let slash = format!("{}/", env.p("nofile"));
    let msg = env.err("CreateFile", json!({"path": slash})).await;
    assert_has(&msg, &[&slash]);
    assert!(!exists(&env.p("nofile")));
}

#[tokio::test]
async fn list_inputs_run_every_item() {
    let env = Env::new();
    let (a, b) = (env.p("one.txt"), env.p("sub/two.txt"));
    env.ok(
        "CreateFile",
        json!([{"path": a, "content": "1"}, {"path": b, "content": "2"}]),
    )
    .await;
    assert_eq!((read(&a), read(&b)), ("1".into(), "2".into()));
}

// ---------------------------------------------------------------- AppendFile

#[tokio::test]
async fn append_file_appends_in_the_encoding() {
    let env = Env::new();
    let path = env.put("log.txt", "one\n");
    env.ok("AppendFile", json!({"path": path, "content": "two\n"}))
        .await;
    assert_eq!(read(&path), "one\ntwo\n");
    env.ok("AppendFile", json!({"path": path})).await;
    assert_eq!(read(&path), "one\ntwo\n", "empty content appends nothing");
    env.ok(
        "AppendFile",
        json!({"path": path, "content": "é", "encoding": "utf16"}),
    )
    .await;
    assert_eq!(fs::read(&path).unwrap(), b"one\ntwo\n\xe9\x00");
    env.ok(
        "AppendFile",
        json!({"path": path, "content": "A", "encoding": "utf32-BE"}),
    )
    .await;
    assert!(fs::read(&path).unwrap().ends_with(&[0, 0, 0, 0x41]));
}

#[tokio::test]
async fn append_file_needs_an_existing_file() {
    let env = Env::new();
    let missing = env.p("missing.txt");
    let msg = env
        .err("AppendFile", json!({"path": missing, "content": "x"}))
        .await;
    assert_has(&msg, &[&missing, "does not exist"]);
    assert!(!exists(&missing), "not created");
    let dir = env.mkdir("d");
    let msg = env
        .err("AppendFile", json!({"path": dir, "content": "x"}))
        .await;
    assert_has(&msg, &[&dir, "folder"]);
}

// ---------------------------------------------------------------- CopyFile

#[tokio::test]
async fn copy_file_to_a_path_creates_folders_and_keeps_mode() {
    let env = Env::new();
    let src = env.put("src/app.conf", "key=value\n");
    fs::set_permissions(&src, fs::Permissions::from_mode(0o751)).unwrap();
    let dst = env.p("deep/er/renamed.conf");
    env.ok("CopyFile", json!({"source": src, "destination": dst}))
        .await;
    assert_eq!(read(&dst), "key=value\n");
    assert_eq!(read(&src), "key=value\n", "source kept");
    assert_eq!(mode(&dst), 0o751);
}

#[tokio::test]
async fn copy_file_into_a_folder_keeps_the_name() {
    let env = Env::new();
    let src = env.put("src/app.conf", "x");
    let folder = env.p("new/folder/");
    env.ok("CopyFile", json!({"source": src, "destination": folder}))
        .await;
    assert_eq!(read(&env.p("new/folder/app.conf")), "x");
    // existing folder, and a doubled separator
    env.mkdir("there");
    env.ok(
        "CopyFile",
        json!({"source": src, "destination": env.p("there//")}),
    )
    .await;
    assert_eq!(read(&env.p("there/app.conf")), "x");
}

#[tokio::test]
async fn copy_file_overwrite_rules() {
    let env = Env::new();
    let src = env.put("a.txt", "new");
    let dst = env.put("b.txt", "old old old");
    env.ok("CopyFile", json!({"source": src, "destination": dst}))
        .await;
    assert_eq!(read(&dst), "new", "overwrites by default");

    fs::write(&dst, "keep").unwrap();
    let msg = env
        .err(
            "CopyFile",
            json!({"source": src, "destination": dst, "overwrite": false}),
        )
        .await;
    assert_has(&msg, &[&dst, "already exists"]);
    assert_eq!(read(&dst), "keep");
    // into a folder, with overwrite false and the name taken
    let folder = env.mkdir("f");
    env.put("f/a.txt", "taken");
    env.err(
        "CopyFile",
        json!({"source": src, "destination": format!("{folder}/"), "overwrite": "false"}),
    )
    .await;
    assert_eq!(read(&env.p("f/a.txt")), "taken");
}

#[tokio::test]
async fn copy_file_source_errors() {
    let env = Env::new();
    let missing = env.p("x/y");
    let msg = env
        .err(
            "CopyFile",
            json!({"source": missing, "destination": env.p("z")}),
        )
        .await;
    assert_eq!(msg, format!("CopyFile: source {missing} does not exist"));
    assert!(!exists(&env.p("z")));

    let dir = env.mkdir("folder");
    let msg = env
        .err(
            "CopyFile",
            json!({"source": dir, "destination": env.p("z")}),
        )
        .await;
    assert_has(&msg, &[&dir, "is a folder", "CopyFolder"]);

    // the destination is an existing folder named without a trailing /
    let src = env.put("a.txt", "a");
    let msg = env
        .err("CopyFile", json!({"source": src, "destination": dir}))
        .await;
    assert_has(&msg, &[&dir, "folder"]);
    assert!(!exists(&env.p("folder/a.txt")));

    // copying a file onto itself must not truncate it
    let msg = env
        .err("CopyFile", json!({"source": src, "destination": src}))
        .await;
    assert_has(&msg, &["same"]);
    assert_eq!(read(&src), "a");
}

#[tokio::test]
async fn copy_file_wildcards() {
    let env = Env::new();
    env.put("src/a.log", "A");
    env.put("src/b.log", "B");
    env.put("src/.hidden.log", "H");
    env.put("src/c.txt", "C");
    env.mkdir("src/dir.log");
    let out = env.p("out/");
    env.ok(
        "CopyFile",
        json!({"source": env.p("src/*.log"), "destination": out}),
    )
    .await;
    assert_eq!(read(&env.p("out/a.log")), "A");
    assert_eq!(read(&env.p("out/b.log")), "B");
    assert_eq!(read(&env.p("out/.hidden.log")), "H", "* matches dot files");
    assert!(!exists(&env.p("out/c.txt")));
    assert!(!exists(&env.p("out/dir.log")), "folders are not files");

    // several matches need a destination ending in /
    let msg = env
        .err(
            "CopyFile",
            json!({"source": env.p("src/*.log"), "destination": env.p("single")}),
        )
        .await;
    assert_has(&msg, &["matches 3 files", "must end with /"]);
    assert!(!exists(&env.p("single")));

    // one match may go to an exact path
    env.ok(
        "CopyFile",
        json!({"source": env.p("src/*.txt"), "destination": env.p("exact.txt")}),
    )
    .await;
    assert_eq!(read(&env.p("exact.txt")), "C");

    // wildcards only in the last segment
    let msg = env
        .err(
            "CopyFile",
            json!({"source": env.p("s*/a.log"), "destination": out}),
        )
        .await;
    assert_has(&msg, &["last path segment"]);

    // a wildcard that matches nothing
    let msg = env
        .err(
            "CopyFile",
            json!({"source": env.p("src/*.zip"), "destination": out}),
        )
        .await;
    assert_has(&msg, &["no file matches", "*.zip"]);
}

// ---------------------------------------------------------------- CopyFolder

#[tokio::test]
async fn copy_folder_copies_the_tree() {
    let env = Env::new();
    env.put("src/top.txt", "top");
    env.put("src/sub/deep/leaf.txt", "leaf");
    fs::set_permissions(env.p("src/sub"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("sub/deep/leaf.txt", env.p("src/link")).unwrap();
    let dst = env.p("copy");
    env.ok(
        "CopyFolder",
        json!({"source": env.p("src"), "destination": dst}),
    )
    .await;
    assert_eq!(read(&env.p("copy/top.txt")), "top");
    assert_eq!(read(&env.p("copy/sub/deep/leaf.txt")), "leaf");
    assert_eq!(mode(&env.p("copy/sub")), 0o750);
    assert_eq!(
        fs::read_link(env.p("copy/link")).unwrap().to_str().unwrap(),
        "sub/deep/leaf.txt",
        "links are copied as links"
    );
    assert_eq!(read(&env.p("src/top.txt")), "top", "source kept");
}

#[tokio::test]
async fn copy_folder_into_a_folder_keeps_the_name() {
    let env = Env::new();
    env.put("src/app/a.txt", "a");
    env.ok(
        "CopyFolder",
        json!({"source": env.p("src/app"), "destination": env.p("opt/")}),
    )
    .await;
    assert_eq!(read(&env.p("opt/app/a.txt")), "a");
    assert!(!exists(&env.p("opt/a.txt")));
    // a trailing / on the source does not change its name
    env.ok(
        "CopyFolder",
        json!({"source": env.p("src/app/"), "destination": env.p("opt2/")}),
    )
    .await;
    assert_eq!(read(&env.p("opt2/app/a.txt")), "a");
}

#[tokio::test]
async fn copy_folder_overwrite_merges_or_errors() {
    let env = Env::new();
    env.put("src/same.txt", "from source");
    env.put("src/new.txt", "new");
    env.put("dst/same.txt", "old");
    env.put("dst/extra.txt", "extra");
    let (src, dst) = (env.p("src"), env.p("dst"));
    env.ok("CopyFolder", json!({"source": src, "destination": dst}))
        .await;
    assert_eq!(read(&env.p("dst/same.txt")), "from source");
    assert_eq!(read(&env.p("dst/new.txt")), "new");
    assert_eq!(
        read(&env.p("dst/extra.txt")),
        "extra",
        "merged, not replaced"
    );

    fs::write(env.p("src/same.txt"), "changed").unwrap();
    let msg = env
        .err(
            "CopyFolder",
            json!({"source": src, "destination": dst, "overwrite": false}),
        )
        .await;
    assert_has(&msg, &[&dst, "already exists"]);
    assert_eq!(read(&env.p("dst/same.txt")), "from source");
}

#[tokio::test]
async fn copy_folder_errors() {
    let env = Env::new();
    let src = env.mkdir("src");
    env.put("src/a.txt", "a");
    let msg = env
        .err(
            "CopyFolder",
            json!({"source": src, "destination": env.p("src/inner")}),
        )
        .await;
    assert_has(&msg, &["into itself"]);
    assert!(!exists(&env.p("src/inner")));

    let missing = env.p("nope");
    let msg = env
        .err(
            "CopyFolder",
            json!({"source": missing, "destination": env.p("d")}),
        )
        .await;
    assert_eq!(msg, format!("CopyFolder: source {missing} does not exist"));

    let file = env.p("src/a.txt");
    let msg = env
        .err(
            "CopyFolder",
            json!({"source": file, "destination": env.p("d")}),
        )
        .await;
    assert_has(&msg, &[&file, "not a folder", "CopyFile"]);

    let blocker = env.put("blocker", "file");
    let msg = env
        .err("CopyFolder", json!({"source": src, "destination": blocker}))
        .await;
    assert_has(&msg, &[&blocker, "not a folder"]);
}

#[tokio::test]
async fn copy_folder_wildcards_match_folders_only() {
    let env = Env::new();
    env.put("src/app1/x", "1");
    env.put("src/app2/x", "2");
    env.put("src/app3.txt", "file");
    env.put("src/other/x", "o");
    env.ok(
        "CopyFolder",
        json!({"source": env.p("src/app*"), "destination": env.p("dst/")}),
    )
    .await;
    assert_eq!(read(&env.p("dst/app1/x")), "1");
    assert_eq!(read(&env.p("dst/app2/x")), "2");
    assert!(!exists(&env.p("dst/app3.txt")));
    assert!(!exists(&env.p("dst/other")));
    let msg = env
        .err(
            "CopyFolder",
            json!({"source": env.p("src/app*"), "destination": env.p("dst2")}),
        )
        .await;
    assert_has(&msg, &["2 folders", "must end with /"]);
}

// ---------------------------------------------------------------- MoveFile

#[tokio::test]
async fn move_file_moves_and_creates_folders() {
    let env = Env::new();
    let src = env.put("a.txt", "a");
    let dst = env.p("x/y/b.txt");
    env.ok("MoveFile", json!({"source": src, "destination": dst}))
        .await;
    assert_eq!(read(&dst), "a");
    assert!(!exists(&src));

    let src = env.put("c.txt", "c");
    env.ok(
        "MoveFile",
        json!({"source": src, "destination": env.p("into/")}),
    )
    .await;
    assert_eq!(read(&env.p("into/c.txt")), "c");
    assert!(!exists(&src));
}

#[tokio::test]
async fn move_file_overwrite_rules() {
    let env = Env::new();
    let src = env.put("a.txt", "new");
    let dst = env.put("b.txt", "old");
    let msg = env
        .err(
            "MoveFile",
            json!({"source": src, "destination": dst, "overwrite": false}),
        )
        .await;
    assert_has(&msg, &[&dst, "already exists"]);
    assert_eq!((read(&src), read(&dst)), ("new".into(), "old".into()));
    env.ok("MoveFile", json!({"source": src, "destination": dst}))
        .await;
    assert_eq!(read(&dst), "new", "overwrites by default, like mv");
    assert!(!exists(&src));

    let missing = env.p("gone.txt");
    let msg = env
        .err("MoveFile", json!({"source": missing, "destination": dst}))
        .await;
    assert_eq!(msg, format!("MoveFile: source {missing} does not exist"));
    let folder = env.mkdir("f");
    let msg = env
        .err(
            "MoveFile",
            json!({"source": folder, "destination": env.p("g")}),
        )
        .await;
    assert_has(&msg, &["MoveFolder"]);
}

#[tokio::test]
async fn move_file_wildcards() {
    let env = Env::new();
    env.put("in/1.csv", "1");
    env.put("in/2.csv", "2");
    env.put("in/keep.txt", "k");
    let msg = env
        .err(
            "MoveFile",
            json!({"source": env.p("in/*.csv"), "destination": env.p("out")}),
        )
        .await;
    assert_has(&msg, &["must end with /"]);
    assert!(exists(&env.p("in/1.csv")), "nothing moved");
    env.ok(
        "MoveFile",
        json!({"source": env.p("in/*.csv"), "destination": env.p("out/")}),
    )
    .await;
    assert_eq!(read(&env.p("out/1.csv")), "1");
    assert_eq!(read(&env.p("out/2.csv")), "2");
    assert!(!exists(&env.p("in/1.csv")));
    assert!(exists(&env.p("in/keep.txt")));
}

#[tokio::test]
async fn moves_across_file_systems() {
    // /dev/shm is usually another file system than the temp folder
    let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
        return;
    };
    let env = Env::new();
    let src = env.put("a.txt", "cross");
    let dst = format!("{}/moved/a.txt", other.path().display());
    env.ok("MoveFile", json!({"source": src, "destination": dst}))
        .await;
    assert_eq!(read(&dst), "cross");
    assert!(!exists(&src));

    env.put("tree/sub/f.txt", "f");
    let dst = format!("{}/tree", other.path().display());
    env.ok(
        "MoveFolder",
        json!({"source": env.p("tree"), "destination": dst}),
    )
    .await;
    assert_eq!(read(&format!("{dst}/sub/f.txt")), "f");
    assert!(!exists(&env.p("tree")));
}

// ---------------------------------------------------------------- MoveFolder

#[tokio::test]
async fn move_folder_moves_the_tree() {
    let env = Env::new();
    env.put("src/sub/a.txt", "a");
    let dst = env.p("new/place");
    env.ok(
        "MoveFolder",
        json!({"source": env.p("src"), "destination": dst}),
    )
    .await;
    assert_eq!(read(&env.p("new/place/sub/a.txt")), "a");
    assert!(!exists(&env.p("src")));

    env.put("app/x", "x");
    env.ok(
        "MoveFolder",
        json!({"source": env.p("app"), "destination": env.p("opt/")}),
    )
    .await;
    assert_eq!(read(&env.p("opt/app/x")), "x");
    assert!(!exists(&env.p("app")));
}

#[tokio::test]
async fn move_folder_overwrite_rules() {
    let env = Env::new();
    env.put("src/same.txt", "new");
    env.put("dst/same.txt", "old");
    env.put("dst/extra.txt", "extra");
    let (src, dst) = (env.p("src"), env.p("dst"));
    let msg = env
        .err(
            "MoveFolder",
            json!({"source": src, "destination": dst, "overwrite": "false"}),
        )
        .await;
    assert_has(&msg, &[&dst, "already exists"]);
    assert!(exists(&env.p("src/same.txt")));
    assert_eq!(read(&env.p("dst/same.txt")), "old");

    env.ok("MoveFolder", json!({"source": src, "destination": dst}))
        .await;
    assert_eq!(read(&env.p("dst/same.txt")), "new");
    assert_eq!(read(&env.p("dst/extra.txt")), "extra");
    assert!(!exists(&src));

    let msg = env
        .err(
            "MoveFolder",
            json!({"source": dst, "destination": env.p("dst/in")}),
        )
        .await;
    assert_has(&msg, &["into itself"]);
    let missing = env.p("missing");
    let msg = env
        .err(
            "MoveFolder",
            json!({"source": missing, "destination": env.p("z")}),
        )
        .await;
    assert_eq!(msg, format!("MoveFolder: source {missing} does not exist"));
}

// ---------------------------------------------------------------- DeleteFile

#[tokio::test]
async fn delete_file_deletes_one_file() {
    let env = Env::new();
    let path = env.put("a.txt", "a");
    env.ok("DeleteFile", json!({"path": path})).await;
    assert!(!exists(&path));
    let msg = env.err("DeleteFile", json!({"path": path})).await;
    assert_eq!(msg, format!("DeleteFile: file {path} does not exist"));

    let dir = env.mkdir("d");
    let msg = env.err("DeleteFile", json!({"path": dir})).await;
    assert_has(&msg, &[&dir, "DeleteFolder"]);
    assert!(exists(&dir));

    // a link is deleted, not what it points to
    let target = env.put("target.txt", "t");
    let link = env.p("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    env.ok("DeleteFile", json!({"path": link})).await;
    assert!(!exists(&link));
    assert_eq!(read(&target), "t");
}

#[tokio::test]
async fn delete_file_wildcards() {
    let env = Env::new();
    env.put("logs/a.log", "");
    env.put("logs/b.log", "");
    env.put("logs/.c.log", "");
    env.put("logs/keep.txt", "");
    env.put("logs/sub.log/inner.log", "");
    env.ok("DeleteFile", json!({"path": env.p("logs/*.log")}))
        .await;
    assert!(!exists(&env.p("logs/a.log")));
    assert!(!exists(&env.p("logs/b.log")));
    assert!(!exists(&env.p("logs/.c.log")));
    assert!(exists(&env.p("logs/keep.txt")));
    assert!(
        exists(&env.p("logs/sub.log/inner.log")),
        "folders untouched"
    );

    let msg = env
        .err("DeleteFile", json!({"path": env.p("logs/*.log")}))
        .await;
    assert_has(&msg, &["no file matches"]);
    let msg = env
        .err("DeleteFile", json!({"path": env.p("l*/keep.txt")}))
        .await;
    assert_has(&msg, &["last path segment"]);
    assert!(exists(&env.p("logs/keep.txt")));
}

// ---------------------------------------------------------------- DeleteFolder

#[tokio::test]
async fn delete_folder_needs_force_when_not_empty() {
    let env = Env::new();
    let empty = env.mkdir("empty");
    env.ok("DeleteFolder", json!({"path": empty})).await;
    assert!(!exists(&empty));

    let full = env.mkdir("full");
    env.put("full/sub/f.txt", "f");
    let msg = env.err("DeleteFolder", json!({"path": full})).await;
    assert_has(&msg, &[&full, "not empty", "force"]);
    assert!(exists(&env.p("full/sub/f.txt")));
    env.err("DeleteFolder", json!({"path": full, "force": "false"}))
        .await;
    env.ok("DeleteFolder", json!({"path": full, "force": true}))
        .await;
    assert!(!exists(&full));

    let msg = env.err("DeleteFolder", json!({"path": full})).await;
    assert_eq!(msg, format!("DeleteFolder: folder {full} does not exist"));
    let file = env.put("file.txt", "x");
    let msg = env
        .err("DeleteFolder", json!({"path": file, "force": true}))
        .await;
    assert_has(&msg, &[&file, "not a folder"]);
    assert!(exists(&file));
}

// ---------------------------------------------------------------- CreateFolder

#[tokio::test]
async fn create_folder_creates_parents_with_permissions() {
    let env = Env::new();
    let path = env.p("a/b/c");
    env.ok("CreateFolder", json!({"path": path, "permissions": "0750"}))
        .await;
    assert!(Path::new(&path).is_dir());
    assert_eq!(mode(&path), 0o750);
    let other = env.p("other");
    env.ok("CreateFolder", json!({"path": other, "permissions": "700"}))
        .await;
    assert_eq!(mode(&other), 0o700);
    let plain = env.p("plain");
    env.ok("CreateFolder", json!({"path": plain})).await;
    let reference = env.mkdir("reference");
    assert_eq!(mode(&plain), mode(&reference), "umask default");
}

#[tokio::test]
async fn create_folder_existing_rules() {
    let env = Env::new();
    let dir = env.mkdir("d");
    env.put("d/content.txt", "kept");
    env.ok("CreateFolder", json!({"path": dir})).await;
    assert_eq!(read(&env.p("d/content.txt")), "kept", "contents left alone");
    let msg = env
        .err("CreateFolder", json!({"path": dir, "overwrite": false}))
        .await;
    assert_has(&msg, &[&dir, "already exists"]);
    let file = env.put("f", "x");
    let msg = env.err("CreateFolder", json!({"path": file})).await;
    assert_has(&msg, &[&file, "not a folder"]);
    assert_eq!(read(&file), "x");
}

#[tokio::test]
async fn create_folder_sets_owner_and_group() {
    let env = Env::new();
    let path = env.p("owned");
    env.ok(
        "CreateFolder",
        json!({"path": path, "owner": "nobody", "group": "nogroup"}),
    )
    .await;
    let md = fs::metadata(&path).unwrap();
    assert_eq!((md.uid(), md.gid()), (NOBODY, NOBODY));
}

// ---------------------------------------------------------------- CreateSymlink

#[tokio::test]
async fn create_symlink_links_and_creates_parents() {
    let env = Env::new();
    let target = env.put("real.txt", "real");
    let link = env.p("links/sub/l");
    env.ok("CreateSymlink", json!({"path": link, "target": target}))
        .await;
    assert_eq!(fs::read_link(&link).unwrap().to_str().unwrap(), target);
    assert_eq!(read(&link), "real");
    // a link to a folder
    let dir = env.mkdir("dir");
    let dlink = env.p("dlink");
    env.ok("CreateSymlink", json!({"path": dlink, "target": dir}))
        .await;
    assert!(Path::new(&dlink).is_dir());
}

#[tokio::test]
async fn create_symlink_needs_an_existing_target() {
    let env = Env::new();
    let missing = env.p("missing.txt");
    let link = env.p("l");
    let msg = env
        .err("CreateSymlink", json!({"path": link, "target": missing}))
        .await;
    assert_has(&msg, &[&missing, "does not exist"]);
    assert!(!exists(&link));
}

#[tokio::test]
async fn create_symlink_force_replaces_only_links() {
    let env = Env::new();
    let (a, b) = (env.put("a", "a"), env.put("b", "b"));
    let link = env.p("l");
    env.ok("CreateSymlink", json!({"path": link, "target": a}))
        .await;
    let msg = env
        .err("CreateSymlink", json!({"path": link, "target": b}))
        .await;
    assert_has(&msg, &[&link, "already exists", "force"]);
    assert_eq!(fs::read_link(&link).unwrap().to_str().unwrap(), a);
    env.ok(
        "CreateSymlink",
        json!({"path": link, "target": b, "force": "true"}),
    )
    .await;
    assert_eq!(fs::read_link(&link).unwrap().to_str().unwrap(), b);

    let file = env.put("regular", "keep me");
    let msg = env
        .err(
            "CreateSymlink",
            json!({"path": file, "target": a, "force": true}),
        )
        .await;
    assert_has(&msg, &[&file, "not a symlink"]);
    assert_eq!(read(&file), "keep me");
    assert!(!fs::symlink_metadata(&file)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[tokio::test]
async fn create_symlink_relative_target_is_relative_to_the_link() {
    let env = Env::new();
    env.put("real.txt", "real");
    let link = env.p("sub/link");
    env.ok(
        "CreateSymlink",
        json!({"path": link, "target": "../real.txt"}),
    )
    .await;
    assert_eq!(
        fs::read_link(&link).unwrap().to_str().unwrap(),
        "../real.txt",
        "stored as written"
    );
    assert_eq!(read(&link), "real");
    // relative to the link's folder, not to the working folder
    let msg = env
        .err(
            "CreateSymlink",
            json!({"path": env.p("l2"), "target": "../real.txt"}),
        )
        .await;
    assert_has(&msg, &["../real.txt", "does not exist"]);
}

#[tokio::test]
async fn create_symlink_relative_path_is_made_absolute() {
    let env = Env::new();
    let target = env.put("t.txt", "t");
    // a path relative to the working folder that lands in the temp folder
    let cwd = std::env::current_dir().unwrap();
    let ups = "../".repeat(cwd.components().count() - 1);
    let rel = format!("{ups}{}", env.p("rel/link").trim_start_matches('/'));
    env.ok("CreateSymlink", json!({"path": rel, "target": target}))
        .await;
    assert_eq!(read(&env.p("rel/link")), "t");
    let msg = env
        .err("CreateSymlink", json!({"path": rel, "target": target}))
        .await;
    // the error names the absolute path
    assert_has(&msg, &[&format!("CreateSymlink: {}", env.p("rel/link"))]);
}

// ---------------------------------------------------------------- ListFiles

#[tokio::test]
async fn list_files_lists_files_comma_joined() {
    let env = Env::new();
    env.put("d/b.txt", "");
    env.put("d/a.log", "");
    env.put("d/.dot", "");
    env.put("d/sub/deep.txt", "");
    let dir = env.p("d");
    let out = env.ok("ListFiles", json!({"path": dir})).await;
    assert_eq!(
        out.outputs["files"],
        format!("{dir}/.dot,{dir}/a.log,{dir}/b.txt"),
        "files only, not folders, not recursive"
    );
    let out = env
        .ok(
            "ListFiles",
            json!({"path": format!("{dir}/"), "recursive": true}),
        )
        .await;
    assert_eq!(
        out.outputs["files"],
        format!("{dir}/.dot,{dir}/a.log,{dir}/b.txt,{dir}/sub/deep.txt")
    );
}

#[tokio::test]
async fn list_files_pattern_and_errors() {
    let env = Env::new();
    env.put("d/a.txt", "");
    env.put("d/a.log", "");
    env.put("d/sub/b.txt", "");
    env.put("d/sub/more/c.txt", "");
    let dir = env.p("d");
    let out = env
        .ok(
            "ListFiles",
            json!({"path": dir, "fileNamePattern": "*.txt"}),
        )
        .await;
    assert_eq!(out.outputs["files"], format!("{dir}/a.txt"));
    let out = env
        .ok(
            "ListFiles",
            json!({"path": dir, "fileNamePattern": "*.txt", "recursive": "true"}),
        )
        .await;
    assert_eq!(
        out.outputs["files"],
        format!("{dir}/a.txt,{dir}/sub/b.txt,{dir}/sub/more/c.txt")
    );
    let out = env
        .ok(
            "ListFiles",
            json!({"path": dir, "fileNamePattern": "*.zip"}),
        )
        .await;
    assert_eq!(out.outputs["files"], "");
    let empty = env.mkdir("empty");
    let out = env.ok("ListFiles", json!({"path": empty})).await;
    assert_eq!(out.outputs["files"], "");

    let missing = env.p("missing");
    let msg = env.err("ListFiles", json!({"path": missing})).await;
    assert_eq!(msg, format!("ListFiles: folder {missing} does not exist"));
    let file = env.p("d/a.txt");
    let msg = env.err("ListFiles", json!({"path": file})).await;
    assert_has(&msg, &[&file, "not a folder"]);
}

// ---------------------------------------------------------------- ReadFile

#[tokio::test]
async fn read_file_outputs_content() {
    let env = Env::new();
    let path = env.put("r.txt", "line 1\nline 2\n");
    let out = env.ok("ReadFile", json!({"path": path})).await;
    assert_eq!(out.outputs["content"], "line 1\nline 2\n");
    // follows symlinks
    let link = env.p("link");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let out = env.ok("ReadFile", json!({"path": link})).await;
    assert_eq!(out.outputs["content"], "line 1\nline 2\n");
}

#[tokio::test]
async fn read_file_decodes_encodings() {
    let env = Env::new();
    let p = env.p("u16le");
    fs::write(&p, [0x41, 0, 0xe9, 0]).unwrap();
    let out = env
        .ok("ReadFile", json!({"path": p, "encoding": "utf16"}))
        .await;
    assert_eq!(out.outputs["content"], "Aé");
    let p = env.p("u16be");
    fs::write(&p, [0xfe, 0xff, 0, 0x41]).unwrap();
    let out = env
        .ok("ReadFile", json!({"path": p, "encoding": "UTF-16-BE"}))
        .await;
    assert_eq!(out.outputs["content"], "A", "BOM dropped");
    let p = env.p("u32be");
    fs::write(&p, [0, 1, 0xf6, 0]).unwrap();
    let out = env
        .ok("ReadFile", json!({"path": p, "encoding": "utf32-BE"}))
        .await;
    assert_eq!(out.outputs["content"], "😀");
}

#[tokio::test]
async fn read_file_errors() {
    let env = Env::new();
    let missing = env.p("missing");
    let msg = env.err("ReadFile", json!({"path": missing})).await;
    assert_eq!(msg, format!("ReadFile: file {missing} does not exist"));
    let dir = env.mkdir("d");
    let msg = env.err("ReadFile", json!({"path": dir})).await;
    assert_has(&msg, &[&dir, "folder"]);
    let bin = env.p("bin");
    fs::write(&bin, b"ok\xff\xfe").unwrap();
    let msg = env.err("ReadFile", json!({"path": bin})).await;
    assert_has(&msg, &[&bin, "UTF-8"]);
    let odd = env.p("odd");
    fs::write(&odd, b"abc").unwrap();
    let msg = env
        .err("ReadFile", json!({"path": odd, "encoding": "utf16"}))
        .await;
    assert_has(&msg, &[&odd, "UTF-16"]);
}

#[tokio::test]
async fn read_file_prints_content_when_asked() {
    let env = Env::new();
    let path = env.put("p.txt", "printed text");
    let log = env.p("console.log");
    let console_for = || {
        Console::new(
            Some(fs::File::create(&log).unwrap()),
            false,
            Redactor::default(),
        )
    };

    let console = console_for();
    env.run_with("ReadFile", json!({"path": path}), &console, false)
        .await
        .unwrap();
    drop(console);
    assert!(
        !read(&log).contains("printed text"),
        "not printed by default"
    );

    let console = console_for();
    let out = env
        .run_with(
            "ReadFile",
            json!({"path": path, "printFileContent": true}),
            &console,
            false,
        )
        .await
        .unwrap();
    drop(console);
    assert_eq!(out.outputs["content"], "printed text");
    assert!(read(&log).contains("printed text\n"), "{}", read(&log));

    let console = console_for();
    env.run_with(
        "ReadFile",
        json!({"path": path, "printFileContent": "true"}),
        &console,
        true,
    )
    .await
    .unwrap();
    drop(console);
    assert!(
        !read(&log).contains("printed text"),
        "quiet steps print nothing"
    );
}

// ---------------------------------------------------------------- SetFileEncoding

#[tokio::test]
async fn set_file_encoding_converts_utf8() {
    let env = Env::new();
    let path = env.put("e.txt", "Aé");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    env.ok(
        "SetFileEncoding",
        json!({"path": path, "encoding": "utf16"}),
    )
    .await;
    assert_eq!(fs::read(&path).unwrap(), [0x41, 0, 0xe9, 0]);
    assert_eq!(mode(&path), 0o640, "mode kept");

    let path = env.put("e2.txt", "Aé");
    env.ok(
        "SetFileEncoding",
        json!({"path": path, "encoding": "utf-32-BE"}),
    )
    .await;
    assert_eq!(fs::read(&path).unwrap(), [0, 0, 0, 0x41, 0, 0, 0, 0xe9]);

    let path = env.put("e3.txt", "\u{feff}bom");
    env.ok("SetFileEncoding", json!({"path": path})).await;
    assert_eq!(
        fs::read(&path).unwrap(),
        b"bom",
        "utf8 default drops the BOM"
    );
}

#[tokio::test]
async fn set_file_encoding_errors() {
    let env = Env::new();
    let bad = env.p("bad");
    fs::write(&bad, b"\xff\xfeA\x00").unwrap();
    let msg = env
        .err("SetFileEncoding", json!({"path": bad, "encoding": "utf16"}))
        .await;
    assert_has(&msg, &[&bad, "UTF-8"]);
    assert_eq!(fs::read(&bad).unwrap(), b"\xff\xfeA\x00", "untouched");
    let missing = env.p("missing");
    let msg = env.err("SetFileEncoding", json!({"path": missing})).await;
    assert_has(&msg, &[&missing, "does not exist"]);
}

// ---------------------------------------------------------------- owners

#[tokio::test]
async fn set_file_owner_by_name_and_number() {
    let env = Env::new();
    let a = env.put("a", "");
    env.ok("SetFileOwner", json!({"path": a, "owner": "nobody"}))
        .await;
    let md = fs::metadata(&a).unwrap();
    // the group defaults to the user's group (nobody's is 65534)
    assert_eq!((md.uid(), md.gid()), (NOBODY, NOBODY));

    let b = env.put("b", "");
    env.ok(
        "SetFileOwner",
        json!({"path": b, "owner": "65534", "group": "0"}),
    )
    .await;
    let md = fs::metadata(&b).unwrap();
    assert_eq!((md.uid(), md.gid()), (NOBODY, 0));

    // a numeric owner with its login group, and one with no passwd entry
    let c = env.put("c", "");
    env.ok("SetFileOwner", json!({"path": c, "owner": "65534"}))
        .await;
    let md = fs::metadata(&c).unwrap();
    assert_eq!((md.uid(), md.gid()), (NOBODY, NOBODY));
    let d = env.put("d", "");
    env.ok("SetFileOwner", json!({"path": d, "owner": "54321"}))
        .await;
    let md = fs::metadata(&d).unwrap();
    assert_eq!((md.uid(), md.gid()), (54321, 0), "group kept");
}

#[tokio::test]
async fn set_file_owner_follows_links_and_errors() {
    let env = Env::new();
    let file = env.put("f", "");
    let link = env.p("l");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    env.ok("SetFileOwner", json!({"path": link, "owner": "nobody"}))
        .await;
    assert_eq!(fs::metadata(&file).unwrap().uid(), NOBODY);
    assert_eq!(
        fs::symlink_metadata(&link).unwrap().uid(),
        0,
        "link itself kept"
    );

    let missing = env.p("missing");
    let msg = env
        .err("SetFileOwner", json!({"path": missing, "owner": "nobody"}))
        .await;
    assert_has(&msg, &[&missing, "does not exist"]);
    let dir = env.mkdir("d");
    let msg = env
        .err("SetFileOwner", json!({"path": dir, "owner": "nobody"}))
        .await;
    assert_has(&msg, &[&dir, "SetFolderOwner"]);
    assert_eq!(fs::metadata(&dir).unwrap().uid(), 0);
    let other = env.put("o", "");
    let msg = env
        .err(
            "SetFileOwner",
            json!({"path": other, "owner": "no-such-user-kiln"}),
        )
        .await;
    assert_has(&msg, &[&other]);
    assert_eq!(fs::metadata(&other).unwrap().uid(), 0);
}

#[tokio::test]
async fn set_folder_owner_is_recursive_by_default() {
    let env = Env::new();
    let dir = env.mkdir("d");
    let inner = env.put("d/sub/f", "");
    env.ok(
        "SetFolderOwner",
        json!({"path": dir, "owner": "nobody", "group": "nogroup"}),
    )
    .await;
    assert_eq!(fs::metadata(&dir).unwrap().uid(), NOBODY);
    let md = fs::metadata(&inner).unwrap();
    assert_eq!((md.uid(), md.gid()), (NOBODY, NOBODY));

    let dir2 = env.mkdir("d2");
    let inner2 = env.put("d2/f", "");
    env.ok(
        "SetFolderOwner",
        json!({"path": dir2, "owner": "65534", "recursive": "false"}),
    )
    .await;
    assert_eq!(fs::metadata(&dir2).unwrap().uid(), NOBODY);
    assert_eq!(fs::metadata(&inner2).unwrap().uid(), 0, "not recursive");

    let file = env.put("file", "");
    let msg = env
        .err("SetFolderOwner", json!({"path": file, "owner": "nobody"}))
        .await;
    assert_has(&msg, &[&file, "not a folder", "SetFileOwner"]);
}

// ---------------------------------------------------------------- permissions

#[tokio::test]
async fn set_file_permissions_octal_strings() {
    let env = Env::new();
    let f = env.put("f", "");
    env.ok(
        "SetFilePermissions",
        json!({"path": f, "permissions": "0600"}),
    )
    .await;
    assert_eq!(mode(&f), 0o600);
    env.ok(
        "SetFilePermissions",
        json!({"path": f, "permissions": "755"}),
    )
    .await;
    assert_eq!(mode(&f), 0o755);
    env.ok(
        "SetFilePermissions",
        json!({"path": f, "permissions": "4711"}),
    )
    .await;
    assert_eq!(mode(&f), 0o4711);
    // follows links
    let link = env.p("l");
    std::os::unix::fs::symlink(&f, &link).unwrap();
    env.ok(
        "SetFilePermissions",
        json!({"path": link, "permissions": "0640"}),
    )
    .await;
    assert_eq!(mode(&f), 0o640);

    let msg = env
        .err(
            "SetFilePermissions",
            json!({"path": f, "permissions": "u+x"}),
        )
        .await;
    assert_has(&msg, &["u+x", "octal"]);
    let msg = env
        .err(
            "SetFilePermissions",
            json!({"path": f, "permissions": "0999"}),
        )
        .await;
    assert_has(&msg, &["0999"]);
    assert_eq!(mode(&f), 0o640);
    let missing = env.p("missing");
    let msg = env
        .err(
            "SetFilePermissions",
            json!({"path": missing, "permissions": "0644"}),
        )
        .await;
    assert_has(&msg, &[&missing, "does not exist"]);
    let dir = env.mkdir("d");
    let msg = env
        .err(
            "SetFilePermissions",
            json!({"path": dir, "permissions": "0700"}),
        )
        .await;
    assert_has(&msg, &[&dir, "SetFolderPermissions"]);
}

#[tokio::test]
async fn set_folder_permissions_recursive_by_default() {
    let env = Env::new();
    let dir = env.mkdir("d");
    let f = env.put("d/f", "");
    let sub = env.mkdir("d/sub");
    let g = env.put("d/sub/g", "");
    let outside = env.put("outside", "");
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&outside, env.p("d/link")).unwrap();
    env.ok(
        "SetFolderPermissions",
        json!({"path": dir, "permissions": "0750"}),
    )
    .await;
    for p in [&dir, &f, &sub, &g] {
        assert_eq!(mode(p), 0o750, "{p}");
    }
    assert_eq!(mode(&outside), 0o600, "links are not followed");

    env.ok(
        "SetFolderPermissions",
        json!({"path": dir, "permissions": "700", "recursive": false}),
    )
    .await;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&f), 0o750, "not recursive");
    assert_eq!(mode(&sub), 0o750);

    let msg = env
        .err(
            "SetFolderPermissions",
            json!({"path": f, "permissions": "0700"}),
        )
        .await;
    assert_has(&msg, &[&f, "not a folder"]);
    let msg = env
        .err(
            "SetFolderPermissions",
            json!({"path": dir, "permissions": "8"}),
        )
        .await;
    assert_has(&msg, &["octal"]);
}
