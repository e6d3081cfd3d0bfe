//! End-to-end runs of `kiln toe run` on this host: real documents, real
//! processes, real log folders. Each test checks statuses, outputs and the
//! files the steps left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod support;

struct Run {
    out: Output,
    dir: tempfile::TempDir,
}

impl Run {
    fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    fn summary(&self) -> Value {
        serde_json::from_slice(&self.out.stdout).unwrap_or_else(|e| {
            panic!(
                "summary is not JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&self.out.stdout),
                self.stderr()
            )
        })
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn log_folder(&self) -> PathBuf {
        let logs = self.dir.path().join("logs");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("TOE_"))
            .collect();
        assert_eq!(found.len(), 1, "one TOE_ folder in {}", logs.display());
        found.remove(0)
    }
    fn detailed(&self) -> Value {
        serde_json::from_slice(
            &std::fs::read(self.log_folder().join("detailedoutput.json")).unwrap(),
        )
        .unwrap()
    }
    /// (phase, step) -> step object, across documents.
    fn step(&self, doc: usize, phase: &str, step: &str) -> Value {
        let d = self.detailed();
        let phases = d["documents"][doc]["phases"].as_array().unwrap().clone();
        for p in phases.iter().filter(|p| p["name"] == phase) {
            for s in p["steps"].as_array().unwrap() {
                if s["name"] == step {
                    return s.clone();
                }
            }
        }
        panic!("no step {phase}.{step} in document {doc}: {d:#}");
    }
    fn output(&self, doc: usize, phase: &str, step: &str, key: &str) -> String {
        let outputs: Value =
            serde_json::from_str(self.step(doc, phase, step)["outputs"].as_str().unwrap()).unwrap();
        outputs[0][key]
            .as_str()
            .unwrap_or_else(|| panic!("no output {key} in {outputs}"))
            .to_string()
    }
}

fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run kiln")
}

/// Writes `docs` (name, text) into a fresh folder and runs them.
fn run_docs(docs: &[(&str, &str)], extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir, docs, extra)
}

fn run_in(dir: tempfile::TempDir, docs: &[(&str, &str)], extra: &[&str]) -> Run {
    let mut names = Vec::new();
    for (name, text) in docs {
        let text = text.replace("@DIR@", &dir.path().display().to_string());
        std::fs::write(dir.path().join(name), text).unwrap();
        names.push(name.to_string());
    }
    let list = names.join(",");
    let mut args = vec![
        "toe",
        "run",
        "--documents",
        &list,
        "--log-directory",
        "logs",
    ];
    args.extend_from_slice(extra);
    let out = kiln(dir.path(), &args);
    Run { out, dir }
}

#[test]
fn statuses_roll_up_like_awstoe() {
    let r = run_docs(
        &[(
            "d.yml",
            r#"
name: statuses
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Hello
        action: ExecuteBash
        inputs:
          commands:
            - echo hello
      - name: NoImplicitSetE
        action: ExecuteBash
        inputs:
          commands:
            - "false"
            - echo still-ran
      - name: Ignored
        action: ExecuteBash
        onFailure: Ignore
        inputs:
          commands:
            - exit 3
      - name: SkippedByIf
        action: ExecuteBash
        if:
          stringEquals: 'no'
          value: '{{ build.Hello.outputs.stdout }}'
        inputs:
          commands:
            - exit 9
"#,
        )],
        &[],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let s = r.summary();
    assert_eq!(s["status"], "successwithignoredfailure");
    assert_eq!(s["executedStepCount"], 3);
    assert_eq!(s["ignoredFailedStepCount"], 1);
    assert_eq!(s["failedStepCount"], 0);
    assert_eq!(r.output(0, "build", "Hello", "stdout"), "hello");
    assert_eq!(
        r.output(0, "build", "NoImplicitSetE", "stdout"),
        "still-ran"
    );
    assert_eq!(r.step(0, "build", "Ignored")["status"], "ignoredfailure");
    assert!(r.step(0, "build", "Ignored")["failureMessage"]
        .as_str()
        .unwrap()
        .contains("status 3"));
    assert_eq!(r.step(0, "build", "SkippedByIf")["status"], "skipped");
    let d = r.detailed();
    assert_eq!(
        d["documents"][0]["phases"][0]["status"],
        "successwithignoredfailure"
    );
    // awstoe's log layout
    let folder = r.log_folder();
    for f in [
        "console.log",
        "detailedoutput.json",
        "chaining.json",
        "document.yaml",
    ] {
        assert!(
            folder.join(f).is_file(),
            "{f} missing in {}",
            folder.display()
        );
    }
    let console = std::fs::read_to_string(folder.join("console.log")).unwrap();
    assert!(
        console.contains("hello\n") && console.contains("still-ran"),
        "{console}"
    );
    assert_eq!(
        s["logUrl"].as_str().unwrap(),
        folder
            .strip_prefix(r.dir.path())
            .unwrap()
            .display()
            .to_string()
    );
    let chaining: Value =
        serde_json::from_slice(&std::fs::read(folder.join("chaining.json")).unwrap()).unwrap();
    assert_eq!(chaining[0]["value"], "hello");
}

#[test]
fn continue_fails_the_run_and_abort_stops_it() {
    let cont = run_docs(
        &[(
            "d.yml",
            r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Fails
        action: ExecuteBash
        onFailure: Continue
        inputs:
          commands: ["exit 1"]
      - name: After
        action: ExecuteBash
        inputs:
          commands: ["touch @DIR@/after-continue"]
"#,
        )],
        &[],
    );
    assert_eq!(cont.code(), 1);
    let s = cont.summary();
    assert_eq!(s["status"], "failed");
    assert_eq!(s["failedStepCount"], 1);
    assert_eq!(s["executedStepCount"], 2);
    assert!(
        cont.dir.path().join("after-continue").exists(),
        "Continue runs the next step"
    );
    assert!(s["failureMessage"].as_str().unwrap().contains("failed"));

    let abort = run_docs(
        &[
            (
                "a.yml",
                r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Fails
        action: ExecuteBash
        inputs:
          commands: ["exit 1"]
      - name: After
        action: ExecuteBash
        inputs:
          commands: ["touch @DIR@/after-abort"]
  - name: validate
    steps:
      - name: Later
        action: ExecuteBash
        inputs:
          commands: ["touch @DIR@/later-phase"]
"#,
            ),
            (
                "b.yml",
                r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: OtherDoc
        action: ExecuteBash
        inputs:
          commands: ["touch @DIR@/other-doc"]
"#,
            ),
        ],
        &[],
    );
    assert_eq!(abort.code(), 1);
    assert_eq!(abort.summary()["executedStepCount"], 1);
    for f in ["after-abort", "later-phase", "other-doc"] {
        assert!(
            !abort.dir.path().join(f).exists(),
            "{f} must not run after Abort"
        );
    }
}

#[test]
fn loops_chaining_and_loop_outputs() {
    let r = run_docs(
        &[(
            "d.yml",
            r#"
schemaVersion: 1.0
parameters:
  - Greeting:
      type: string
      default: hi
constants:
  - Count:
      type: string
      value: 1
phases:
  - name: build
    steps:
      - name: Range
        action: ExecuteBash
        loop:
          for:
            start: 1
            end: 5
            updateBy: 2
        inputs:
          commands:
            - echo "{{ loop.index }}:{{ loop.value }}"
      - name: Down
        action: ExecuteBash
        loop:
          name: down
          for: {start: 3, end: 1, updateBy: -1}
        inputs:
          commands:
            - echo "{{ down.value }}"
      - name: Items
        action: ExecuteBash
        loop:
          forEach:
            - a
            - "{{ Greeting }}"
        inputs:
          commands:
            - echo "item-{{ loop.value }}"
      - name: Split
        action: ExecuteBash
        loop:
          forEach:
            list: "x;y;{{ build.Items.outputs.stdout }}"
            delimiter: ";"
        inputs:
          commands:
            - printf '%s|' "{{ loop.value }}"; echo
      - name: Literal
        action: ExecuteBash
        inputs:
          commands:
            - echo '{{ loop.value }} {{ Count }}'
      - name: Binary
        action: ExecuteBinary
        inputs:
          path: /bin/echo
          arguments:
            - "{{ build.Range.outputs.stdout }}"
  - name: validate
    steps:
      - name: CrossPhase
        action: ExecuteBash
        inputs:
          commands:
            - echo "{{ build.Binary.inputs.path }} {{ build.Down.outputs.stdout }}"
"#,
        )],
        &["--parameters", "Greeting=hey,Undeclared=ignored"],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.output(0, "build", "Range", "stdout"), "0:1\n1:3\n2:5");
    assert_eq!(r.output(0, "build", "Down", "stdout"), "3\n2\n1");
    assert_eq!(r.output(0, "build", "Items", "stdout"), "item-a\nitem-hey");
    // the delimited list is split after substitution; the chained value holds a newline, kept inside an item
    assert_eq!(
        r.output(0, "build", "Split", "stdout"),
        "x|\ny|\nitem-a\nitem-hey|"
    );
    assert_eq!(
        r.output(0, "build", "Literal", "stdout"),
        "{{ loop.value }} 1"
    );
    assert_eq!(r.output(0, "build", "Binary", "stdout"), "0:1\n1:3\n2:5");
    assert_eq!(
        r.output(0, "validate", "CrossPhase", "stdout"),
        "/bin/echo 3\n2\n1"
    );
    let inputs: Value =
        serde_json::from_str(r.step(0, "build", "Items")["inputs"].as_str().unwrap()).unwrap();
    assert_eq!(
        inputs[0]["commands"][0], "echo \"item-hey\"",
        "inputs of the last iteration, resolved"
    );
}

#[test]
fn conditions_and_assert() {
    let r = run_docs(
        &[(
            "d.yml",
            r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Value
        action: ExecuteBash
        inputs:
          commands: ["echo S3"]
      - name: Hash
        action: ExecuteBash
        inputs:
          commands: ["printf abc > @DIR@/abc.txt"]
      - name: AllTrue
        action: Assert
        inputs:
          and:
            - stringEquals: 's3'
              value: '{{ build.Value.outputs.stdout }}'
            - not:
                stringIsEmpty: '{{ build.Value.outputs.stdout }}'
            - stringIsWhitespace: '   '
            - patternMatches: '^S\d$'
              value: '{{ build.Value.outputs.stdout }}'
            - numberEquals: 1
              value: '1.0'
            - numberLessThan: 10
              value: 9
            - numberGreaterThanEquals: 2
              value: 2
            - stringLessThan: 'b'
              value: 'a'
            - binaryExists: bash
            - fileExists: '@DIR@/abc.txt'
            - folderExists: '@DIR@'
            - fileSHA256Equals: 'BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD'
              path: '@DIR@/abc.txt'
            - fileMD5Equals: 900150983cd24fb0d6963f7d28e17f72
              path: '@DIR@/abc.txt'
            - or:
                - numberEquals: 1
                  value: 'a1'
                - fileSHA1Equals: a9993e364706816aba3e25717850c26c9cd0d89d
                  path: '@DIR@/abc.txt'
      - name: NotANumberIsFalse
        action: Assert
        onFailure: Ignore
        inputs:
          numberEquals: 10
          value: a10
      - name: ThenSkip
        action: ExecuteBash
        if:
          fileExists: '@DIR@/abc.txt'
          then: Skip
        inputs:
          commands: ["touch @DIR@/then-skip-ran"]
      - name: ElseExecute
        action: ExecuteBash
        if:
          binaryExists: no-such-binary-kiln
          else: Execute
        inputs:
          commands: ["touch @DIR@/else-ran"]
      - name: AbortByIf
        action: ExecuteBash
        onFailure: Continue
        if:
          folderExists: '@DIR@'
          then: Abort
        inputs:
          commands: ["touch @DIR@/abort-ran"]
"#,
        )],
        &[],
    );
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert_eq!(r.step(0, "build", "AllTrue")["status"], "success");
    let nan = r.step(0, "build", "NotANumberIsFalse");
    assert_eq!(nan["status"], "ignoredfailure");
    assert!(nan["failureMessage"].as_str().unwrap().contains("false"));
    assert_eq!(r.step(0, "build", "ThenSkip")["status"], "skipped");
    assert!(!r.dir.path().join("then-skip-ran").exists());
    assert!(r.dir.path().join("else-ran").exists());
    assert_eq!(r.step(0, "build", "AbortByIf")["status"], "failed");
    assert!(!r.dir.path().join("abort-ran").exists());
    assert_eq!(r.summary()["failedStepCount"], 1);
}

#[test]
fn retries_and_timeouts_kill_the_process_tree() {
    let marker = format!("kiln-timeout-marker-{}", std::process::id());
    let doc = r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Flaky
        action: ExecuteBash
        maxAttempts: 3
        inputs:
          commands:
            - echo x >> @DIR@/attempts
            - test $(wc -l < @DIR@/attempts) -ge 3
      - name: Slow
        action: ExecuteBash
        timeoutSeconds: 2
        maxAttempts: 2
        onFailure: Ignore
        inputs:
          commands:
            - echo started >> @DIR@/slow-attempts
            - bash -c 'exec -a MARKER sleep 60' &
            - sleep 60
      - name: SlowLoop
        action: ExecuteBash
        timeoutSeconds: 3
        onFailure: Ignore
        loop:
          forEach: [a, b, c, d]
        inputs:
          commands: ["sleep 1.2"]
"#
    .replace("MARKER", &marker);
    let started = std::time::Instant::now();
    let r = run_docs(&[("d.yml", &doc)], &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        started.elapsed().as_secs() < 30,
        "timeouts must stop the steps"
    );
    assert_eq!(
        std::fs::read_to_string(r.dir.path().join("attempts"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    assert_eq!(r.step(0, "build", "Flaky")["status"], "success");
    let slow = r.step(0, "build", "Slow");
    assert_eq!(slow["status"], "ignoredfailure");
    assert!(
        slow["failureMessage"]
            .as_str()
            .unwrap()
            .contains("timed out after 2 seconds"),
        "{slow}"
    );
    assert_eq!(
        std::fs::read_to_string(r.dir.path().join("slow-attempts"))
            .unwrap()
            .lines()
            .count(),
        2,
        "each attempt restarts the timeout"
    );
    let ps = Command::new("pgrep")
        .args(["-f", &marker])
        .output()
        .unwrap();
    assert!(
        ps.stdout.is_empty(),
        "the step's background child must be killed: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
    let lp = r.step(0, "build", "SlowLoop");
    assert!(
        lp["failureMessage"]
            .as_str()
            .unwrap()
            .contains("loop timed out"),
        "the timeout covers all iterations: {lp}"
    );
}

#[test]
fn reboot_requests_save_state_and_resume() {
    let doc = r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Before
        action: ExecuteBash
        inputs:
          commands: ["echo before >> @DIR@/trace; echo first"]
      - name: NeedsReboot
        action: ExecuteBash
        inputs:
          commands:
            - |
              if [ -f @DIR@/rebooted-once ]; then echo "resumed" >> @DIR@/trace; echo done194; exit 0; fi
              touch @DIR@/rebooted-once
              echo "asking" >> @DIR@/trace
              exit 194
      - name: RebootAction
        action: Reboot
        inputs:
          delaySeconds: 0
      - name: After
        action: ExecuteBash
        inputs:
          commands: ["echo after >> @DIR@/trace; echo '{{ build.Before.outputs.stdout }}'"]
"#;
    let dir = tempfile::tempdir().unwrap();
    let first = run_in(dir, &[("d.yml", doc)], &["--execution-id", "exec-1"]);
    assert_eq!(
        first.code(),
        194,
        "exit 194 = reboot requested: {}",
        first.stderr()
    );
    assert!(first
        .dir
        .path()
        .join("logs/.kiln-toe-state/executionstate.json")
        .is_file());
    assert!(first.stderr().contains("run the same command again"));
    let dir = first.dir;
    let second = kiln(
        dir.path(),
        &[
            "toe",
            "run",
            "--documents",
            "d.yml",
            "--log-directory",
            "logs",
        ],
    );
    assert_eq!(
        second.status.code(),
        Some(194),
        "the Reboot action asks again: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    let third = kiln(
        dir.path(),
        &[
            "toe",
            "run",
            "--documents",
            "d.yml",
            "--log-directory",
            "logs",
        ],
    );
    assert_eq!(
        third.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    let trace = std::fs::read_to_string(dir.path().join("trace")).unwrap();
    assert_eq!(
        trace, "before\nasking\nresumed\nafter\n",
        "194 reruns the same step; Reboot goes on with the next"
    );
    let summary: Value = serde_json::from_slice(&third.stdout).unwrap();
    assert_eq!(summary["executionId"], "exec-1");
    assert_eq!(summary["executedStepCount"], 4);
    assert!(
        !dir.path()
            .join("logs/.kiln-toe-state/executionstate.json")
            .exists(),
        "state removed when the run ends"
    );
    let r = Run { out: third, dir };
    assert_eq!(
        r.output(0, "build", "After", "stdout"),
        "first",
        "chaining survives the reboot"
    );
    assert_eq!(r.output(0, "build", "NeedsReboot", "stdout"), "done194");
}

#[test]
fn documents_run_document_major_and_phases_filter_keeps_document_order() {
    let a = r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - {name: A1, action: ExecuteBash, inputs: {commands: ["echo a-build >> @DIR@/order"]}}
  - name: validate
    steps:
      - {name: A2, action: ExecuteBash, inputs: {commands: ["echo a-validate >> @DIR@/order"]}}
  - name: test
    steps:
      - {name: A3, action: ExecuteBash, inputs: {commands: ["echo a-test >> @DIR@/order"]}}
"#;
    let b = r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - {name: B1, action: ExecuteBash, inputs: {commands: ["echo b-build >> @DIR@/order"]}}
"#;
    let r = run_docs(
        &[("a.yml", a), ("b.yml", b)],
        &["--phases", "validate,build"],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let order = std::fs::read_to_string(r.dir.path().join("order")).unwrap();
    assert_eq!(order, "a-build\na-validate\nb-build\n");
    let none = run_docs(&[("b.yml", b)], &["--phases", "nothing"]);
    assert_eq!(none.code(), 0);
    assert_eq!(none.summary()["executedStepCount"], 0);
}

#[test]
fn execute_document_runs_children_with_parameters() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/child.yml"),
        r#"
schemaVersion: 1.0
parameters:
  - Who:
      type: string
phases:
  - name: build
    steps:
      - name: Greet
        action: ExecuteBash
        inputs:
          commands: ["echo hello-{{ Who }}"]
  - name: test
    steps:
      - name: NotRun
        action: ExecuteBash
        inputs:
          commands: ["exit 1"]
"#,
    )
    .unwrap();
    let r = run_in(
        dir,
        &[(
            "p.yml",
            r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Child
        action: ExecuteDocument
        inputs:
          document: sub/child.yml
          phases: build
          parameters:
            - name: Who
              value: kiln
      - name: UseIt
        action: ExecuteBash
        inputs:
          commands: ["echo {{ build.Child.outputs.status }}/{{ build.Child.outputs.executedStepCount }}"]
      - name: Managed
        action: ExecuteDocument
        inputs:
          document: arn:aws:imagebuilder:us-east-1:aws:component/hello-world-linux/x.x.x
          phases: validate
"#,
        )],
        &[],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.output(0, "build", "UseIt", "stdout"), "success/1");
    let child = r.step(0, "build", "Child");
    assert_eq!(child["timeoutSeconds"], -1);
    let detailed = &child["detailedOutput"];
    assert_eq!(
        detailed["documents"][0]["phases"][0]["steps"][0]["name"],
        "Greet"
    );
    let greet_out: Value = serde_json::from_str(
        detailed["documents"][0]["phases"][0]["steps"][0]["outputs"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(greet_out[0]["stdout"], "hello-kiln");
    assert_eq!(r.output(0, "build", "Managed", "executedStepCount"), "1");
}

#[test]
fn invalid_input_exits_2_with_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yml"), "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: X\n        action: ExecuteBsh\n        inputs: {commands: [a]}\n      - name: Y\n        action: ExecuteBash\n        inputs:\n          commands: ['{{ Nope }}']\n").unwrap();
    let out = kiln(dir.path(), &["toe", "validate", "--documents", "bad.yml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yml:6:17: error[unknown-action]"), "{err}");
    assert!(err.contains("did you mean `ExecuteBash`?"), "{err}");
    assert!(
        err.contains("bad.yml:11:23: error[undeclared-variable]"),
        "{err}"
    );
    assert!(err.contains("2 problems found"), "{err}");
    // run refuses too, and writes no log folder
    let out = kiln(
        dir.path(),
        &[
            "toe",
            "run",
            "--documents",
            "bad.yml",
            "--log-directory",
            "logs",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !dir.path().join("logs").exists(),
        "nothing written for invalid input"
    );
    // empty parameter values are invalid
    std::fs::write(dir.path().join("ok.yml"), "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - {name: A, action: ExecuteBash, inputs: {commands: [true]}}\n").unwrap();
    let out = kiln(
        dir.path(),
        &[
            "toe",
            "run",
            "--documents",
            "ok.yml",
            "--parameters",
            "ntp-server=",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not `name=value`"));
    // a missing file
    let out = kiln(
        dir.path(),
        &["toe", "validate", "--documents", "missing.yml"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read document missing.yml"));
}

#[test]
fn execute_document_nesting_and_cycles_are_rejected_statically() {
    let dir = tempfile::tempdir().unwrap();
    let call = |target: &str| {
        format!("schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Call\n        action: ExecuteDocument\n        inputs:\n          document: {target}\n")
    };
    std::fs::write(dir.path().join("l0.yml"), call("l1.yml")).unwrap();
    std::fs::write(dir.path().join("l1.yml"), call("l2.yml")).unwrap();
    std::fs::write(dir.path().join("l2.yml"), call("l3.yml")).unwrap();
    std::fs::write(dir.path().join("l3.yml"), call("l4.yml")).unwrap();
    std::fs::write(dir.path().join("l4.yml"), "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - {name: A, action: ExecuteBash, inputs: {commands: [true]}}\n").unwrap();
    let out = kiln(dir.path(), &["toe", "validate", "--documents", "l0.yml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("l3.yml:8:21: error[document-nesting]"),
        "{err}"
    );
    assert!(
        kiln(dir.path(), &["toe", "validate", "--documents", "l1.yml"])
            .status
            .success(),
        "three levels are fine"
    );

    std::fs::write(dir.path().join("c1.yml"), call("c2.yml")).unwrap();
    std::fs::write(dir.path().join("c2.yml"), call("./c1.yml")).unwrap();
    let out = kiln(dir.path(), &["toe", "validate", "--documents", "c1.yml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("c2.yml:8:21: error[document-cycle]"), "{err}");
}

#[test]
fn sigterm_stops_the_run_and_its_processes() {
    let marker = format!("kiln-sigterm-marker-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("d.yml"),
        format!(
            r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Long
        action: ExecuteBash
        inputs:
          commands:
            - bash -c 'exec -a {marker} sleep 120' &
            - touch started
            - sleep 120
"#
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "toe",
            "run",
            "--documents",
            "d.yml",
            "--log-directory",
            "logs",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !dir.path().join("started").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted by SIGTERM"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let ps = Command::new("pgrep")
        .args(["-f", &marker])
        .output()
        .unwrap();
    assert!(
        ps.stdout.is_empty(),
        "no process of the step may survive: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
}

/// UpdateOS runs the host's real package manager. `hello` is a Debian package
/// that is not installed here, so `--only-upgrade` changes nothing; an unknown
/// package name makes apt-get fail.
#[test]
fn update_os_uses_the_detected_package_manager() {
    let r = run_docs(
        &[(
            "d.yml",
            r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: OnlyUpgradeNotInstalled
        action: UpdateOS
        inputs:
          include: [hello, bash]
          exclude: [bash]
      - name: UnknownPackage
        action: UpdateOS
        onFailure: Ignore
        inputs:
          include: [kiln-no-such-package-xyz]
"#,
        )],
        &[],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(
        r.step(0, "build", "OnlyUpgradeNotInstalled")["status"],
        "success"
    );
    let unknown = r.step(0, "build", "UnknownPackage");
    assert_eq!(unknown["status"], "ignoredfailure");
    assert!(
        unknown["failureMessage"]
            .as_str()
            .unwrap()
            .contains("status 100"),
        "{unknown}"
    );
    let console = std::fs::read_to_string(r.log_folder().join("console.log")).unwrap();
    assert!(console.contains("UpdateOS: using Apt"), "{console}");
    assert!(console.contains("hello"), "{console}");
    assert!(
        !console.contains("bash is already the newest"),
        "excluded packages are not touched: {console}"
    );
}

/// A child killed (SIGKILL) and reaped when dropped, also when a test fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Processes whose command line contains `needle` (not this test's pgrep).
fn processes_with(needle: &str) -> String {
    let ps = Command::new("pgrep")
        .args(["-a", "-f", needle])
        .output()
        .unwrap();
    String::from_utf8_lossy(&ps.stdout).into_owned()
}

/// Waits up to `limit` for no process to mention `needle`; what is left.
fn gone_within(needle: &str, limit: std::time::Duration) -> String {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = processes_with(needle);
        if left.is_empty() || std::time::Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn sigkill_of_kiln_leaves_no_process_of_the_step() {
    let marker = format!("kiln-sigkill-marker-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("d.yml"),
        format!(
            r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Long
        action: ExecuteBash
        inputs:
          commands:
            - bash -c 'exec -a {marker}-background sleep 120' &
            - touch started
            - bash -c 'exec -a {marker}-foreground sleep 120'
"#
        ),
    )
    .unwrap();
    let logs = dir.path().join("logs");
    let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["toe", "run", "--documents", "d.yml", "--log-directory"])
        .arg(&logs)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !dir.path().join("started").exists()
        || processes_with(&format!("{marker}-foreground")).is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // the step's shell runs its script from the log folder, inside `dir`
    let folder = dir.path().display().to_string();
    assert!(processes_with(&folder).contains("bash"));
    child.0.kill().unwrap(); // SIGKILL: kiln can clean nothing up itself
    child.0.wait().unwrap();
    let left = gone_within(&marker, std::time::Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "the step's processes outlived kiln: {left}"
    );
    let left = gone_within(&folder, std::time::Duration::from_secs(5));
    assert!(left.is_empty(), "the step's shell outlived kiln: {left}");
}

#[test]
fn a_background_child_does_not_hold_the_step() {
    let marker = format!("kiln-background-marker-{}", std::process::id());
    let doc = r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Leaves
        action: ExecuteBash
        inputs:
          commands:
            - bash -c 'exec -a MARKER-holding sleep 12' &
            - (sleep 0.3; echo late) &
            - echo early
      - name: LeavesQuietly
        action: ExecuteBash
        inputs:
          commands:
            - bash -c 'exec -a MARKER-quiet sleep 12' >/dev/null 2>&1 &
            - echo next
"#
    .replace("MARKER", &marker);
    let started = std::time::Instant::now();
    let r = run_docs(&[("d.yml", &doc)], &[]);
    let took = started.elapsed();
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        took < std::time::Duration::from_secs(6),
        "the background sleep held the run for {took:?}"
    );
    // what the background child printed during the drain is kept
    assert_eq!(r.output(0, "build", "Leaves", "stdout"), "early\nlate");
    assert_eq!(r.output(0, "build", "LeavesQuietly", "stdout"), "next");
    // and what it left running ended with the step
    let left = gone_within(&marker, std::time::Duration::from_secs(2));
    assert!(left.is_empty(), "leftovers of the steps still run: {left}");
}

/// A secret parameter (`--secret-parameters`), a URL password and a query
/// token: echoed, chained, split across two reads of the step's output,
/// passed to a child document, printed under `set -x` into a failing
/// step's stderr, and used in a WebDownload URL. None of them is in any
/// file of the log folder nor in what kiln prints.
#[test]
fn secrets_reach_no_file_of_the_log_folder() {
    const SECRET: &str = "zv7-Q2xk-distinct-secret";
    const URL_PASSWORD: &str = "urlpw-9Hq2Lm";
    const QUERY_TOKEN: &str = "qtok-5Rm1Vb";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("child.yml"),
        r#"
schemaVersion: 1.0
parameters:
  - Who:
      type: string
phases:
  - name: build
    steps:
      - name: Greet
        action: ExecuteBash
        inputs:
          commands: ["echo child-got-{{ Who }}"]
"#,
    )
    .unwrap();
    let doc = format!(
        r#"
schemaVersion: 1.0
parameters:
  - Token:
      type: string
phases:
  - name: build
    steps:
      - name: Echo
        action: ExecuteBash
        inputs:
          commands:
            - echo "token is {{{{ Token }}}}"
      - name: Split
        action: ExecuteBash
        inputs:
          commands:
            # the first half ends one 8 KiB read; the pause makes the second
            # half another read
            - s="{{{{ Token }}}}"
            - head -c 8180 /dev/zero | tr '\0' x
            - printf '%s' "${{s:0:9}}"
            - sleep 0.5
            - printf '%s\n' "${{s:9}}"
      - name: Chained
        action: ExecuteBash
        inputs:
          commands:
            - echo "again {{{{ build.Echo.outputs.stdout }}}}"
      - name: Child
        action: ExecuteDocument
        inputs:
          document: child.yml
          parameters:
            - name: Who
              value: "{{{{ Token }}}}"
      - name: Url
        action: ExecuteBash
        inputs:
          commands:
            - echo "fetching https://kiln:{URL_PASSWORD}@mirror.invalid/x?token={QUERY_TOKEN}"
      - name: Download
        action: WebDownload
        onFailure: Continue
        timeoutSeconds: 30
        inputs:
          - source: "http://kiln:{URL_PASSWORD}@127.0.0.1:1/f?token={QUERY_TOKEN}&k={{{{ Token }}}}"
            destination: "@DIR@/dl/f"
      - name: Fails
        action: ExecuteBash
        inputs:
          commands:
            - set -x
            - secret='{{{{ Token }}}}'
            - echo "the secret is $secret" >&2
            - exit 3
"#
    );
    let params = format!("Token={SECRET}");
    let r = run_in(
        dir,
        &[("s.yml", &doc)],
        &["--parameters", &params, "--secret-parameters", "Token"],
    );
    assert_eq!(r.code(), 1, "{}", r.stderr());
    // the steps did run with the real value
    assert!(r.stderr().contains("child-got-***"), "{}", r.stderr());
    assert_eq!(r.step(0, "build", "Chained")["status"], "success");
    let fails = r.step(0, "build", "Fails");
    assert!(
        fails["failureMessage"]
            .as_str()
            .unwrap()
            .contains("the secret is ***"),
        "{fails}"
    );
    let needles = [SECRET, URL_PASSWORD, QUERY_TOKEN];
    let checked = support::leak::assert_tree_clean(&r.dir.path().join("logs"), &needles);
    assert!(
        checked >= 4,
        "console.log, detailedoutput.json, chaining.json, documents"
    );
    support::leak::assert_clean("kiln's standard output", &r.out.stdout, &needles);
    support::leak::assert_clean("kiln's standard error", &r.out.stderr, &needles);
    // the split secret was masked in the console, not only cut
    let console = std::fs::read_to_string(r.log_folder().join("console.log")).unwrap();
    assert!(console.contains("xxx***\n"), "{console}");
}
