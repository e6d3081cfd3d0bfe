//! Fuzzing of kiln's parsers of untrusted text: the positioned YAML reader,
//! AWSTOE documents (parse and every validation), recipes (kiln's YAML and
//! Image Builder's JSON), pipeline files, `{{ }}` expressions, and the
//! request heads of the `kiln serve` API. Each target gets thousands of
//! mutants of real inputs (the deterministic mutator of
//! `support::fuzz`); a panic, or one case over its time budget, fails with
//! the input saved. The process runs under an address-space limit, so an
//! allocation bomb aborts the binary instead of the machine.

mod support;

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use kiln::serve::http::request;
use kiln::toe::actions::spec::OsPlatform;
use kiln::toe::expr::{self, Reference, Resolved};
use support::fuzz::{fuzz, limit_memory};

/// Mutants per target (on top of the seeds themselves); `KILN_FUZZ_CASES`
/// overrides it for a longer run.
const CASES: usize = 5000;

fn cases() -> usize {
    std::env::var("KILN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES)
}

/// The classic "billion laughs": nine levels of nine aliases.
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

/// Nesting that overflowed the stack before kiln bounded it (cheap to
/// refuse: a seed of every target).
fn deep() -> Vec<Vec<u8>> {
    vec![
        ("- ".repeat(50_000) + "x\n").into_bytes(),
        ("[".repeat(300) + &"]".repeat(300)).into_bytes(),
        ("{a: ".repeat(200) + &"}".repeat(200)).into_bytes(),
        // aliases of aliases, under the budget (mutants may cross it)
        "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
            .as_bytes()
            .to_vec(),
    ]
}
/// The longest one case may take (a debug build on a busy 2-core machine;
/// the seeds take milliseconds).
const PER_CASE: Duration = Duration::from_secs(10);

fn limits() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| limit_memory(3 << 30));
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn seeds(texts: &[&str]) -> Vec<Vec<u8>> {
    texts.iter().map(|t| t.as_bytes().to_vec()).collect()
}

const HELLO: &str = include_str!("../components/hello-world-linux.yml");
const REBOOT: &str = include_str!("../components/reboot-linux.yml");
const REBOOT_TEST: &str = include_str!("../components/reboot-test-linux.yml");
const BOOT_TEST: &str = include_str!("../components/simple-boot-test-linux.yml");
const UPDATE: &str = include_str!("../components/update-linux.yml");
const WEB: &str = include_str!("../recipes/debian-web/components/web-service.yml");
const WEB_TEST: &str = include_str!("../recipes/debian-web/components/web-service-test.yml");
const RECIPE: &str = include_str!("../recipes/debian-web/recipe.yml");
const PIPELINE: &str = include_str!("../recipes/debian-web/pipeline.yml");

/// A document that uses most of the language: parameters and constants,
/// loops of both kinds, conditions, Assert, chaining, ExecuteDocument,
/// file and transfer actions, retries and timeouts.
const RICH_DOCUMENT: &str = r#"name: rich
description: every feature
schemaVersion: 1.0
parameters:
  - Greeting:
      type: string
      default: hello
      description: what to say
      allowedValues: [hello, hi]
constants:
  - Dir:
      type: string
      value: /tmp/kiln-fuzz
phases:
  - name: build
    steps:
      - name: Make
        action: CreateFolder
        inputs:
          - path: '{{ Dir }}'
            overwrite: true
      - name: Say
        action: ExecuteBash
        timeoutSeconds: 60
        onFailure: Continue
        maxAttempts: 3
        inputs:
          commands:
            - echo "{{ Greeting }}"
      - name: Loop
        action: ExecuteBash
        loop:
          name: l
          forEach:
            list: "a,b,c"
            delimiter: ","
        inputs:
          commands: ['echo {{ l.value }} {{ l.index }}']
      - name: Count
        action: ExecuteBash
        loop:
          for: {start: 1, end: 10, updateBy: 3}
        inputs:
          commands: ['echo {{ loop.value }}']
      - name: Check
        action: Assert
        if:
          and:
            - stringEquals: 's3'
              value: '{{ build.Say.outputs.stdout }}'
            - not:
                numberGreaterThan: 3
                value: '{{ build.Loop.outputs.stdout }}'
        inputs:
          - stringEquals: hello
            value: '{{ build.Say.outputs.stdout }}'
      - name: Write
        action: CreateFile
        inputs:
          - path: '{{ build.Make.inputs[0].path }}/f.txt'
            content: "x: {{ Greeting }}"
            permissions: 0644
            encoding: utf8
      - name: Fetch
        action: WebDownload
        inputs:
          - source: https://example.com/a.tgz
            destination: /tmp/a.tgz
            checksum: abc
            algorithm: SHA256
      - name: Get
        action: S3Download
        inputs:
          - source: s3://bucket/key/*
            destination: /tmp/keys/
      - name: Child
        action: ExecuteDocument
        inputs:
          document: ./child.yml
          phases: build
          parameters:
            - name: P
              value: ['{{ Greeting }}']
      - name: Restart
        action: Reboot
        if: {fileExists: /var/run/reboot-required}
        inputs:
          delaySeconds: 0
  - name: validate
    steps:
      - name: Read
        action: ReadFile
        inputs:
          path: /etc/hostname
  - name: test
    steps:
      - name: Bin
        action: ExecuteBinary
        inputs:
          path: /bin/true
          arguments: ['-x', '{{ build.Say.outputs.stdout }}']
"#;

/// YAML features the documents above do not use.
const YAML_EXTRAS: &[&str] = &[
    "a: &x {k: [1, 2, &y three]}\nb: *x\nc: [*y, *x]\n<<: *x\n",
    "%YAML 1.2\n%TAG !e! tag:example.com,2000:\n---\n!e!foo \"bar\"\n...\n---\n- second\n",
    "? complex\n: value\n? [a, b]\n: c\n",
    "s: |-\n  keep\n   this\nf: >+\n  folded\n  text\n\nq: 'it''s'\nd: \"esc \\t \\u263A \\x41\"\n",
    "- - - - nested\n  - x\n- {a: [b, {c: d}]}\n",
    "a: b\na: c\n\tbad: tab\n",
    "a: &a [lol,lol,lol]\nb: &b [*a,*a,*a]\nc: &c [*b,*b,*b]\nd: [*c,*c,*c]\n",
    "{{ build.Step.outputs.stdout }}: x\nkey: {{ unquoted }}\n",
];

/// Image Builder's JSON form of a recipe.
const RECIPE_JSON: &str = r#"{
    "requestId": "r",
    "imageRecipe": {
        "arn": "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/debian-web/1.2.3",
        "name": "debian-web",
        "description": "Debian 12 with nginx",
        "platform": "Linux",
        "version": "1.2.3",
        "components": [
            {"componentArn": "arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x"},
            {"componentArn": "arn:aws:imagebuilder:us-east-1:aws:component/hello-world-linux/1.0.0",
             "parameters": [{"name": "P", "value": ["v"]}]}
        ],
        "parentImage": "./images/base.qcow2",
        "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": 12}}],
        "workingDirectory": "/var/tmp",
        "additionalInstanceConfiguration": {"systemsManagerAgent": {"uninstallAfterBuild": false}},
        "amiTags": {}
    }
}
"#;

const RECIPE_EXTRAS: &str = r#"name: web
semanticVersion: 1.2.3
parentImage: {url: "https://example.com/base.qcow2", sha256: "0000000000000000000000000000000000000000000000000000000000000000"}
components:
  - component: update-linux
  - component: ./doc.yml
    parameters: [{name: Port, value: ["80"]}]
  - componentArn: arn:aws:imagebuilder:us-east-1:aws:component/hello-world-linux/1.0.0
build: {cpus: 2, memoryMiB: 1024, accelerator: tcg, timeouts: {bootSeconds: 600, buildSeconds: 3600}}
distribution:
  formats: [vmdk, ova, qcow2]
  ami:
    bucket: kiln-images
    region: eu-central-1
    copyToRegions: [{region: eu-west-1}, {region: us-west-2, kmsKey: alias/k}]
"#;

const PIPELINE_INLINE: &str = r#"name: base
description: inline
recipe:
  name: base
  semanticVersion: 1.2.0
  parentImage: kiln:debian/1.x.x
  components:
    - component: update-linux
infrastructure: {cpus: 1, memoryMiB: 512}
distribution:
  formats: [raw]
  outputDirectories: [out, /srv/x]
  s3Prefix: s3://bucket/prefix
  ami: {bucket: kiln-imports, region: us-east-1, copyToRegions: [{region: eu-west-1}]}
schedule: "*/30 * * * *"
startCondition: always
notifications:
  - webhook: https://hooks.example/k?token=t
  - command: [logger, -t, kiln]
retention: {keepLast: 3}
"#;

#[test]
fn fuzz_yaml_reader() {
    limits();
    let mut all = seeds(&[
        HELLO,
        REBOOT,
        REBOOT_TEST,
        BOOT_TEST,
        UPDATE,
        WEB,
        WEB_TEST,
        RECIPE,
        PIPELINE,
        RICH_DOCUMENT,
        RECIPE_JSON,
    ]);
    all.extend(seeds(YAML_EXTRAS));
    all.extend(deep());
    fuzz("yaml", &all, cases(), PER_CASE, read_yaml);
}

fn read_yaml(bytes: &[u8]) {
    let t = text(bytes);
    let (root, issues) = kiln::util::yaml::parse_checked(&t);
    if let Some(root) = root {
        // the consumers walk the tree: it must be walkable
        let _ = root.to_json();
    }
    assert!(issues.len() <= kiln::util::yaml::MAX_ISSUES + 1);
}

/// Mutants of the billion laughs, which aborted every reader (each costs a
/// tenth of a second to refuse in a debug build: fewer cases).
#[test]
fn fuzz_yaml_alias_bomb() {
    limits();
    let bomb = vec![alias_bomb().into_bytes()];
    fuzz("yaml-bomb", &bomb, cases() / 50, PER_CASE, read_yaml);
}

#[test]
fn fuzz_documents() {
    limits();
    let mut all = seeds(&[
        HELLO,
        REBOOT,
        REBOOT_TEST,
        BOOT_TEST,
        UPDATE,
        WEB,
        WEB_TEST,
        RICH_DOCUMENT,
    ]);
    all.extend(deep());
    fuzz("document", &all, cases(), PER_CASE, |bytes| {
        let t = text(bytes);
        for os in [OsPlatform::Linux, OsPlatform::Windows] {
            match kiln::toe::document::parse("doc.yml", &t, os) {
                Ok(doc) => {
                    let mut d = kiln::util::diag::Diagnostics::new("doc.yml");
                    kiln::toe::validate::check_document(&doc, &mut d);
                    let _ = kiln::toe::runner::resolve_parameters(&doc, &Default::default());
                }
                Err(diags) => {
                    for d in diags {
                        let _ = d.to_string();
                    }
                }
            }
        }
    });
}

#[test]
fn fuzz_recipes() {
    limits();
    let mut all = seeds(&[RECIPE, RECIPE_JSON, RECIPE_EXTRAS]);
    all.extend(deep());
    fuzz("recipe", &all, cases(), PER_CASE, |bytes| {
        let t = text(bytes);
        for name in ["r.yml", "r.json"] {
            if let Err(diags) = kiln::recipe::parse(name, &t, Path::new("/recipes")) {
                for d in diags {
                    let _ = d.to_string();
                }
            }
        }
    });
}

#[test]
fn fuzz_pipelines() {
    limits();
    let mut all = seeds(&[PIPELINE, PIPELINE_INLINE]);
    all.extend(deep());
    fuzz("pipeline", &all, cases(), PER_CASE, |bytes| {
        let t = text(bytes);
        match kiln::pipeline::parse("p.yml", &t, Path::new("/pipelines")) {
            Ok(p) => {
                let _ = p.summary(chrono::Utc::now());
            }
            Err(diags) => {
                for d in diags {
                    let _ = d.to_string();
                }
            }
        }
    });
}

#[test]
fn fuzz_expressions() {
    limits();
    let all = seeds(&[
        "echo {{ Greeting }} and {{ build.Step.outputs.stdout }}",
        "{{build.Download.inputs[0].destination}}/x",
        "c:\\temp\\{{ loop.value }}\\{{ l.index }}",
        "s3://bucket/{{ Version }}/{{ FileName }}",
        "{{ ssm:/aws/service/ami }} {{ }} {{{ x }}} }}{{ {{a}}",
        "{{ validate.S p.outputs[12].k }} {{ a.b.c.d }} {{ x.inputs[99999999999999999999].p }}",
    ]);
    let mut n = 0usize;
    fuzz("expr", &all, cases(), PER_CASE, |bytes| {
        let t = text(bytes);
        for occ in expr::occurrences(&t) {
            assert!(t.get(occ.range.clone()).is_some(), "{occ:?} in {t:?}");
        }
        n += 1;
        let mut resolve = |r: &Reference| match (n % 3, r) {
            (0, _) => Resolved::Value("v{{ x }}".into()),
            (1, Reference::Loop { .. }) => Resolved::Keep,
            (1, _) => Resolved::Value(String::new()),
            _ => Resolved::Error("no".into()),
        };
        let _ = expr::render(&t, &mut resolve);
    });
}

#[test]
fn fuzz_request_heads() {
    limits();
    let all = seeds(&[
        "GET /v1/images?name=web&limit=5 HTTP/1.1\r\nHost: 127.0.0.1:8737\r\nAccept: */*\r\n\r\n",
        "HEAD /health HTTP/1.0\r\n\r\n",
        "GET /v1/pipelines/web%2Dnightly?x=a+b%20c HTTP/1.1\nHost: localhost\nContent-Length: 0\n\n",
        "POST /v1/builds HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: h\r\n folded: line\r\n\r\n",
    ]);
    fuzz("http-head", &all, cases(), PER_CASE, |bytes| {
        let head = match request::head_end(bytes) {
            Some(end) => &bytes[..end],
            None => bytes,
        };
        if let Ok(h) = request::parse_head(head) {
            if let Ok((path, query)) = request::split_target(&h.target) {
                let _ = request::percent_decode(path, false);
                if let Some(q) = query {
                    let _ = request::parse_query(q);
                }
            }
        }
        // the decoders on raw text too
        let t = text(bytes);
        let _ = request::percent_decode(&t, true);
        let _ = request::parse_query(&t);
        let _ = request::split_target(&t);
    });
}
