//! Hostile files given to kiln's commands: YAML alias bombs and deep
//! nesting, devices, FIFOs, folders and oversized files where a document is
//! expected, path-like execution ids, pipelines whose recipe is missing or
//! is the pipeline itself, and names with terminal escape sequences. Each
//! must end in exit code 2 with a located message, quickly, with nothing
//! written and no raw control character printed. And an S3 peer whose
//! listing holds keys outside the listed prefix.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The classic "billion laughs" (under 500 bytes): nine levels of nine
/// aliases of the level before, 9^9 scalars once expanded.
fn alias_bomb() -> String {
    let mut t = String::from("a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        let refs = vec![format!("*{prev}"); 9].join(",");
        t.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    t
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs kiln (killed after 60 s: a hang fails the test instead of blocking it).
fn kiln(args: &[&str]) -> Out {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "kiln {args:?} still ran after 60 s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// The three commands that read a YAML file named by the user.
fn validators(file: &str) -> [Vec<String>; 3] {
    [
        vec!["validate".into(), file.into()],
        vec!["pipeline".into(), "validate".into(), file.into()],
        vec![
            "toe".into(),
            "validate".into(),
            "--documents".into(),
            file.into(),
        ],
    ]
}

fn run(args: &[String]) -> Out {
    kiln(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[test]
fn an_alias_bomb_is_refused_at_the_alias_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = alias_bomb();
    assert!(bomb.len() < 500);
    let file = dir.path().join("bomb.yml");
    std::fs::write(&file, &bomb).unwrap();
    let f = file.to_str().unwrap();
    for args in validators(f) {
        let out = run(&args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        // line 6 (`f: &f [*e,…`) is where the copies pass 100 000 nodes
        assert!(
            out.stderr
                .contains(&format!("{f}:6:8: error[yaml-limit]: this alias")),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("alias bomb"), "{}", out.stderr);
        assert!(
            out.took < Duration::from_secs(10),
            "{args:?}: {:?}",
            out.took
        );
    }
}

#[test]
fn deep_nesting_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("block.yml", "- ".repeat(200_000) + "x\n"),
        ("flow.yml", "[".repeat(200) + &"]".repeat(200)),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        for args in validators(file.to_str().unwrap()) {
            let out = run(&args);
            assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
            assert!(
                out.stderr.contains("nested more than 128 levels deep"),
                "{args:?}: {}",
                out.stderr
            );
        }
    }
}

#[test]
fn devices_fifos_folders_and_huge_files_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yml");
    mkfifo(&fifo);
    let huge = dir.path().join("huge.yml");
    // sparse: 16 MiB and one byte, nothing of it read
    std::fs::File::create(&huge)
        .unwrap()
        .set_len((16 << 20) + 1)
        .unwrap();
    let folder = dir.path().join("folder.yml");
    std::fs::create_dir(&folder).unwrap();
    let cases: [(PathBuf, &str); 4] = [
        (
            "/dev/zero".into(),
            "it is a character device, not a regular file",
        ),
        (fifo, "it is a named pipe (FIFO), not a regular file"),
        (folder, "it is a folder, not a regular file"),
        (
            huge,
            "it is larger than 16 MiB, the most kiln reads of such a file",
        ),
    ];
    for (path, why) in &cases {
        let p = path.to_str().unwrap();
        for args in validators(p) {
            let out = run(&args);
            assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
            assert!(
                out.stderr.contains(&format!("{p}: {why}")),
                "{args:?}: {}",
                out.stderr
            );
            assert!(
                out.took < Duration::from_secs(10),
                "{args:?}: {:?}",
                out.took
            );
        }
    }
}

#[test]
fn an_execution_id_that_is_a_path_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("a/b/logs");
    std::fs::create_dir_all(&logs).unwrap();
    let doc = dir.path().join("doc.yml");
    std::fs::write(
        &doc,
        "name: d\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: S\n        action: ExecuteBash\n        inputs:\n          commands: [\"echo hi\"]\n",
    )
    .unwrap();
    for id in ["../../x", "/tmp/x", "..", "a/b", "", "x\u{1b}[2J"] {
        let out = kiln(&[
            "toe",
            "run",
            "-d",
            doc.to_str().unwrap(),
            "--execution-id",
            id,
            "--log-directory",
            logs.to_str().unwrap(),
        ]);
        assert_eq!(out.code, 2, "{id:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("is not a plain name"),
            "{id:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains('\u{1b}'), "{:?}", out.stderr);
    }
    let found: Vec<_> = walk(dir.path());
    assert_eq!(
        found,
        [
            dir.path().join("a"),
            dir.path().join("a/b"),
            dir.path().join("a/b/logs"),
            dir.path().join("doc.yml"),
        ],
        "something was written"
    );
    // a plain id still runs
    let out = kiln(&[
        "toe",
        "run",
        "-d",
        doc.to_str().unwrap(),
        "--execution-id",
        "run-1.ok_2",
        "--log-directory",
        logs.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(std::fs::read_dir(&logs).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with("_run-1.ok_2")));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if p.is_dir() {
            out.extend(walk(&p));
        }
    }
    out.sort();
    out
}

#[test]
fn pipeline_validate_checks_the_recipe_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yml");
    let f = p.to_str().unwrap();
    std::fs::write(&p, "name: nightly\nrecipe: ./missing.yml\n").unwrap();
    let out = kiln(&["pipeline", "validate", f]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("{f}:2:9: error[recipe]: cannot read recipe ")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("missing.yml: No such file or directory"),
        "{}",
        out.stderr
    );
    let out = kiln(&["pipeline", "validate", "--json", f]);
    assert_eq!(out.code, 2);
    let diags: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(diags[0]["code"], "recipe", "{diags}");

    std::fs::write(&p, "name: nightly\nrecipe: ./p.yml\n").unwrap();
    let out = kiln(&["pipeline", "validate", f]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "{f}:2:9: error[recipe]: `recipe` names this pipeline file itself"
        )),
        "{}",
        out.stderr
    );
    // through a symlink too
    std::os::unix::fs::symlink(&p, dir.path().join("link.yml")).unwrap();
    std::fs::write(&p, "name: nightly\nrecipe: link.yml\n").unwrap();
    let out = kiln(&["pipeline", "validate", f]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("names this pipeline file itself"),
        "{}",
        out.stderr
    );

    // an invalid recipe file: its own problems, located in it
    let r = dir.path().join("r.yml");
    std::fs::write(&r, "name: web\nsemanticVersion: 1.0.0\nbogus: 1\n").unwrap();
    std::fs::write(&p, "name: nightly\nrecipe: ./r.yml\n").unwrap();
    let out = kiln(&["pipeline", "validate", f]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("r.yml:3:1: error[unknown-key]"),
        "{}",
        out.stderr
    );
    std::fs::write(
        &r,
        "name: web\nsemanticVersion: 1.0.0\nparentImage: kiln:debian/1.x.x\ncomponents:\n  - component: update-linux\n",
    )
    .unwrap();
    let out = kiln(&["pipeline", "validate", f]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn control_characters_in_names_are_printed_escaped() {
    let dir = tempfile::tempdir().unwrap();
    // a file name with an escape sequence (missing: its name is echoed)
    let missing = dir.path().join("r\u{1b}]0;owned\u{7}.yml");
    let out = kiln(&["validate", missing.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("r\\e]0;owned\\x07.yml"),
        "{}",
        out.stderr
    );
    // names inside a document: an unknown key and a value with escapes
    let doc = dir.path().join("d\u{1b}[31m.yml");
    std::fs::write(
        &doc,
        "name: d\nschemaVersion: 1.0\n\"bad\\e[2Jkey\": 1\nphases:\n  - name: \"b\\rx\"\n    steps: []\n",
    )
    .unwrap();
    let d = doc.to_str().unwrap();
    for args in [
        vec!["toe", "validate", "-d", d],
        vec!["validate", d],
        vec!["pipeline", "validate", d],
    ] {
        let out = kiln(&args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        for text in [&out.stdout, &out.stderr] {
            assert!(
                !text.chars().any(|c| c.is_control() && c != '\n'),
                "{args:?} printed a raw control character: {text:?}"
            );
        }
        assert!(
            out.stderr.contains("d\\e[31m.yml:"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let out = kiln(&["toe", "validate", "-d", d]);
    assert!(out.stderr.contains("`bad\\e[2Jkey`"), "{}", out.stderr);
}

#[test]
fn an_ova_name_with_control_characters_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.raw");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    for format in ["ova", "ovf"] {
        let output = out_dir.join(format!("vm.{format}"));
        let out = kiln(&[
            "export",
            disk.to_str().unwrap(),
            "--format",
            format,
            "--output",
            output.to_str().unwrap(),
            "--name",
            "web\u{1b}[2J\rx",
        ]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(
            out.stderr.contains("holds control characters"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains('\u{1b}') && !out.stderr.contains('\r'));
        // the default name (the output's base name) is checked too
        let bad = out_dir.join(format!("vm\u{7}.{format}"));
        let out = kiln(&[
            "export",
            disk.to_str().unwrap(),
            "--format",
            format,
            "--output",
            bad.to_str().unwrap(),
        ]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(
            out.stderr.contains("holds control characters"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        0,
        "files were written"
    );
}

/// Runs kiln with `args` in `cwd`; returns its exit code and its peak
/// resident set size in KiB (from wait4(2) of that very child).
// the child is reaped by wait4, which also gives its resource usage
#[allow(clippy::zombie_processes)]
fn kiln_peak_rss(cwd: &Path, args: &[&str]) -> (i32, i64) {
    let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on the pid of a child this process started and never waited for.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}

/// A step printing 100 MB: everything reaches console.log, kiln keeps only
/// the last 1 MiB of whole lines (the step's `stdout` output) and stays small; a failing
/// step's message quotes the last lines of a 20 MB stderr.
#[test]
fn a_step_printing_100_mb_streams_it_and_keeps_a_bounded_tail() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("big.yml"),
        "name: big\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Print\n        action: ExecuteBash\n        inputs:\n          commands:\n            - yes xxxxxxxxx | head -c 100000000\n            - echo THE-END\n      - name: Fail\n        action: ExecuteBash\n        inputs:\n          commands:\n            - head -c 20000000 /dev/zero | tr '\\0' y >&2\n            - echo >&2; echo last-words >&2; exit 3\n",
    )
    .unwrap();
    let (code, peak_kib) =
        kiln_peak_rss(dir.path(), &["toe", "run", "-d", "big.yml", "-l", "logs"]);
    assert_eq!(code, 1, "the second step fails");
    // it was 607 MiB for a 200 MB step before the output was kept as a tail
    assert!(peak_kib < 80 * 1024, "peak RSS {peak_kib} KiB");
    let folder = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("TOE_"))
        .unwrap();
    let console = std::fs::metadata(folder.join("console.log")).unwrap().len();
    assert!(console > 120_000_000, "console.log has {console} bytes");
    let detailed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("detailedoutput.json")).unwrap())
            .unwrap();
    let steps = &detailed["documents"][0]["phases"][0]["steps"];
    let outputs: serde_json::Value =
        serde_json::from_str(steps[0]["outputs"].as_str().unwrap()).unwrap();
    let stdout = outputs[0]["stdout"].as_str().unwrap();
    // the last 1 MiB, from its first whole line (a cut line could start
    // with the end of a secret, which redaction cannot recognise), its last
    // newline trimmed
    assert!(
        stdout.len() < (1 << 20) && stdout.len() > (1 << 20) - 12,
        "the tail has {} bytes",
        stdout.len()
    );
    assert!(stdout.starts_with("xxxxxxxxx\n"), "{}", &stdout[..20]);
    assert!(
        stdout.ends_with("xxxxxxxxx\nTHE-END"),
        "{}",
        &stdout[stdout.len() - 20..]
    );
    let failure = steps[1]["failureMessage"].as_str().unwrap();
    assert!(
        failure.contains("last-words"),
        "{}",
        &failure[..failure.len().min(300)]
    );
    assert!(failure.len() < 2000, "{} bytes", failure.len());
}

/// A ListObjectsV2 answer with these keys.
fn listing(keys: &[&str], next: Option<&str>) -> Vec<u8> {
    let contents: String = keys
        .iter()
        .map(|k| format!("<Contents><Key>{k}</Key><Size>1</Size></Contents>"))
        .collect();
    let more = match next {
        Some(t) => format!(
            "<IsTruncated>true</IsTruncated><NextContinuationToken>{t}</NextContinuationToken>"
        ),
        None => "<IsTruncated>false</IsTruncated>".into(),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name><Prefix>a/</Prefix><KeyCount>{}</KeyCount><MaxKeys>1000</MaxKeys>{more}{contents}</ListBucketResult>",
        keys.len()
    )
    .into_bytes()
}

/// S3Download of a prefix from a peer (a real loopback HTTP server, since
/// moto never answers this) whose listing holds keys outside the prefix,
/// cut inside a UTF-8 character, or never ends: each is a step error
/// naming the key, never a panic, and nothing is written.
#[tokio::test]
async fn an_s3_listing_with_hostile_keys_is_an_error_naming_the_key() {
    use kiln::target::local::LocalTarget;
    use kiln::toe::actions::transfer::Clients;
    use kiln::toe::actions::{self, ActionContext, Inputs};
    use kiln::toe::console::Console;
    use support::http::{HttpServer, Reply};

    support::moto::set_dummy_aws_env();
    let server = HttpServer::start(Vec::<(String, Reply)>::new()).await;
    let clients = Clients::with_s3_endpoint(server.base());
    let dest = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let console = Console::discard();
    let download = |source: &'static str| {
        let inputs = Inputs(
            serde_json::json!({"source": source, "destination": dest.path().to_str().unwrap()})
                .as_object()
                .unwrap()
                .clone(),
        );
        let ctx = ActionContext {
            target: &LocalTarget,
            console: &console,
            scratch_dir: scratch.path().to_str().unwrap(),
            quiet: false,
            env: &[],
            clients: &clients,
        };
        async move {
            match actions::run("S3Download", &[inputs], &ctx).await {
                Ok(o) => panic!("S3Download of {source} succeeded: {:?}", o.outputs),
                Err(e) => e.to_string(),
            }
        }
    };
    for (keys, source, shown) in [
        (vec!["a/ok.txt", "other/x"], "s3://b/a/*", "`other/x`"),
        (vec!["a"], "s3://b/a/*", "`a`"),
        // the prefix `a/` is 2 bytes; byte 2 of `aé` is inside the `é`
        (vec!["a\u{e9}"], "s3://b/a/*", "`a\u{e9}`"),
        (vec!["a/x\u{1b}[2J"], "s3://b/a/*", "never"),
    ] {
        server.route("/b/", Reply::Body(listing(&keys, None)));
        let e = download(source).await;
        if shown == "never" {
            // under the prefix, but a name with an escape: shown escaped
            // when it fails later (here: no such object on this peer)
            assert!(!e.contains('\u{1b}'), "{e}");
            continue;
        }
        assert!(
            e.contains(&format!(
                "returned object key {shown}, which is not under that prefix"
            )),
            "{e}"
        );
    }
    // a listing that never ends
    server.route("/b/", Reply::Body(listing(&["a/x"], Some("again"))));
    let started = Instant::now();
    let e = download("s3://b/a/*").await;
    assert!(e.contains("repeats a continuation token"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        std::fs::read_dir(dest.path()).unwrap().count(),
        0,
        "something was written"
    );
}
