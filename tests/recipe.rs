//! Recipes: kiln's YAML form and the JSON of `aws imagebuilder
//! get-image-recipe`, every invalid recipe reported at file:line:column with
//! its field; component resolution against real files; `kiln validate`.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::ami::RegionCopy;
use kiln::ami::{BootMode, DiskFormat};
use kiln::export::format::ExportFormat;
use kiln::recipe::Network;
use kiln::recipe::{
    self, BootstrapSpec, ComponentSource, ParentImage, Recipe, RecipeError, RecipeForm, Version,
};
use kiln::util::diag::Diagnostic;
use sha2::{Digest, Sha256};

const FILE: &str = "r.yml";

/// A valid recipe head (5 lines); lines appended start at line 6.
const HEAD: &str = "name: web\nsemanticVersion: 1.0.0\nparentImage: ./base.qcow2\ncomponents:\n  - component: update-linux\n";

fn parse(text: &str) -> Result<Recipe, Vec<Diagnostic>> {
    recipe::parse(FILE, text, Path::new("/recipes"))
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match parse(text) {
        Ok(r) => panic!("expected errors for:\n{text}\ngot {r:?}"),
        Err(e) => e,
    }
}

/// An expected diagnostic: line, column, field, code, a part of the message.
type Expect<'a> = (usize, usize, &'a str, &'a str, &'a str);

#[track_caller]
fn assert_diags(got: &[Diagnostic], file: &str, expected: &[Expect<'_>]) {
    let show = || {
        got.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(got.len(), expected.len(), "got:\n{}", show());
    for (d, (line, column, field, code, message)) in got.iter().zip(expected) {
        assert_eq!(
            (
                d.file.as_str(),
                d.pos.line,
                d.pos.column,
                d.field.as_str(),
                d.code
            ),
            (file, *line, *column, *field, *code),
            "got:\n{}",
            show()
        );
        assert!(
            d.message.contains(message),
            "`{}` lacks `{message}`",
            d.message
        );
    }
}

#[track_caller]
fn hint_of(d: &Diagnostic) -> &str {
    d.hint
        .as_deref()
        .unwrap_or_else(|| panic!("no hint in {d}"))
}

#[test]
fn a_full_yaml_recipe_parses_into_the_model() {
    let text = r#"name: debian-web
semanticVersion: 2021.12.02
description: A web server
parentImage:
  bootstrap:
    distro: debian
    suite: trixie
    mirror: http://deb.debian.org/debian
    packages: [nginx, ca-certificates]
components:
  - component: update-linux
  - component: ./components/web.yml
    parameters:
      - name: Greeting
        value: [hunter2]
        secret: true
      - name: Mode
        value: [a, b]
  - componentArn: arn:aws:imagebuilder:us-east-1:aws:component/hello-world-linux/1.0.0/1
blockDeviceMappings:
  - deviceName: /dev/sda1
    ebs: {volumeSize: 8, volumeType: gp3, deleteOnTermination: true}
workingDirectory: /var/tmp
build:
  cpus: 2
  memoryMiB: 2048
  accelerator: tcg
  network: none
  timeouts: {bootSeconds: 600, buildSeconds: 3600, testSeconds: 1800, shutdownSeconds: 300}
  cache: {maxAgeHours: 24}
  tests: {reboot: true}
"#;
    let r = parse(text).unwrap();
    assert_eq!(r.build.layer_max_age_hours, Some(24));
    assert_eq!(r.build.reboot_test, Some(true));
    assert_eq!(r.file, PathBuf::from(FILE));
    assert_eq!(r.dir, PathBuf::from("/recipes"));
    assert_eq!(r.form, RecipeForm::Kiln);
    assert_eq!(r.name, "debian-web");
    assert_eq!(
        r.version,
        Version {
            major: 2021,
            minor: 12,
            patch: 2
        }
    );
    assert_eq!(r.description.as_deref(), Some("A web server"));
    assert_eq!(
        r.parent,
        ParentImage::Bootstrap(BootstrapSpec {
            distro: "debian".into(),
            suite: "trixie".into(),
            mirror: Some("http://deb.debian.org/debian".into()),
            packages: vec!["nginx".into(), "ca-certificates".into()],
        })
    );
    assert_eq!((r.parent_pos.line, r.parent_pos.column), (5, 3));
    let sources: Vec<&ComponentSource> = r.components.iter().map(|c| &c.source).collect();
    assert_eq!(
        sources,
        [
            &ComponentSource::Builtin("update-linux".into()),
            &ComponentSource::File("/recipes/./components/web.yml".into()),
            &ComponentSource::Builtin("hello-world-linux".into()),
        ]
    );
    let web = &r.components[1];
    assert_eq!(web.reference, "./components/web.yml");
    assert_eq!(
        (web.field.as_str(), web.line, web.column),
        ("components[1]", 12, 5)
    );
    let p: Vec<(&str, Vec<String>, bool, String)> = web
        .parameters
        .iter()
        .map(|p| (p.name.as_str(), p.value.clone(), p.secret, p.joined()))
        .collect();
    assert_eq!(
        p,
        [
            (
                "Greeting",
                vec!["hunter2".to_string()],
                true,
                "hunter2".into()
            ),
            ("Mode", vec!["a".into(), "b".into()], false, "a,b".into()),
        ]
    );
    assert_eq!(r.root_volume_gib, Some(8));
    assert_eq!(r.working_directory, "/var/tmp");
    assert_eq!(r.build.cpus, Some(2));
    assert_eq!(r.build.memory_mib, Some(2048));
    assert_eq!(r.build.accelerator, Some(kiln::recipe::Accelerator::Tcg));
    assert_eq!(r.build.network, Some(Network::None));
    let t = &r.build.timeouts;
    assert_eq!(
        (
            t.boot_seconds,
            t.build_seconds,
            t.test_seconds,
            t.shutdown_seconds
        ),
        (Some(600), Some(3600), Some(1800), Some(300))
    );
    // a secret value never shows in debug output
    let debug = format!("{r:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("\"a\", \"b\""), "{debug}");
}

#[test]
fn defaults_of_a_minimal_recipe() {
    let r = parse(HEAD).unwrap();
    assert_eq!(r.parent, ParentImage::File("/recipes/./base.qcow2".into()));
    assert_eq!(r.working_directory, "/tmp");
    assert_eq!(r.description, None);
    assert_eq!(r.root_volume_gib, None);
    assert_eq!(r.build, Default::default());
    let r = parse(&HEAD.replace("./base.qcow2", "{url: 'https://example.com/d.qcow2', sha256: ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789}")).unwrap();
    assert_eq!(
        r.parent,
        ParentImage::Url {
            url: "https://example.com/d.qcow2".into(),
            sha256: "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789".into()
        }
    );
    let r = parse(&HEAD.replace("./base.qcow2", "{bootstrap: {distro: debian}}")).unwrap();
    assert_eq!(r.parent.summary(), "bootstrap debian/bookworm");
    let r = parse(&HEAD.replace("./base.qcow2", "/images/base.raw")).unwrap();
    assert_eq!(r.parent, ParentImage::File("/images/base.raw".into()));
}

#[test]
fn invalid_top_level_fields() {
    let cases: Vec<(&str, String, Vec<Expect>)> = vec![
        (
            "missing name",
            "semanticVersion: 1.0.0\nparentImage: ./b.qcow2\ncomponents: [update-linux]\n".into(),
            vec![
                (1, 1, "name", "missing-field", "`name` is missing"),
                (
                    3,
                    14,
                    "components[0]",
                    "wrong-type",
                    "`components[0]` must be a map, found a scalar",
                ),
            ],
        ),
        (
            "name with a leading dash and a space",
            HEAD.replace("name: web", "name: -my web"),
            vec![(
                1,
                7,
                "name",
                "invalid-name",
                "`-my web` is not a valid recipe name",
            )],
        ),
        (
            "name too long",
            HEAD.replace("name: web", &format!("name: {}", "a".repeat(129))),
            vec![(1, 7, "name", "invalid-name", "is not a valid recipe name")],
        ),
        (
            "two-part version",
            HEAD.replace("1.0.0", "1.0"),
            vec![(
                2,
                18,
                "semanticVersion",
                "invalid-version",
                "`1.0` is not a version of the form major.minor.patch",
            )],
        ),
        (
            "wildcard version",
            HEAD.replace("1.0.0", "1.x.x"),
            vec![(
                2,
                18,
                "semanticVersion",
                "invalid-version",
                "`x` in version `1.x.x` is not a whole number",
            )],
        ),
        (
            "version part too large",
            HEAD.replace("1.0.0", "1.1073741824.0"),
            vec![(
                2,
                18,
                "semanticVersion",
                "invalid-version",
                "larger than 1073741823",
            )],
        ),
        (
            "missing version, parent and components",
            "name: web\n".into(),
            vec![
                (
                    1,
                    1,
                    "semanticVersion",
                    "missing-field",
                    "`semanticVersion` is missing",
                ),
                (
                    1,
                    1,
                    "parentImage",
                    "missing-field",
                    "`parentImage` is missing",
                ),
                (
                    1,
                    1,
                    "components",
                    "missing-field",
                    "`components` is missing",
                ),
            ],
        ),
        (
            "unknown keys",
            format!("{HEAD}semanticVersoin: 1.0.0\nbuidl: {{}}\n"),
            vec![
                (
                    6,
                    1,
                    "semanticVersoin",
                    "unknown-key",
                    "unknown key `semanticVersoin` at the top level",
                ),
                (
                    7,
                    1,
                    "buidl",
                    "unknown-key",
                    "unknown key `buidl` at the top level",
                ),
            ],
        ),
        (
            "relative working directory",
            format!("{HEAD}workingDirectory: tmp/kiln\n"),
            vec![(
                6,
                19,
                "workingDirectory",
                "working-directory",
                "must be an absolute path in the guest, found `tmp/kiln`",
            )],
        ),
        (
            "description as a list",
            format!("{HEAD}description: [a]\n"),
            vec![(
                6,
                14,
                "description",
                "wrong-type",
                "`description` must be a string, found a list",
            )],
        ),
        (
            "empty description",
            format!("{HEAD}description:\n"),
            vec![(
                6,
                1,
                "description",
                "wrong-type",
                "`description` must be a string, found nothing (null)",
            )],
        ),
    ];
    for (name, text, expected) in cases {
        println!("case: {name}");
        assert_diags(&errors(&text), FILE, &expected);
    }
}

#[test]
fn hints_for_top_level_fields() {
    let e = errors(&format!("{HEAD}semanticVersoin: 1.0.0\n"));
    assert_eq!(hint_of(&e[0]), "did you mean `semanticVersion`?");
    let e = errors(&format!("{HEAD}colour: red\n"));
    assert!(hint_of(&e[0])
        .starts_with("allowed here: name, semanticVersion, description, parentImage, components"));
    let e = errors(&HEAD.replace("1.0.0", "1.0"));
    assert!(hint_of(&e[0]).contains("e.g. 1.0.0"));
}

#[test]
fn invalid_parent_images() {
    let parent = |p: &str| HEAD.replace("./base.qcow2", p);
    let sha = "a".repeat(64);
    let cases: Vec<(&str, String, Vec<Expect>)> = vec![
        (
            "both forms",
            parent(&format!("{{url: 'https://x.org/d.img', sha256: {sha}, bootstrap: {{distro: debian}}}}")),
            vec![(3, 14, "parentImage", "parent-image", "gives both `url` and `bootstrap`")],
        ),
        (
            "neither form",
            parent(&format!("{{sha256: {sha}}}")),
            vec![(3, 14, "parentImage", "parent-image", "gives neither `url` nor `bootstrap`")],
        ),
        (
            "url without sha256",
            parent("{url: 'https://x.org/d.img'}"),
            vec![(3, 14, "parentImage.sha256", "missing-field", "`sha256` is missing in `parentImage`")],
        ),
        (
            "bad sha256",
            parent("{url: 'https://x.org/d.img', sha256: abc123}"),
            vec![(3, 51, "parentImage.sha256", "invalid-sha256", "must be 64 hex digits, found 6 characters")],
        ),
        (
            "sha256 that is not hex",
            parent(&format!("{{url: 'https://x.org/d.img', sha256: {}}}", "g".repeat(64))),
            vec![(3, 51, "parentImage.sha256", "invalid-sha256", "must be 64 hex digits")],
        ),
        (
            "ftp url",
            parent(&format!("{{url: 'ftp://x.org/d.img', sha256: {sha}}}")),
            vec![(3, 20, "parentImage.url", "invalid-url", "`ftp://x.org/d.img` is not an http:// or https:// URL")],
        ),
        (
            "url as a plain string",
            parent("https://x.org/d.img"),
            vec![(3, 14, "parentImage", "parent-image", "`https://x.org/d.img` is a URL")],
        ),
        (
            "AMI id",
            parent("ami-0123456789abcdef0"),
            vec![(3, 14, "parentImage", "parent-image", "`ami-0123456789abcdef0` is an EC2 AMI id, which kiln cannot use")],
        ),
        (
            "image ARN",
            parent("arn:aws:imagebuilder:us-east-1:aws:image/debian-12-x86/x.x.x"),
            vec![(3, 14, "parentImage", "parent-image", "is an Image Builder image ARN")],
        ),
        (
            "SSM parameter",
            parent("ssm:/aws/service/debian/release/12/latest/amd64"),
            vec![(3, 14, "parentImage", "parent-image", "is an SSM parameter")],
        ),
        (
            "unknown parent key",
            parent(&format!("{{url: 'https://x.org/d.img', sha265: {sha}}}")),
            vec![
                (3, 14, "parentImage.sha256", "missing-field", "`sha256` is missing"),
                (3, 43, "parentImage.sha265", "unknown-key", "unknown key `sha265` in `parentImage`"),
            ],
        ),
        (
            "ubuntu",
            parent("{bootstrap: {distro: ubuntu, suite: noble}}"),
            vec![
                (3, 35, "parentImage.bootstrap.distro", "bootstrap", "kiln does not support the distribution `ubuntu`"),
                (3, 50, "parentImage.bootstrap.suite", "bootstrap", "kiln does not support the suite `noble`"),
            ],
        ),
        (
            "misspelt suite, bad mirror and package",
            parent("{bootstrap: {distro: debian, suite: bookwrm, mirror: deb.debian.org, packages: [nginx, 'x;rm -rf /']}}"),
            vec![
                (3, 50, "parentImage.bootstrap.suite", "bootstrap", "kiln does not support the suite `bookwrm`"),
                (3, 67, "parentImage.bootstrap.mirror", "invalid-url", "`deb.debian.org` is not an http:// or https:// URL"),
                (3, 101, "parentImage.bootstrap.packages[1]", "bootstrap", "`x;rm -rf /` is not a Debian package name"),
            ],
        ),
        (
            "bootstrap without distro, sha256 beside it",
            parent(&format!("{{bootstrap: {{suite: bookworm}}, sha256: {sha}}}")),
            vec![
                (3, 26, "parentImage.bootstrap.distro", "missing-field", "`distro` is missing in `parentImage.bootstrap`"),
                (3, 53, "parentImage.sha256", "parent-image", "`sha256` goes with `url`, not with `bootstrap`"),
            ],
        ),
        (
            "a list",
            parent("[a.qcow2]"),
            vec![(3, 14, "parentImage", "wrong-type", "`parentImage` must be a string, found a list")],
        ),
    ];
    for (name, text, expected) in cases {
        println!("case: {name}");
        assert_diags(&errors(&text), FILE, &expected);
    }
    let e = errors(&parent("ami-0123456789abcdef0"));
    assert_eq!(
        hint_of(&e[0]),
        "kiln builds from local images: give a local disk file path, {url: …, sha256: …} or {bootstrap: {distro: debian, …}}"
    );
    let e = errors(&parent("{bootstrap: {distro: debian, suite: bookwrm}}"));
    assert_eq!(hint_of(&e[0]), "did you mean `bookworm`?");
    let e = errors(&parent("{bootstrap: {distro: ubuntu}}"));
    assert_eq!(hint_of(&e[0]), "supported: debian");
}

#[test]
fn invalid_components() {
    let head = "name: web\nsemanticVersion: 1.0.0\nparentImage: ./b.qcow2\n";
    let with = |components: &str| format!("{head}components:\n{components}");
    let cases: Vec<(&str, String, Vec<Expect>)> = vec![
        (
            "empty list",
            format!("{head}components: []\n"),
            vec![(4, 13, "components", "components-empty", "`components` is empty")],
        ),
        (
            "not a list",
            format!("{head}components: update-linux\n"),
            vec![(4, 13, "components", "wrong-type", "`components` must be a list, found a scalar")],
        ),
        (
            "unknown built-in",
            with("  - component: update-linx\n"),
            vec![(5, 16, "components[0].component", "unknown-component", "component `update-linx` is not one of kiln's built-in components")],
        ),
        (
            "unknown AWS-managed ARN",
            with("  - componentArn: arn:aws:imagebuilder:us-east-1:aws:component/python-3-linux/x.x.x\n"),
            vec![(5, 19, "components[0].componentArn", "unknown-component", "the AWS-managed component `python-3-linux` is not one of kiln's built-in components")],
        ),
        (
            "malformed ARN",
            with("  - component: arn:aws:imagebuilder:us-east-1:aws:component/Hello World/1.0.0\n"),
            vec![(5, 16, "components[0].component", "invalid-arn", "is not an Image Builder component ARN")],
        ),
        (
            "account-owned ARN",
            with("  - component: arn:aws:imagebuilder:us-east-1:123456789012:component/mine/1.0.0/1\n"),
            vec![(5, 16, "components[0].component", "unknown-component", "is a component of account 123456789012, which kiln cannot fetch offline")],
        ),
        (
            "both component and componentArn",
            with("  - component: update-linux\n    componentArn: arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x\n"),
            vec![(6, 19, "components[0].componentArn", "component-reference", "`component` and `componentArn` are both given")],
        ),
        (
            "no reference, misspelt key",
            with("  - compnent: update-linux\n"),
            vec![
                (5, 5, "components[0].compnent", "unknown-key", "unknown key `compnent` in `components[0]`"),
                (5, 5, "components[0].component", "missing-field", "`component` is missing in `components[0]`"),
            ],
        ),
        (
            "parameter value not a list",
            with("  - component: ./c.yml\n    parameters:\n      - name: Greeting\n        value: hello\n"),
            vec![(8, 16, "components[0].parameters[0].value", "parameter-value", "a parameter `value` is a list of strings")],
        ),
        (
            "parameter value list holding a map",
            with("  - component: ./c.yml\n    parameters:\n      - name: Greeting\n        value: [hello, {a: b}]\n"),
            vec![(8, 24, "components[0].parameters[0].value[1]", "wrong-type", "`value[1]` must be a string, found a map")],
        ),
        (
            "duplicate parameter, bad secret flag, missing value",
            with("  - component: ./c.yml\n    parameters:\n      - {name: A1x, value: [x]}\n      - {name: A1x, value: [y], secret: maybe}\n      - {name: B2y}\n      - {name: C3z, value: [z], secrte: true}\n"),
            vec![
                (8, 41, "components[0].parameters[1].secret", "wrong-type", "`secret` must be true or false, found `maybe`"),
                (9, 9, "components[0].parameters[2].value", "missing-field", "`value` is missing in `components[0].parameters[2]`"),
                (10, 33, "components[0].parameters[3].secrte", "unknown-key", "unknown key `secrte`"),
            ],
        ),
        (
            "duplicate parameter",
            with("  - component: ./c.yml\n    parameters:\n      - {name: A1x, value: [x]}\n      - {name: A1x, value: [y]}\n"),
            vec![(8, 16, "components[0].parameters[1].name", "duplicate-parameter", "parameter `A1x` is given twice")],
        ),
    ];
    for (name, text, expected) in cases {
        println!("case: {name}");
        assert_diags(&errors(&text), FILE, &expected);
    }
    let e = errors(&with("  - component: update-linx\n"));
    assert!(
        hint_of(&e[0]).starts_with(
            "did you mean `update-linux`? built-ins: update-linux, reboot-linux, hello-world-linux"
        ),
        "{}",
        hint_of(&e[0])
    );
    let e = errors(&with(
        "  - component: arn:aws:imagebuilder:us-east-1:123456789012:component/mine/1.0.0/1\n",
    ));
    assert!(hint_of(&e[0]).contains("aws imagebuilder get-component"));
    let e = errors(&with("  - component: ./c.yml\n    parameters:\n      - {name: A1x, value: [x]}\n      - {name: A1x, value: [y]}\n"));
    assert_eq!(hint_of(&e[0]), "it is first given on line 7; keep one");
}

#[test]
fn invalid_build_settings_and_volumes() {
    let cases: Vec<(&str, String, Vec<Expect>)> = vec![
        (
            "cpus 0, memory too small, accelerator unknown",
            format!("{HEAD}build:\n  cpus: 0\n  memoryMiB: 64\n  accelerator: hvf\n"),
            vec![
                (7, 9, "build.cpus", "invalid-number", "`cpus` must be a whole number from 1 to 255, found `0`"),
                (8, 14, "build.memoryMiB", "invalid-number", "`memoryMiB` must be a whole number from 256 to 1048576, found `64`"),
                (9, 16, "build.accelerator", "accelerator", "kiln does not support the accelerator `hvf`"),
            ],
        ),
        (
            "timeouts",
            format!("{HEAD}build:\n  timeouts: {{bootSeconds: 0, buildSeconds: -5, testSecs: 9}}\n"),
            vec![
                (7, 27, "build.timeouts.bootSeconds", "invalid-number", "`bootSeconds` must be a whole number from 1 to 604800, found `0`"),
                (7, 44, "build.timeouts.buildSeconds", "invalid-number", "found `-5`"),
                (7, 48, "build.timeouts.testSecs", "unknown-key", "unknown key `testSecs` in `build.timeouts`"),
            ],
        ),
        (
            "cache and tests",
            format!("{HEAD}build:\n  cache: {{maxAgeHours: -1, maxSize: 3}}\n  tests: {{reboot: yes please}}\n"),
            vec![
                (7, 24, "build.cache.maxAgeHours", "invalid-number", "found `-1`"),
                (7, 28, "build.cache.maxSize", "unknown-key", "unknown key `maxSize` in `build.cache`"),
                (8, 19, "build.tests.reboot", "wrong-type", "must be true or false, found `yes please`"),
            ],
        ),
        (
            "cpus as a word",
            format!("{HEAD}build: {{cpus: two}}\n"),
            vec![(6, 15, "build.cpus", "invalid-number", "found `two`")],
        ),
        (
            "two sized volumes",
            format!("{HEAD}blockDeviceMappings:\n  - {{deviceName: /dev/sda1, ebs: {{volumeSize: 8}}}}\n  - {{deviceName: /dev/sdb, ebs: {{volumeSize: 100, volumeTyp: gp3}}}}\n"),
            vec![
                (8, 46, "blockDeviceMappings[1].ebs.volumeSize", "block-device", "more than one volume is sized"),
                (8, 51, "blockDeviceMappings[1].ebs.volumeTyp", "unknown-key", "unknown key `volumeTyp`"),
            ],
        ),
        (
            "volume size 0",
            format!("{HEAD}blockDeviceMappings:\n  - ebs: {{volumeSize: 0}}\n"),
            vec![(7, 23, "blockDeviceMappings[0].ebs.volumeSize", "invalid-number", "`volumeSize` must be a whole number from 1 to 65536")],
        ),
    ];
    for (name, text, expected) in cases {
        println!("case: {name}");
        assert_diags(&errors(&text), FILE, &expected);
    }
    let e = errors(&format!("{HEAD}build: {{accelerator: tgc}}\n"));
    assert_eq!(hint_of(&e[0]), "did you mean `tcg`?");
}

#[test]
fn build_network() {
    assert_eq!(
        parse(HEAD).unwrap().build.network,
        None,
        "unset: kiln's default"
    );
    for (text, want) in [
        ("none", Network::None),
        ("outbound", Network::Outbound),
        ("host", Network::Host),
    ] {
        let r = parse(&format!("{HEAD}build:\n  network: {text}\n")).unwrap();
        assert_eq!(r.build.network, Some(want), "{text}");
    }
    let cases: Vec<(&str, String, Vec<Expect>)> = vec![
        (
            "a typo",
            format!("{HEAD}build:\n  cpus: 2\n  network: hots\n"),
            vec![(
                8,
                12,
                "build.network",
                "network",
                "kiln does not support the network `hots`",
            )],
        ),
        (
            "a list",
            format!("{HEAD}build: {{network: [host]}}\n"),
            vec![(
                6,
                18,
                "build.network",
                "wrong-type",
                "`network` must be a string, found a list",
            )],
        ),
        (
            "the key misspelt",
            format!("{HEAD}build: {{netwrok: none}}\n"),
            vec![(
                6,
                9,
                "build.netwrok",
                "unknown-key",
                "unknown key `netwrok`",
            )],
        ),
    ];
    for (name, text, expected) in cases {
        println!("case: {name}");
        assert_diags(&errors(&text), FILE, &expected);
    }
    let e = errors(&format!("{HEAD}build: {{network: hots}}\n"));
    let hint = hint_of(&e[0]);
    assert!(hint.starts_with("did you mean `host`? `none`: "), "{hint}");
    assert!(hint.contains("`outbound` (the default)"), "{hint}");
    let e = errors(&format!("{HEAD}build: {{network: bridged}}\n"));
    assert!(
        hint_of(&e[0]).starts_with("`none`: nothing but kiln's SSH"),
        "{}",
        hint_of(&e[0])
    );
}

#[test]
fn distribution_formats() {
    let r = parse(&format!(
        "{HEAD}distribution:\n  formats: [vmdk, ova, vhd]\n"
    ))
    .unwrap();
    assert_eq!(
        r.distribution.formats,
        vec![ExportFormat::Vmdk, ExportFormat::Ova, ExportFormat::Vhd]
    );
    assert!(parse(HEAD).unwrap().distribution.formats.is_empty());
    let cases: Vec<(&str, String, Vec<Expect>)> = vec![
        (
            "unknown, repeated, not a string, unknown key",
            format!("{HEAD}distribution:\n  formats: [vmdk, vdmk, vmdk, [x]]\n  format: ova\n"),
            vec![
                (
                    7,
                    19,
                    "distribution.formats[1]",
                    "unknown-format",
                    "kiln cannot export to `vdmk`",
                ),
                (
                    7,
                    25,
                    "distribution.formats[2]",
                    "duplicate-format",
                    "the format `vmdk` is listed twice",
                ),
                (
                    7,
                    31,
                    "distribution.formats[3]",
                    "wrong-type",
                    "must be a string",
                ),
                (
                    8,
                    3,
                    "distribution.format",
                    "unknown-key",
                    "unknown key `format`",
                ),
            ],
        ),
        (
            "formats not a list",
            format!("{HEAD}distribution: {{formats: vmdk}}\n"),
            vec![(
                6,
                25,
                "distribution.formats",
                "wrong-type",
                "must be a list",
            )],
        ),
    ];
    for (name, text, expected) in cases {
        println!("case: {name}");
        assert_diags(&errors(&text), FILE, &expected);
    }
    let e = errors(&format!("{HEAD}distribution: {{formats: [vdmk]}}\n"));
    assert_eq!(hint_of(&e[0]), "did you mean `vmdk`?");
}

#[test]
fn distribution_ami_parses_into_the_import_settings() {
    let r = parse(&format!(
        "{HEAD}distribution:
  formats: [vmdk]
  ami:
    bucket: kiln-images
    region: eu-central-1
    name: web-ami
    format: raw
    viaSnapshot: true
    bootMode: uefi
    kmsKey: alias/kiln
    encrypted: true
    copyToRegions:
      - region: eu-west-1
      - {{region: us-west-2, kmsKey: \"arn:aws:kms:us-west-2:123456789012:key/abcd\"}}
    shareAccounts: [111122223333, \"444455556666\"]
    shareOrgs: [\"arn:aws:organizations::123456789012:organization/o-abc123def4\"]
    shareOus:
      - arn:aws:organizations::123456789012:ou/o-abc123def4/ou-ab12-cdef3456
    tags: {{team: web, cost: 42}}
    keepUpload: true
    skipPreflight: true
"
    ))
    .unwrap();
    let ami = r.distribution.ami.expect("distribution.ami");
    assert_eq!(ami.bucket, "kiln-images");
    assert_eq!(ami.region.as_deref(), Some("eu-central-1"));
    assert_eq!(ami.name.as_deref(), Some("web-ami"));
    assert_eq!(ami.format, DiskFormat::Raw);
    assert!(ami.via_snapshot && ami.keep_upload && ami.skip_preflight);
    assert_eq!(ami.boot_mode, BootMode::Uefi);
    assert_eq!(ami.kms_key.as_deref(), Some("alias/kiln"));
    assert!(ami.encrypted);
    assert_eq!(
        ami.regions,
        vec![
            RegionCopy {
                region: "eu-west-1".into(),
                kms_key: None
            },
            RegionCopy {
                region: "us-west-2".into(),
                kms_key: Some("arn:aws:kms:us-west-2:123456789012:key/abcd".into())
            },
        ]
    );
    assert_eq!(ami.sharing.accounts, ["111122223333", "444455556666"]);
    assert_eq!(ami.sharing.orgs.len(), 1);
    assert_eq!(ami.sharing.ous.len(), 1);
    assert_eq!(
        ami.tags,
        vec![
            ("team".to_string(), "web".to_string()),
            ("cost".to_string(), "42".to_string())
        ]
    );

    // only the bucket: kiln's defaults, no name (the build names it)
    let r = parse(&format!("{HEAD}distribution:\n  ami: {{bucket: b-1}}\n")).unwrap();
    let ami = r.distribution.ami.unwrap();
    assert_eq!(ami, kiln::ami::AmiSpec::new("b-1"));
    assert_eq!(ami.format, DiskFormat::Vmdk);
    assert!(!ami.via_snapshot && !ami.keep_upload && !ami.skip_preflight);
    assert!(!ami.encrypted);
    assert!(parse(HEAD).unwrap().distribution.ami.is_none());

    // `encrypted: true` alone: ImportImage Encrypted with the account's default key
    let r = parse(&format!(
        "{HEAD}distribution:\n  ami: {{bucket: b-1, encrypted: true}}\n"
    ))
    .unwrap();
    let ami = r.distribution.ami.unwrap();
    assert!(ami.encrypted && ami.kms_key.is_none());
    let req = kiln::aws::flow::request(
        &ami,
        "disk.qcow2".into(),
        "web-1.0.0",
        "/tmp/w".into(),
        kiln::aws::flow::LocalSettings::default(),
    );
    assert_eq!(req.import.encrypt, Some(None));
}

#[test]
fn invalid_distribution_ami() {
    let cases: Vec<(&str, String, Vec<Expect>)> = vec![
        (
            "every field wrong",
            format!(
                "{HEAD}distribution:
  ami:
    region: us-east
    name: \"a*b\"
    format: qcow2
    shareAccounts: [12345, 111122223333]
    shareOrgs: [o-abc123]
    copyToRegions:
      - {{region: eu-west-1, kms: x}}
      - kmsKey: k
    keepUplaod: true
    viaSnapshot: maybe
    encrypted: yes please
"
            ),
            vec![
                (
                    8,
                    5,
                    "distribution.ami.bucket",
                    "missing-field",
                    "`bucket` is missing in `distribution.ami`",
                ),
                (
                    8,
                    13,
                    "distribution.ami.region",
                    "invalid-region",
                    "`us-east` is not an AWS region name",
                ),
                (
                    9,
                    11,
                    "distribution.ami.name",
                    "invalid-ami-name",
                    "AMI name `a*b` is invalid",
                ),
                (
                    10,
                    13,
                    "distribution.ami.format",
                    "unknown-disk-format",
                    "`qcow2`",
                ),
                (
                    11,
                    21,
                    "distribution.ami.shareAccounts[0]",
                    "invalid-account",
                    "`12345` is not a 12-digit AWS account id",
                ),
                (
                    12,
                    17,
                    "distribution.ami.shareOrgs[0]",
                    "invalid-arn",
                    "`o-abc123` is not an organization ARN",
                ),
                (
                    14,
                    29,
                    "distribution.ami.copyToRegions[0].kms",
                    "unknown-key",
                    "unknown key `kms`",
                ),
                (
                    15,
                    9,
                    "distribution.ami.copyToRegions[1].region",
                    "missing-field",
                    "`region` is missing",
                ),
                (
                    16,
                    5,
                    "distribution.ami.keepUplaod",
                    "unknown-key",
                    "unknown key `keepUplaod`",
                ),
                (
                    17,
                    18,
                    "distribution.ami.viaSnapshot",
                    "wrong-type",
                    "must be true or false",
                ),
                (
                    18,
                    16,
                    "distribution.ami.encrypted",
                    "wrong-type",
                    "must be true or false",
                ),
            ],
        ),
        (
            "ami not a map",
            format!("{HEAD}distribution: {{ami: kiln-images}}\n"),
            vec![(6, 21, "distribution.ami", "wrong-type", "must be a map")],
        ),
        (
            "a region copied twice, a bad OU ARN",
            format!(
                "{HEAD}distribution:
  ami:
    bucket: b
    copyToRegions: [{{region: eu-west-1}}, {{region: eu-west-1}}]
    shareOus: [\"arn:aws:organizations::123456789012:organization/o-abc123def4\"]
"
            ),
            vec![
                (
                    9,
                    42,
                    "distribution.ami.copyToRegions[1]",
                    "duplicate-region",
                    "the region `eu-west-1` is listed twice",
                ),
                (
                    10,
                    16,
                    "distribution.ami.shareOus[0]",
                    "invalid-arn",
                    "is not an organizational unit ARN",
                ),
            ],
        ),
    ];
    for (name, text, expected) in cases {
        println!("case: {name}");
        assert_diags(&errors(&text), FILE, &expected);
    }
    let e = errors(&format!(
        "{HEAD}distribution:\n  ami:\n    bucket: b\n    skipPrefligth: true\n    format: vdmk\n    bootMode: bios\n"
    ));
    assert_eq!(hint_of(&e[0]), "did you mean `skipPreflight`?");
    assert_eq!(hint_of(&e[1]), "did you mean `vmdk`?");
    assert_eq!(hint_of(&e[2]), "supported: legacy-bios, uefi");
    let e = errors(&format!(
        "{HEAD}distribution:\n  ami: {{bucket: b, name: \"x\"}}\n"
    ));
    assert!(
        hint_of(&e[0]).contains("<recipe name>-<version>"),
        "{}",
        e[0]
    );
}

#[test]
fn yaml_level_problems() {
    let cases: Vec<(&str, String, Vec<Expect>)> = vec![
        (
            "duplicate key",
            format!("{HEAD}name: other\n"),
            vec![(6, 1, "name", "duplicate-key", "duplicate key `name`")],
        ),
        (
            "syntax error",
            "name: web\ncomponents: [a, b\n".into(),
            vec![(3, 1, "", "yaml-syntax", "YAML syntax error")],
        ),
        (
            "a list",
            "- name: web\n".into(),
            vec![(1, 1, "", "recipe-shape", "a recipe is a map, found a list")],
        ),
        (
            "empty",
            "# nothing\n".into(),
            vec![(1, 1, "", "recipe-shape", "the recipe is empty")],
        ),
        (
            "two documents",
            format!("{HEAD}---\n{HEAD}"),
            vec![(1, 1, "", "recipe-shape", "several YAML documents")],
        ),
    ];
    for (name, text, expected) in cases {
        println!("case: {name}");
        assert_diags(&errors(&text), FILE, &expected);
    }
}

#[test]
fn every_problem_is_reported_sorted_by_position() {
    let text =
        "components: []\nname: 'a b'\nbuild: {cpus: 0}\nsemanticVersion: 1\nworkingDirectory: x\n";
    assert_diags(
        &errors(text),
        FILE,
        &[
            (
                1,
                1,
                "parentImage",
                "missing-field",
                "`parentImage` is missing",
            ),
            (1, 13, "components", "components-empty", "is empty"),
            (2, 7, "name", "invalid-name", "`a b`"),
            (3, 15, "build.cpus", "invalid-number", "found `0`"),
            (4, 18, "semanticVersion", "invalid-version", "`1`"),
            (5, 19, "workingDirectory", "working-directory", "found `x`"),
        ],
    );
}

/// What `aws imagebuilder get-image-recipe` prints (AWS CLI v2, 4-space
/// indentation), with `parentImage` replaced by `parent`.
fn get_image_recipe_json(parent: &str) -> String {
    r#"{
    "requestId": "0c5e2f4e-7f25-4c4a-9d1c-2b1a0c8e7d11",
    "imageRecipe": {
        "arn": "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/debian-web/1.2.3",
        "type": "AMI",
        "name": "debian-web",
        "description": "Debian 12 with nginx",
        "platform": "Linux",
        "owner": "123456789012",
        "version": "1.2.3",
        "components": [
            {
                "componentArn": "arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x"
            },
            {
                "componentArn": "arn:aws:imagebuilder:us-east-1:aws:component/hello-world-linux/1.0.0/1",
                "parameters": []
            }
        ],
        "parentImage": "PARENT",
        "blockDeviceMappings": [
            {
                "deviceName": "/dev/xvda",
                "ebs": {
                    "encrypted": false,
                    "deleteOnTermination": true,
                    "volumeSize": 12,
                    "volumeType": "gp3",
                    "throughput": 125
                }
            }
        ],
        "dateCreated": "2024-05-02T10:11:12.345Z",
        "tags": {
            "team": "platform"
        },
        "workingDirectory": "/var/tmp",
        "additionalInstanceConfiguration": {
            "systemsManagerAgent": {
                "uninstallAfterBuild": false
            }
        },
        "amiTags": {}
    }
}
"#
    .replace("PARENT", parent)
}

#[test]
fn get_image_recipe_json_is_read() {
    let r = recipe::parse(
        "r.json",
        &get_image_recipe_json("./images/base.qcow2"),
        Path::new("/recipes"),
    )
    .unwrap();
    assert_eq!(r.form, RecipeForm::AwsImageRecipe);
    assert_eq!(r.name, "debian-web");
    assert_eq!(r.version.to_string(), "1.2.3");
    assert_eq!(r.description.as_deref(), Some("Debian 12 with nginx"));
    assert_eq!(
        r.parent,
        ParentImage::File("/recipes/./images/base.qcow2".into())
    );
    let c: Vec<(&ComponentSource, &str, usize, usize)> = r
        .components
        .iter()
        .map(|c| (&c.source, c.field.as_str(), c.line, c.column))
        .collect();
    assert_eq!(
        c,
        [
            (
                &ComponentSource::Builtin("update-linux".into()),
                "imageRecipe.components[0]",
                12,
                13
            ),
            (
                &ComponentSource::Builtin("hello-world-linux".into()),
                "imageRecipe.components[1]",
                15,
                13
            ),
        ]
    );
    assert_eq!(r.root_volume_gib, Some(12));
    assert_eq!(r.working_directory, "/var/tmp");
    // tab-indented JSON (e.g. from jq --tab) reads the same, with columns in characters
    let tabbed = get_image_recipe_json("./images/base.qcow2").replace("    ", "\t");
    let t = recipe::parse("r.json", &tabbed, Path::new("/recipes")).unwrap();
    assert_eq!((t.name.as_str(), t.components.len()), ("debian-web", 2));
    assert_eq!((t.components[1].line, t.components[1].column), (15, 4));
}

#[test]
fn get_image_recipe_json_problems() {
    let e = recipe::parse(
        "r.json",
        &get_image_recipe_json("ami-0abcdef1234567890"),
        Path::new("."),
    )
    .unwrap_err();
    assert_diags(
        &e,
        "r.json",
        &[(
            20,
            24,
            "imageRecipe.parentImage",
            "parent-image",
            "`ami-0abcdef1234567890` is an EC2 AMI id",
        )],
    );
    assert!(
        hint_of(&e[0]).contains("give a local disk file path, {url: …, sha256: …} or {bootstrap:")
    );
    let text = get_image_recipe_json("./b.qcow2")
        .replace("\"Linux\"", "\"Windows\"")
        .replace(
            "aws:component/update-linux/x.x.x",
            "123456789012:component/my-component/1.0.0/1",
        )
        .replace("\"version\": \"1.2.3\"", "\"semanticVersion\": \"1.2.3\"");
    let e = recipe::parse("r.json", &text, Path::new(".")).unwrap_err();
    assert_diags(
        &e,
        "r.json",
        &[
            (
                3,
                20,
                "imageRecipe.version",
                "missing-field",
                "`version` is missing in `imageRecipe`",
            ),
            (
                8,
                21,
                "imageRecipe.platform",
                "recipe-shape",
                "kiln builds Linux image recipes, this one's platform is `Windows`",
            ),
            (
                13,
                33,
                "imageRecipe.components[0].componentArn",
                "unknown-component",
                "account 123456789012",
            ),
        ],
    );
    let e = recipe::parse(
        "r.json",
        "{\"containerRecipe\": {\"name\": \"x\"}}",
        Path::new("."),
    )
    .unwrap_err();
    assert_diags(
        &e,
        "r.json",
        &[(1, 21, "containerRecipe", "recipe-shape", "container recipe")],
    );
}

/// A folder holding a recipe and its component documents.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        f.put(
            "base.qcow2",
            "not really a disk; the recipe only needs the file",
        );
        f.put("components/web.yml", WEB);
        f.put("components/check.yml", CHECK);
        f
    }

    fn put(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

const WEB: &str = r#"name: web
schemaVersion: 1.0
parameters:
  - Greeting:
      type: string
      default: hello
  - Mode:
      type: string
      default: dev
      allowedValues: [dev, prod]
  - Token:
      type: string
phases:
  - name: build
    steps:
      - name: Configure
        action: ExecuteBash
        inputs:
          commands:
            - echo "{{ Greeting }} {{ Mode }}" > /etc/motd
            - echo "{{ Token }}" > /root/token
  - name: test
    steps:
      - name: Check
        action: ExecuteDocument
        inputs:
          document: check.yml
"#;

const CHECK: &str = r#"name: check
schemaVersion: 1.0
phases:
  - name: test
    steps:
      - name: Motd
        action: ExecuteBash
        inputs:
          commands: [cat /etc/motd]
"#;

const GOOD: &str = r#"name: web
semanticVersion: 1.0.0
parentImage: base.qcow2
components:
  - component: update-linux
  - component: components/web.yml
    parameters:
      - name: Mode
        value: [prod]
      - name: Token
        value: [s3cr3t-t0ken]
        secret: true
  - componentArn: arn:aws:imagebuilder:us-east-1:aws:component/simple-boot-test-linux/1.0.0/1
  - component: ./components/check.yml
"#;

#[test]
fn components_resolve_by_name_arn_and_path() {
    let fx = Fixture::new();
    let path = fx.put("recipe.yml", GOOD);
    let r = recipe::load(&path).unwrap();
    assert_eq!(r.dir, fx.dir.path());
    assert_eq!(r.parent, ParentImage::File(fx.path("base.qcow2")));
    let resolved = recipe::resolve_components(&r).unwrap();
    let summary: Vec<(&str, &str, bool)> = resolved
        .iter()
        .map(|c| {
            (
                c.reference.as_str(),
                c.loaded.doc.name.as_deref().unwrap(),
                c.is_test_only,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("update-linux", "update-linux", false),
            ("components/web.yml", "web", false),
            (
                "arn:aws:imagebuilder:us-east-1:aws:component/simple-boot-test-linux/1.0.0/1",
                "simple-boot-test-linux",
                true
            ),
            ("./components/check.yml", "check", true),
        ]
    );
    assert_eq!(resolved[0].loaded.id, "builtin:update-linux");
    let web = &resolved[1];
    assert_eq!(
        web.loaded.id,
        std::fs::canonicalize(fx.path("components/web.yml"))
            .unwrap()
            .display()
            .to_string()
    );
    assert_eq!(web.text_sha256, hex::encode(Sha256::digest(WEB.as_bytes())));
    let params: Vec<(&str, &str)> = web
        .parameters
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        params,
        [
            ("Greeting", "hello"),
            ("Mode", "prod"),
            ("Token", "s3cr3t-t0ken")
        ]
    );
    assert_eq!(web.secrets, ["s3cr3t-t0ken"]);
    assert!(resolved[0].secrets.is_empty());
    let debug = format!("{resolved:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(debug.contains("\"Mode\": \"prod\""), "{debug}");
}

#[test]
fn several_values_are_joined_and_each_secret_item_is_redacted() {
    let fx = Fixture::new();
    let path = fx.put(
        "recipe.yml",
        &GOOD
            .replace("value: [prod]", "value: [dev]")
            .replace("value: [s3cr3t-t0ken]", "value: [part-one, part-two]"),
    );
    let resolved = recipe::resolve_components(&recipe::load(&path).unwrap()).unwrap();
    assert_eq!(resolved[1].parameters["Token"], "part-one,part-two");
    assert_eq!(
        resolved[1].secrets,
        ["part-one", "part-two", "part-one,part-two"]
    );
}

#[test]
fn component_problems_are_reported_where_they_are() {
    let fx = Fixture::new();
    fx.put(
        "components/broken.yml",
        "name: broken\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecuteBsh\n",
    );
    fx.put(
        "components/loop.yml",
        "name: loop\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Again\n        action: ExecuteDocument\n        inputs:\n          document: loop.yml\n",
    );
    let text = r#"name: web
semanticVersion: 1.0.0
parentImage: base.qcow2
components:
  - component: components/missing.yml
  - component: components/web.yml
    parameters:
      - name: Greting
        value: [hi]
      - name: Mode
        value: [staging]
  - component: components/web.yml
    parameters:
      - {name: Token, value: [abc], secret: true}
      - {name: Mode, value: [qa], secret: true}
  - component: components/broken.yml
  - component: components/loop.yml
  - component: hello-world-linux
    parameters:
      - {name: Anything, value: [x]}
"#;
    let path = fx.put("recipe.yml", text);
    let r = recipe::load(&path).unwrap();
    let e = recipe::resolve_components(&r).unwrap_err();
    let file = path.display().to_string();
    assert_diags(
        &e[..6],
        &file,
        &[
            (
                5,
                5,
                "components[0]",
                "component-missing",
                "cannot read document",
            ),
            (
                6,
                5,
                "components[1].parameters",
                "parameter-missing",
                "component `web` needs a value for parameter `Token`, which has no default",
            ),
            (
                8,
                15,
                "components[1].parameters[0].name",
                "unknown-parameter",
                "component `web` has no parameter `Greting`",
            ),
            (
                11,
                16,
                "components[1].parameters[1].value",
                "parameter-not-allowed",
                "`staging` is not an allowed value of parameter `Mode`",
            ),
            (
                15,
                29,
                "components[2].parameters[1].value",
                "parameter-not-allowed",
                "the secret value is not an allowed value of parameter `Mode`",
            ),
            (
                20,
                16,
                "components[5].parameters[0].name",
                "unknown-parameter",
                "component `hello-world-linux` has no parameter `Anything`",
            ),
        ],
    );
    assert!(
        e[0].message
            .contains(&fx.path("components/missing.yml").display().to_string()),
        "{}",
        e[0]
    );
    assert_eq!(hint_of(&e[2]), "did you mean `Greeting`?");
    assert_eq!(hint_of(&e[3]), "allowed: dev, prod");
    assert!(!e[4].message.contains("qa"), "{}", e[4]);
    assert_eq!(hint_of(&e[5]), "it declares no parameters");
    // then the problems inside the component documents, in their own files
    assert_diags(
        &e[6..7],
        &fx.path("components/broken.yml").display().to_string(),
        &[(
            7,
            17,
            "phases[0].steps[0].action",
            "unknown-action",
            "unknown action `ExecuteBsh`",
        )],
    );
    assert_diags(
        &e[7..],
        &fx.path("components/loop.yml").display().to_string(),
        &[(
            9,
            21,
            "build.Again.inputs.document",
            "document-cycle",
            "calls a document that is already running",
        )],
    );
}

#[test]
fn load_resolved_reports_recipe_and_component_problems_together() {
    let fx = Fixture::new();
    let text = GOOD
        .replace("name: web", "name: 'web server'")
        .replace("parentImage: base.qcow2", "parentImage: images/gone.qcow2")
        .replace("value: [prod]", "value: [production]");
    let path = fx.put("recipe.yml", &text);
    let e = match recipe::load_resolved(&path) {
        Err(RecipeError::Invalid(e)) => e,
        other => panic!("{other:?}"),
    };
    assert_diags(
        &e,
        &path.display().to_string(),
        &[
            (1, 7, "name", "invalid-name", "`web server`"),
            (
                3,
                14,
                "parentImage",
                "parent-image",
                "cannot read the parent image",
            ),
            (
                9,
                16,
                "components[1].parameters[0].value",
                "parameter-not-allowed",
                "`production`",
            ),
        ],
    );
    assert!(e[1]
        .message
        .contains(&fx.path("images/gone.qcow2").display().to_string()));
    // a folder is not a parent image
    std::fs::create_dir_all(fx.path("images/gone.qcow2")).unwrap();
    let e = match recipe::load_resolved(&path) {
        Err(RecipeError::Invalid(e)) => e,
        other => panic!("{other:?}"),
    };
    assert!(e[1].message.ends_with("is not a file"), "{}", e[1]);
    // valid: the recipe and its resolved components
    let path = fx.put("good.yml", GOOD);
    let (r, resolved) = recipe::load_resolved(&path).unwrap();
    assert_eq!(r.components.len(), 4);
    assert_eq!(resolved.len(), 4);
}

#[test]
fn load_reports_a_missing_file_with_its_path() {
    let missing = Path::new("/nonexistent/recipe.yml");
    match recipe::load(missing) {
        Err(e @ RecipeError::Io { .. }) => {
            assert_eq!(e.to_string(), "cannot read recipe /nonexistent/recipe.yml");
            assert_eq!(
                kiln::util::display::chain(&e),
                "cannot read recipe /nonexistent/recipe.yml: No such file or directory (os error 2)"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Runs the kiln binary; returns the exit code, stdout and stderr.
fn kiln(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn kiln_validate_prints_a_summary_or_every_problem() {
    let fx = Fixture::new();
    let good = fx.put("recipe.yml", GOOD);
    let good = good.to_str().unwrap();
    let (code, stdout, stderr) = kiln(&["validate", good]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "{good}: valid: web 1.0.0 (parent: file {}; 4 components, 2 test-only)\n",
            fx.path("base.qcow2").display()
        )
    );
    assert_eq!(stderr, "");
    let (code, stdout, _) = kiln(&["validate", "--json", good]);
    assert_eq!((code, stdout.as_str()), (0, "[]\n"));

    let aws = fx.put(
        "recipe.json",
        &get_image_recipe_json("base.qcow2").replace(
            "aws:component/update-linux/x.x.x",
            "aws:component/reboot-test-linux/x.x.x",
        ),
    );
    let (code, stdout, stderr) = kiln(&["validate", aws.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "{}: valid: debian-web 1.2.3 (parent: file {}; 2 components, 1 test-only)\n",
            aws.display(),
            fx.path("base.qcow2").display()
        )
    );
}

#[test]
fn kiln_validate_exits_2_with_every_problem() {
    let fx = Fixture::new();
    let bad = fx.put(
        "recipe.yml",
        &GOOD
            .replace("name: web", "name: -web")
            .replace("value: [prod]", "value: [production]"),
    );
    let bad = bad.to_str().unwrap();
    let (code, stdout, stderr) = kiln(&["validate", bad]);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!(
            "{bad}:1:7: error[invalid-name]: `-web` is not a valid recipe name\n  field: name\n  hint: use 1 to 128 letters, digits, `.`, `_` and `-`, starting with a letter or digit\n\
             {bad}:9:16: error[parameter-not-allowed]: `production` is not an allowed value of parameter `Mode`\n  field: components[1].parameters[0].value\n  hint: allowed: dev, prod\n\
             2 problems found\n"
        )
    );

    let (code, stdout, stderr) = kiln(&["validate", bad, "--json"]);
    assert_eq!(code, 2);
    assert_eq!(stderr, "2 problem(s) found\n");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        json[1],
        serde_json::json!({
            "file": bad,
            "pos": {"line": 9, "column": 16},
            "code": "parameter-not-allowed",
            "field": "components[1].parameters[0].value",
            "message": "`production` is not an allowed value of parameter `Mode`",
            "hint": "allowed: dev, prod",
        })
    );
    assert_eq!(json.as_array().unwrap().len(), 2);

    let (code, stdout, stderr) = kiln(&["validate", "/nonexistent/recipe.yml"]);
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert!(
        stderr.starts_with("error: cannot read recipe /nonexistent/recipe.yml: No such file or directory (os error 2)\n  hint: give the path of a recipe file"),
        "{stderr}"
    );
}
