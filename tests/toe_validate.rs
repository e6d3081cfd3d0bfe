//! Validation of AWSTOE component documents: every invalid document gets its
//! own diagnostic naming file:line:column, the field and (where useful) a
//! hint, and `parse` reports every problem of a document, sorted by position.

use kiln::toe::actions::spec::OsPlatform;
use kiln::toe::document::{parse, Document};
use kiln::util::diag::Diagnostic;
use kiln::util::yaml::{Pos, Value};

const FILE: &str = "c.yml";

/// Removes the common indentation of a raw string literal (and its first
/// newline), so documents can be written indented inside the table.
fn dedent(s: &str) -> String {
    let s = s.strip_prefix('\n').unwrap_or(s);
    let indent = s
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches(' ').len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for l in s.lines() {
        if l.trim().is_empty() {
            out.push('\n');
        } else {
            out.push_str(&l[indent..]);
            out.push('\n');
        }
    }
    // the closing `"#` line leaves one blank line at the end
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn check(text: &str, os: OsPlatform) -> Result<Document, Vec<Diagnostic>> {
    parse(FILE, text, os)
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match check(text, OsPlatform::Linux) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e,
    }
}

fn valid(text: &str) -> Document {
    valid_on(text, OsPlatform::Linux)
}

fn valid_on(text: &str, os: OsPlatform) -> Document {
    match check(text, os) {
        Ok(d) => d,
        Err(e) => panic!(
            "expected a valid document:\n{text}\ngot:\n{}",
            e.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// One invalid document and the diagnostic it must produce.
struct Case {
    name: &'static str,
    text: String,
    os: OsPlatform,
    code: &'static str,
    line: usize,
    column: usize,
    field: &'static str,
    message: &'static str,
    /// `Some("")`: a hint must exist; `Some(s)`: it must contain `s`.
    hint: Option<&'static str>,
    /// How many diagnostics the document yields in total.
    count: usize,
}

fn case(
    name: &'static str,
    text: &str,
    code: &'static str,
    (line, column): (usize, usize),
    field: &'static str,
    message: &'static str,
) -> Case {
    Case {
        name,
        text: dedent(text),
        os: OsPlatform::Linux,
        code,
        line,
        column,
        field,
        message,
        hint: None,
        count: 1,
    }
}

impl Case {
    fn hint(mut self, h: &'static str) -> Case {
        self.hint = Some(h);
        self
    }
    fn windows(mut self) -> Case {
        self.os = OsPlatform::Windows;
        self
    }
    fn raw(mut self, text: String) -> Case {
        self.text = text;
        self
    }

    /// What is wrong with the diagnostics, if anything.
    fn verify(&self) -> Option<String> {
        let diags = match check(&self.text, self.os) {
            Ok(_) => return Some("no error at all".into()),
            Err(e) => e,
        };
        let render = || {
            diags
                .iter()
                .map(|d| format!("    {}", d.to_string().replace('\n', "\n    ")))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let Some(d) = diags.iter().find(|d| d.code == self.code) else {
            return Some(format!("no `{}` diagnostic; got:\n{}", self.code, render()));
        };
        let mut problems = Vec::new();
        if d.file != FILE {
            problems.push(format!("file {}", d.file));
        }
        if (d.pos.line, d.pos.column) != (self.line, self.column) {
            problems.push(format!(
                "position {}:{} (expected {}:{})",
                d.pos.line, d.pos.column, self.line, self.column
            ));
        }
        if d.field != self.field {
            problems.push(format!("field `{}` (expected `{}`)", d.field, self.field));
        }
        if !d.message.contains(self.message) {
            problems.push(format!("message `{}` lacks `{}`", d.message, self.message));
        }
        match (self.hint, &d.hint) {
            (Some(_), None) => problems.push("no hint".into()),
            (Some(h), Some(got)) if !got.contains(h) => {
                problems.push(format!("hint `{got}` lacks `{h}`"))
            }
            _ => {}
        }
        if diags.len() != self.count {
            problems.push(format!(
                "{} diagnostics (expected {})",
                diags.len(),
                self.count
            ));
        }
        if problems.is_empty() {
            None
        } else {
            Some(format!("{}; got:\n{}", problems.join(", "), render()))
        }
    }
}

/// A valid phases block, lines 2-8 when it follows one top-level line.
const PHASES: &str = "phases:
  - name: build
    steps:
      - name: S
        action: ExecuteBash
        inputs:
          commands: [echo hi]
";

fn with_top(top: &str) -> String {
    format!("{top}{PHASES}")
}

#[allow(clippy::too_many_lines)]
fn cases() -> Vec<Case> {
    vec![
        // ---- YAML level ---------------------------------------------------
        case("yaml syntax: `: ` inside a plain value", r#"
            schemaVersion: 1.0
            name: a: b
            phases: []
            "#, "yaml-syntax", (2, 8), "", "mapping values are not allowed")
            .hint("quote"),
        case("yaml syntax: tab indentation", "", "yaml-syntax", (3, 1), "", "tab")
            .raw("schemaVersion: 1.0\nphases:\n\t- name: build\n".into())
            .hint("spaces"),
        case("yaml syntax: unclosed flow list", r#"
            schemaVersion: 1.0
            phases: [
            "#, "yaml-syntax", (3, 1), "", "YAML syntax error")
            .hint(""),
        case("yaml: unquoted `{{ }}` at the start of a list item", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands:
                        - {{ Greeting }}
            "#, "yaml-syntax", (9, 15), "phases[0].steps[0].inputs.commands[0]", "read as a YAML map")
            .hint("'{{ Greeting }}'"),
        case("yaml: duplicate key", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    action: ExecuteBinary
                    inputs:
                      commands: [echo hi]
            "#, "duplicate-key", (7, 9), "phases[0].steps[0].action", "duplicate key `action`")
            .hint("line 6"),
        case("document is a list", r#"
            - name: build
            - name: test
            "#, "document-shape", (1, 1), "", "found a list")
            .hint("schemaVersion"),
        case("document is a scalar", "hello world\n", "document-shape", (1, 1), "", "found a scalar")
            .hint("schemaVersion"),
        case("document is empty", "# nothing here\n", "document-shape", (1, 1), "", "empty")
            .hint("schemaVersion"),
        // ---- top level ----------------------------------------------------
        case("unknown top-level key", "", "unknown-key", (2, 1), "descripton", "unknown top-level key `descripton`")
            .raw(format!("schemaVersion: 1.0\ndescripton: x\n{PHASES}"))
            .hint("did you mean `description`?"),
        case("schemaVersion missing", "", "schema-version", (1, 1), "schemaVersion", "`schemaVersion` is missing")
            .raw(with_top("name: x\n"))
            .hint("schemaVersion: 1.0"),
        case("schemaVersion unsupported", "", "schema-version", (1, 16), "schemaVersion", "unsupported schemaVersion `2.0`")
            .raw(with_top("schemaVersion: 2.0\n"))
            .hint("1.0"),
        case("name is not a string", "", "wrong-type", (1, 7), "name", "`name` must be a string")
            .raw(format!("name: [a]\nschemaVersion: 1.0\n{PHASES}")),
        case("phases missing", "schemaVersion: 1.0\n", "phases-missing", (1, 1), "phases", "`phases` is missing")
            .hint("build"),
        case("phases empty", "schemaVersion: 1.0\nphases: []\n", "phases-missing", (2, 9), "phases", "`phases` is empty")
            .hint("build"),
        case("phases is a map", r#"
            schemaVersion: 1.0
            phases:
              build:
                steps: []
            "#, "wrong-type", (3, 3), "phases", "`phases` must be a list")
            .hint("- name: build"),
        case("no build, validate or test phase", r#"
            schemaVersion: 1.0
            phases:
              - name: biuld
                steps:
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands: [echo hi]
            "#, "phases-missing", (3, 3), "phases", "none of the phases build, validate or test")
            .hint("did you mean `build`?"),
        // ---- phases -------------------------------------------------------
        case("phase without name", r#"
            schemaVersion: 1.0
            phases:
              - steps:
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands: [echo hi]
            "#, "phase-name", (3, 5), "phases[0].name", "the phase has no `name`")
            .hint("name: build"),
        case("phase without steps", r#"
            schemaVersion: 1.0
            phases:
              - name: build
            "#, "steps-missing", (3, 5), "phases[0].steps", "phase `build` has no `steps`")
            .hint("steps:"),
        case("steps is not a list", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps: echo hi
            "#, "wrong-type", (4, 12), "phases[0].steps", "`steps` must be a list, found a scalar")
            .hint("- name:"),
        case("phase is not a map", r#"
            schemaVersion: 1.0
            phases:
              - build
            "#, "wrong-type", (3, 5), "phases[0]", "a phase is a map with `name` and `steps`")
            .hint("name: build"),
        case("unknown phase field", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                stepz: []
                steps:
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands: [echo hi]
            "#, "unknown-field", (4, 5), "phases[0].stepz", "unknown field `stepz`")
            .hint("did you mean `steps`?"),
        case("duplicate phase", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - {name: A, action: ExecuteBash, inputs: {commands: [a]}}
              - name: build
                steps:
                  - {name: B, action: ExecuteBash, inputs: {commands: [b]}}
            "#, "duplicate-phase", (6, 11), "phases[1].name", "phase `build` is declared twice")
            .hint("line 3"),
        // ---- steps --------------------------------------------------------
        case("step is not a map", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - ExecuteBash
            "#, "wrong-type", (5, 9), "phases[0].steps[0]", "a step is a map")
            .hint("action:"),
        case("unknown step field", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    onfailure: Continue
                    inputs:
                      commands: [echo hi]
            "#, "unknown-step-field", (7, 9), "phases[0].steps[0].onfailure", "unknown step field `onfailure`")
            .hint("did you mean `onFailure`?"),
        case("step without name", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - action: ExecuteBash
                    inputs:
                      commands: [echo hi]
            "#, "step-name", (5, 9), "phases[0].steps[0].name", "the step has no `name`")
            .hint("name:"),
        case("step without action", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    inputs:
                      commands: [echo hi]
            "#, "step-action", (5, 9), "phases[0].steps[0].action", "step `S` has no `action`")
            .hint("ExecuteBash"),
        case("unknown action", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBsh
                    inputs:
                      commands: [echo hi]
            "#, "unknown-action", (6, 17), "phases[0].steps[0].action", "unknown action `ExecuteBsh`")
            .hint("did you mean `ExecuteBash`?"),
        case("action names are case-sensitive", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: executebash
                    inputs:
                      commands: [echo hi]
            "#, "unknown-action", (6, 17), "phases[0].steps[0].action", "unknown action `executebash`")
            .hint("did you mean `ExecuteBash`?"),
        case("ExecutePowerShell on Linux", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecutePowerShell
                    inputs:
                      commands: [Write-Host hi]
            "#, "platform-action", (6, 17), "phases[0].steps[0].action", "`ExecutePowerShell` is a Windows-only action")
            .hint("ExecuteBash"),
        case("SetRegistry on Linux", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: SetRegistry
                    inputs:
                      - path: HKLM:\Software\Kiln
                        name: Version
                        value: 1
                        type: DWORD
            "#, "platform-action", (6, 17), "phases[0].steps[0].action", "`SetRegistry` is a Windows-only action")
            .hint(""),
        case("InstallMSI on Linux", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: InstallMSI
                    inputs:
                      path: C:\setup.msi
            "#, "platform-action", (6, 17), "phases[0].steps[0].action", "`InstallMSI` is a Windows-only action")
            .hint(""),
        case("ExecuteBash on Windows", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands: [echo hi]
            "#, "platform-action", (6, 17), "phases[0].steps[0].action", "`ExecuteBash` is a Linux-only action and cannot run on Windows")
            .hint("ExecutePowerShell")
            .windows(),
        case("SetFilePermissions on Windows", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: SetFilePermissions
                    inputs:
                      - path: C:\x
                        permissions: 0644
            "#, "platform-action", (6, 17), "phases[0].steps[0].action", "`SetFilePermissions` is a Linux-only action")
            .hint("")
            .windows(),
        case("CreateFile permissions on Windows", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: CreateFile
                    inputs:
                      - path: C:\x.txt
                        permissions: 0644
            "#, "input-platform", (9, 13), "phases[0].steps[0].inputs[0].permissions", "`permissions` is not supported on Windows")
            .hint("")
            .windows(),
        // ---- inputs -------------------------------------------------------
        case("inputs missing", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
            "#, "inputs-missing", (5, 9), "phases[0].steps[0].inputs", "`ExecuteBash` needs `inputs`")
            .hint("commands (required)"),
        case("map given to a list action", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: CreateFolder
                    inputs:
                      path: /opt/app
            "#, "inputs-shape", (8, 11), "phases[0].steps[0].inputs", "`CreateFolder` takes a list of input maps, found a map")
            .hint("`- `"),
        case("list given to a map action", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    inputs:
                      - commands: [echo hi]
            "#, "inputs-shape", (8, 11), "phases[0].steps[0].inputs", "`ExecuteBash` takes a map of inputs, found a list")
            .hint("remove the leading `-`"),
        case("empty input list", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: DeleteFile
                    inputs: []
            "#, "inputs-shape", (7, 17), "phases[0].steps[0].inputs", "empty list of inputs")
            .hint("path (required)"),
        case("list input item is not a map", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: DeleteFile
                    inputs:
                      - /tmp/x
            "#, "inputs-shape", (8, 13), "phases[0].steps[0].inputs[0]", "each input of `DeleteFile` is a map, found a scalar")
            .hint("path:"),
        case("missing required input", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: CreateFile
                    inputs:
                      - content: hi
            "#, "input-missing", (8, 13), "phases[0].steps[0].inputs[0].path", "`CreateFile` needs the input `path`")
            .hint("path (required)"),
        case("unknown input field", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: CopyFile
                    inputs:
                      - source: /a
                        destination: /b
                        overwite: false
            "#, "unknown-input", (10, 13), "phases[0].steps[0].inputs[0].overwite", "`CopyFile` has no input `overwite`")
            .hint("did you mean `overwrite`?"),
        case("unknown input field, far from any name", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBinary
                    inputs:
                      path: /usr/bin/env
                      args: [a]
            "#, "unknown-input", (9, 11), "phases[0].steps[0].inputs.args", "`ExecuteBinary` has no input `args`")
            .hint("arguments"),
        case("bool input `overwrite: maybe`", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: CopyFile
                    inputs:
                      - source: /a
                        destination: /b
                        overwrite: maybe
            "#, "input-type", (10, 24), "phases[0].steps[0].inputs[0].overwrite", "`overwrite` must be true or false, found `maybe`")
            .hint("true"),
        case("list input given a string", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands: echo hi
            "#, "input-type", (8, 21), "phases[0].steps[0].inputs.commands", "must be a list of strings, found a scalar")
            .hint("- echo hi"),
        case("int input `delaySeconds: soon`", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: Reboot
                    inputs:
                      delaySeconds: soon
            "#, "input-type", (8, 25), "phases[0].steps[0].inputs.delaySeconds", "`delaySeconds` must be an integer, found `soon`"),
        case("list item that YAML reads as a map", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands:
                        - echo key: value
            "#, "input-type", (9, 15), "phases[0].steps[0].inputs.commands[0]", "items of `commands` must be strings, found a map")
            .hint("quote"),
        case("list item that is a list", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBinary
                    inputs:
                      path: /bin/true
                      arguments: [[a, b]]
            "#, "input-type", (9, 23), "phases[0].steps[0].inputs.arguments[0]", "items of `arguments` must be strings, found a list"),
        case("map input given a string", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: InstallMSI
                    inputs:
                      path: C:\a.msi
                      properties: FOO=1
            "#, "input-type", (9, 23), "phases[0].steps[0].inputs.properties", "must be a map")
            .windows(),
        case("encoding not in the list", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: CreateFile
                    inputs:
                      - path: /tmp/a
                        encoding: latin1
            "#, "input-value", (9, 23), "phases[0].steps[0].inputs[0].encoding", "`latin1` is not a valid `encoding`")
            .hint("utf-16-LE"),
        case("algorithm not in the list", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: WebDownload
                    inputs:
                      - source: https://example.com/a.tgz
                        destination: /tmp/a.tgz
                        checksum: abc
                        algorithm: SHA-256
            "#, "input-value", (11, 24), "phases[0].steps[0].inputs[0].algorithm", "`SHA-256` is not a valid `algorithm`")
            .hint("SHA256"),
        case("SetRegistry type not in the list", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: SetRegistry
                    inputs:
                      - path: HKLM:\Software\Kiln
                        name: Version
                        value: 1
                        type: STRING
            "#, "input-value", (11, 19), "phases[0].steps[0].inputs[0].type", "`STRING` is not a valid `type`")
            .hint("EXPAND_SZ")
            .windows(),
        case("MSI reboot not in the list", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: InstallMSI
                    inputs:
                      path: C:\setup.msi
                      reboot: Never
            "#, "input-value", (9, 19), "phases[0].steps[0].inputs.reboot", "`Never` is not a valid `reboot`")
            .hint("Allow, Force, Skip")
            .windows(),
        case("permissions not octal", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: CreateFolder
                    inputs:
                      - path: /opt/app
                        permissions: 999
            "#, "input-value", (9, 26), "phases[0].steps[0].inputs[0].permissions", "permissions `999` is not an octal mode")
            .hint("0755"),
        case("ExecutePowerShell with commands and file", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecutePowerShell
                    inputs:
                      commands: [Write-Host hi]
                      file: C:\a.ps1
            "#, "input-missing", (8, 11), "phases[0].steps[0].inputs", "exactly one of `commands` or `file`")
            .hint("")
            .windows(),
        case("Assert with a comparison that lacks `value`", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: Assert
                    inputs:
                      stringEquals: ok
            "#, "condition-value-missing", (8, 11), "phases[0].steps[0].inputs", "`stringEquals` needs a `value`")
            .hint("value:"),
        case("Assert with `then` in its inputs", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: Assert
                    inputs:
                      fileExists: /etc/hosts
                      then: Skip
            "#, "unknown-operator", (9, 11), "phases[0].steps[0].inputs.then", "`then` belongs to a step's `if`")
            .hint("if:"),
        case("Assert with list inputs", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: Assert
                    inputs:
                      - fileExists: /etc/hosts
            "#, "condition-shape", (8, 11), "phases[0].steps[0].inputs", "a condition must be a map with one operator, found a list")
            .hint(""),
        // ---- step settings ------------------------------------------------
        case("timeoutSeconds 0", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    timeoutSeconds: 0
                    inputs:
                      commands: [echo hi]
            "#, "timeout-value", (7, 25), "phases[0].steps[0].timeoutSeconds", "`timeoutSeconds: 0` is invalid")
            .hint("-1"),
        case("timeoutSeconds -5", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    timeoutSeconds: -5
                    inputs:
                      commands: [echo hi]
            "#, "timeout-value", (7, 25), "phases[0].steps[0].timeoutSeconds", "`timeoutSeconds: -5` is invalid")
            .hint("-1"),
        case("timeoutSeconds not a number", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    timeoutSeconds: 1h
                    inputs:
                      commands: [echo hi]
            "#, "wrong-type", (7, 25), "phases[0].steps[0].timeoutSeconds", "`timeoutSeconds` must be an integer, found `1h`")
            .hint("3600"),
        case("maxAttempts 0", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    maxAttempts: 0
                    inputs:
                      commands: [echo hi]
            "#, "attempts-value", (7, 22), "phases[0].steps[0].maxAttempts", "`maxAttempts: 0` is invalid")
            .hint("at least 1"),
        case("ExecuteDocument with timeoutSeconds 60", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteDocument
                    timeoutSeconds: 60
                    inputs:
                      document: child.yml
            "#, "execute-document-limits", (7, 25), "phases[0].steps[0].timeoutSeconds", "`timeoutSeconds` must be -1 or left out")
            .hint("remove"),
        case("ExecuteDocument with maxAttempts 3", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteDocument
                    maxAttempts: 3
                    inputs:
                      document: child.yml
            "#, "execute-document-limits", (7, 22), "phases[0].steps[0].maxAttempts", "`maxAttempts` must be 1 or left out")
            .hint("remove"),
        case("Reboot with timeoutSeconds", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: Reboot
                    timeoutSeconds: 60
            "#, "reboot-timeout", (7, 25), "phases[0].steps[0].timeoutSeconds", "`timeoutSeconds` does not apply to Reboot")
            .hint("delaySeconds"),
        case("onFailure Stop", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    onFailure: Stop
                    inputs:
                      commands: [echo hi]
            "#, "on-failure", (7, 20), "phases[0].steps[0].onFailure", "`onFailure` must be Abort, Continue or Ignore, found `Stop`")
            .hint("Abort"),
        case("disableLogging not a bool", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    disableLogging: maybe
                    inputs:
                      commands: [echo hi]
            "#, "wrong-type", (7, 25), "phases[0].steps[0].disableLogging", "`disableLogging` must be true or false"),
        case("duplicate step name in a phase", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands: [a]
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands: [b]
            "#, "duplicate-step", (9, 15), "phases[0].steps[1].name", "step `S` appears twice in phase `build`")
            .hint("line 5"),
        // ---- parameters and constants -------------------------------------
        case("duplicate parameter", r#"
            schemaVersion: 1.0
            parameters:
              - Version:
                  type: string
              - Version:
                  type: string
            "#, "duplicate-variable", (5, 5), "parameters.Version", "`Version` is declared twice")
            .raw(with_top(&dedent(r#"
            schemaVersion: 1.0
            parameters:
              - Version:
                  type: string
              - Version:
                  type: string
            "#)))
            .hint("line 3"),
        case("same name as parameter and constant", "", "duplicate-variable", (6, 5), "constants.Version", "`Version` is declared twice")
            .raw(with_top(&dedent(r#"
            schemaVersion: 1.0
            parameters:
              - Version:
                  type: string
            constants:
              - Version:
                  type: string
                  value: "1"
            "#)))
            .hint("parameters and constants"),
        case("parameter name too short", "", "variable-name", (3, 5), "parameters.ab", "invalid name `ab`")
            .raw(with_top("schemaVersion: 1.0\nparameters:\n  - ab:\n      type: string\n"))
            .hint("3 to 128"),
        case("parameter name too long", "", "variable-name", (3, 5), Box::leak(format!("parameters.{}", "a".repeat(129)).into_boxed_str()), "it has 129 characters")
            .raw(with_top(&format!(
                "schemaVersion: 1.0\nparameters:\n  - {}:\n      type: string\n",
                "a".repeat(129)
            )))
            .hint("3 to 128"),
        case("parameter name with bad characters", "", "variable-name", (3, 5), "parameters.my.param", "invalid name `my.param`")
            .raw(with_top("schemaVersion: 1.0\nparameters:\n  - my.param:\n      type: string\n"))
            .hint("`_` and `-`"),
        case("parameter of type int", "", "variable-type", (4, 13), "parameters.Count.type", "unsupported type `int`")
            .raw(with_top("schemaVersion: 1.0\nparameters:\n  - Count:\n      type: int\n"))
            .hint("`string`"),
        case("parameter without type", "", "variable-type", (4, 7), "parameters.Count.type", "`type` is missing")
            .raw(with_top("schemaVersion: 1.0\nparameters:\n  - Count:\n      default: \"3\"\n"))
            .hint("type: string"),
        case("parameter default that is a list", "", "wrong-type", (5, 16), "parameters.Pkgs.default", "`default` must be a string")
            .raw(with_top("schemaVersion: 1.0\nparameters:\n  - Pkgs:\n      type: string\n      default: [a, b]\n"))
            .hint(""),
        case("constant without value", "", "constant-value", (4, 7), "constants.Dir.value", "constant `Dir` needs a `value`")
            .raw(with_top("schemaVersion: 1.0\nconstants:\n  - Dir:\n      type: string\n"))
            .hint("value:"),
        case("workflow-style parameter", "", "variable-shape", (3, 5), "parameters[0]", "each item of `parameters` is a map with one key")
            .raw(with_top("schemaVersion: 1.0\nparameters:\n  - name: Version\n    type: string\n    default: \"1\"\n"))
            .hint("workflow"),
        case("workflow-style parameter, name only", "", "variable-shape", (3, 5), "parameters[0]", "`name: Version`")
            .raw(with_top("schemaVersion: 1.0\nparameters:\n  - name: Version\n"))
            .hint("workflow"),
        case("parameters is a map", "", "wrong-type", (3, 3), "parameters", "`parameters` must be a list")
            .raw(with_top("schemaVersion: 1.0\nparameters:\n  Version:\n    type: string\n"))
            .hint("- MyName:"),
        // ---- loops --------------------------------------------------------
        case("loop updateBy 0", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    loop:
                      for:
                        start: 1
                        end: 5
                        updateBy: 0
                    inputs:
                      commands: [echo]
            "#, "loop-update-zero", (11, 23), "phases[0].steps[0].loop.for.updateBy", "`updateBy` is 0")
            .hint("updateBy: 1"),
        case("loop moving away from end", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    loop:
                      for:
                        start: 5
                        end: 1
                        updateBy: 1
                    inputs:
                      commands: [echo]
            "#, "loop-direction", (11, 23), "phases[0].steps[0].loop.for.updateBy", "moves away from `end: 1`")
            .hint("updateBy: -1"),
        case("loop bound not an integer", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    loop:
                      for:
                        start: one
                        end: 5
                        updateBy: 1
                    inputs:
                      commands: [echo]
            "#, "loop-for", (9, 20), "phases[0].steps[0].loop.for.start", "`start` must be an integer, found `one`"),
        case("loop bound with an expression", r#"
            schemaVersion: 1.0
            parameters:
              - Count:
                  type: string
                  default: "3"
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    loop:
                      for:
                        start: 1
                        end: "{{ Count }}"
                        updateBy: 1
                    inputs:
                      commands: [echo]
            "#, "loop-for", (14, 18), "phases[0].steps[0].loop.for.end", "`end` cannot hold an expression")
            .hint("forEach"),
        case("loop `for` missing updateBy", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    loop:
                      for:
                        start: 1
                        end: 3
                    inputs:
                      commands: [echo]
            "#, "loop-for", (9, 13), "phases[0].steps[0].loop.for.updateBy", "`for` needs `updateBy`")
            .hint("updateBy"),
        case("loop delimiter of two characters", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    loop:
                      forEach:
                        list: a,,b
                        delimiter: ",,"
                    inputs:
                      commands: [echo]
            "#, "loop-delimiter", (10, 24), "phases[0].steps[0].loop.forEach.delimiter", "`delimiter` must be one character")
            .hint(""),
        case("loop delimiter not allowed", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    loop:
                      forEach:
                        list: a|b
                        delimiter: "|"
                    inputs:
                      commands: [echo]
            "#, "loop-delimiter", (10, 24), "phases[0].steps[0].loop.forEach.delimiter", "found \"|\"")
            .hint(""),
        case("loop with both for and forEach", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    loop:
                      for: {start: 1, end: 2, updateBy: 1}
                      forEach: [a, b]
                    inputs:
                      commands: [echo]
            "#, "loop-shape", (9, 11), "phases[0].steps[0].loop.forEach", "both `for` and `forEach`")
            .hint("one loop"),
        case("loop with neither for nor forEach", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    loop:
                      name: myLoop
                    inputs:
                      commands: [echo]
            "#, "loop-shape", (8, 11), "phases[0].steps[0].loop", "needs `for` or `forEach`")
            .hint("forEach"),
        case("unknown loop field", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    loop:
                      foreach: [a, b]
                    inputs:
                      commands: [echo]
            "#, "loop-shape", (8, 11), "phases[0].steps[0].loop.foreach", "unknown loop field `foreach`")
            .hint("did you mean `forEach`?"),
        case("forEach item that is a map", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    loop:
                      forEach:
                        - a
                        - key: b
                    inputs:
                      commands: [echo]
            "#, "loop-foreach", (10, 15), "phases[0].steps[0].loop.forEach[1]", "loops iterate strings; this item is a map")
            .hint("quote"),
        case("duplicate loop name in a phase", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: A
                    action: ExecuteBash
                    loop: {name: items, forEach: [a]}
                    inputs: {commands: [echo]}
                  - name: B
                    action: ExecuteBash
                    loop: {name: items, forEach: [b]}
                    inputs: {commands: [echo]}
            "#, "duplicate-loop", (11, 22), "phases[0].steps[1].loop.name", "loop name `items` is used twice in phase `build`")
            .hint("line 7"),
        // ---- if -----------------------------------------------------------
        case("if is not a map", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    if: true
                    inputs:
                      commands: [echo]
            "#, "if-shape", (7, 13), "phases[0].steps[0].if", "`if` must be a map, found a scalar")
            .hint("fileExists"),
        case("if without operator", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    if:
                      then: Skip
                    inputs:
                      commands: [echo]
            "#, "condition-operators", (8, 11), "phases[0].steps[0].if", "found none")
            .hint("stringEquals"),
        case("if with two operators", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    if:
                      fileExists: /a
                      folderExists: /b
                    inputs:
                      commands: [echo]
            "#, "condition-operators", (9, 11), "phases[0].steps[0].if.folderExists", "found `fileExists` and `folderExists`")
            .hint("and:"),
        case("if with an unknown operator", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    if:
                      stringEqual: a
                      value: b
                    inputs:
                      commands: [echo]
            "#, "unknown-operator", (8, 11), "phases[0].steps[0].if.stringEqual", "unknown condition operator or field `stringEqual`")
            .hint("did you mean `stringEquals`?"),
        case("binary operator without value", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    if:
                      numberGreaterThan: 3
                    inputs:
                      commands: [echo]
            "#, "condition-value-missing", (8, 11), "phases[0].steps[0].if", "`numberGreaterThan` needs a `value`")
            .hint("value:"),
        case("and with one item", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    if:
                      and:
                        - fileExists: /a
                    inputs:
                      commands: [echo]
            "#, "condition-shape", (9, 13), "phases[0].steps[0].if.and", "`and` needs at least two conditions, found 1")
            .hint("single condition"),
        case("not given a list", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    if:
                      not:
                        - fileExists: /a
                    inputs:
                      commands: [echo]
            "#, "condition-shape", (9, 13), "phases[0].steps[0].if.not", "`not` takes one condition")
            .hint("without the `-`"),
        case("logical nesting deeper than 4 levels", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    if:
                      not:
                        not:
                          not:
                            not:
                              not:
                                fileExists: /a
                    inputs:
                      commands: [echo]
            "#, "condition-nesting", (12, 19), "phases[0].steps[0].if.not.not.not.not.not", "5 levels deep; at most 4")
            .hint(""),
        case("then with an unknown step action", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    if:
                      fileExists: /a
                      then: Run
                    inputs:
                      commands: [echo]
            "#, "if-step-action", (9, 17), "phases[0].steps[0].if.then", "`then` must be Execute, Skip or Abort, found `Run`")
            .hint("Execute"),
        case("else with a near miss", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    if:
                      fileExists: /a
                      else: abort
                    inputs:
                      commands: [echo]
            "#, "if-step-action", (9, 17), "phases[0].steps[0].if.else", "found `abort`")
            .hint("did you mean `Abort`?"),
        case("invalid regex in patternMatches", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    if:
                      patternMatches: '[a-'
                      value: abc
                    inputs:
                      commands: [echo]
            "#, "bad-pattern", (8, 27), "phases[0].steps[0].if.patternMatches", "invalid regular expression")
            .hint(""),
        // ---- expressions --------------------------------------------------
        case("undeclared parameter, near a declared one", r#"
            schemaVersion: 1.0
            parameters:
              - Version:
                  type: string
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands:
                        - echo {{ Verison }}
            "#, "undeclared-variable", (12, 20), "phases[0].steps[0].inputs.commands[0]", "`{{ Verison }}` refers to no parameter or constant")
            .hint("did you mean `Version`?"),
        case("undeclared parameter", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands:
                        - echo {{ Region }}
            "#, "undeclared-variable", (9, 20), "phases[0].steps[0].inputs.commands[0]", "`{{ Region }}` refers to no parameter or constant")
            .hint("parameters:"),
        case("undeclared parameter in an if", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    if:
                      stringEquals: yes
                      value: "{{ Enabled }}"
                    inputs:
                      commands: [echo]
            "#, "undeclared-variable", (9, 19), "phases[0].steps[0].if.value", "`{{ Enabled }}`")
            .hint("parameters:"),
        case("undeclared parameter in a forEach item", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    loop:
                      forEach:
                        - "{{ Pkg }}"
                    inputs:
                      commands: [echo]
            "#, "undeclared-variable", (9, 16), "phases[0].steps[0].loop.forEach[0]", "`{{ Pkg }}`")
            .hint("parameters:"),
        case("another step's named loop", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: A
                    action: ExecuteBash
                    loop: {name: pkgs, forEach: [a, b]}
                    inputs: {commands: ["echo {{ pkgs.value }}"]}
                  - name: B
                    action: ExecuteBash
                    inputs:
                      commands: ["echo {{ pkgs.value }}"]
            "#, "undeclared-loop", (12, 28), "phases[0].steps[1].inputs.commands[0]", "`{{ pkgs.value }}` refers to no loop of this step")
            .hint("another step's loop"),
        case("chaining to a missing phase", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands: ["echo {{ biuld.S.outputs.stdout }}"]
            "#, "chain-missing-phase", (8, 28), "phases[0].steps[0].inputs.commands[0]", "there is no phase `biuld`")
            .hint("did you mean `build`?"),
        case("chaining to a missing step", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: Fetch
                    action: ExecuteBash
                    inputs: {commands: [echo a]}
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands: ["echo {{ build.Fetc.outputs.stdout }}"]
            "#, "chain-missing-step", (11, 28), "phases[0].steps[1].inputs.commands[0]", "phase `build` has no step `Fetc`")
            .hint("did you mean `Fetch`?"),
        case("chaining to a later step", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands: ["echo {{ build.Later.outputs.stdout }}"]
                  - name: Later
                    action: ExecuteBash
                    inputs: {commands: [echo a]}
            "#, "chain-forward", (8, 28), "phases[0].steps[0].inputs.commands[0]", "refers to a step that has not run yet")
            .hint("before"),
        case("chaining to an unknown output", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: Get
                    action: ExecuteBash
                    inputs: {commands: [echo a]}
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands: ["echo {{ build.Get.outputs.stdot }}"]
            "#, "chain-missing-field", (11, 28), "phases[0].steps[1].inputs.commands[0]", "`Get` (ExecuteBash) has no output `stdot`")
            .hint("did you mean `stdout`?"),
        case("chaining to an unknown input", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: Get
                    action: WebDownload
                    inputs:
                      - source: https://example.com/a
                        destination: /tmp/a
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands: ["cat {{ build.Get.inputs[0].destinaton }}"]
            "#, "chain-missing-field", (13, 27), "phases[0].steps[1].inputs.commands[0]", "has no input `destinaton`")
            .hint("did you mean `destination`?"),
        case("chaining to an input index out of range", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: Get
                    action: WebDownload
                    inputs:
                      - source: https://example.com/a
                        destination: /tmp/a
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands: ["cat {{ build.Get.inputs[1].destination }}"]
            "#, "chain-missing-field", (13, 27), "phases[0].steps[1].inputs.commands[0]", "has no inputs[1]")
            .hint("inputs[0]"),
        case("aws:ssm:resolve", r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: S
                    action: ExecuteBash
                    inputs:
                      commands: ["echo {{ aws:ssm:resolve(/my/param) }}"]
            "#, "unsupported-expression", (8, 28), "phases[0].steps[0].inputs.commands[0]", "aws:ssm:resolve(/my/param)")
            .hint("parameter"),
    ]
}

#[test]
fn every_invalid_document_gets_its_own_diagnostic() {
    let cases = cases();
    let mut names = std::collections::HashSet::new();
    let mut texts = std::collections::HashSet::new();
    for c in &cases {
        assert!(names.insert(c.name), "duplicate case name {}", c.name);
        assert!(
            texts.insert((c.text.clone(), c.os == OsPlatform::Windows)),
            "duplicate document in {}",
            c.name
        );
    }
    assert!(cases.len() >= 50, "only {} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| c.verify().map(|p| format!("[{}] {p}\n{}", c.name, c.text)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_error_of_a_document_is_reported_sorted_by_position() {
    let text = dedent(
        r#"
        schemaVersion: 1.0
        descripton: typo
        parameters:
          - ab:
              type: string
        phases:
          - name: build
            steps:
              - name: Install
                action: ExecuteBsh
                inputs:
                  commands: [echo hi]
              - name: Write
                action: CreateFile
                onfailure: Ignore
                inputs:
                  - path: /etc/app.conf
                    permissions: 999
                    encoding: latin1
              - name: Write
                action: ExecuteBash
                timeoutSeconds: 0
                inputs:
                  commands:
                    - echo {{ Verison }}
                    - echo {{ build.Later.outputs.stdout }}
          - name: test
            steps:
              - name: Check
                action: Assert
                inputs:
                  stringEquals: ok
        "#,
    );
    let diags = errors(&text);
    let got: Vec<(&str, usize, usize)> = diags
        .iter()
        .map(|d| (d.code, d.pos.line, d.pos.column))
        .collect();
    assert_eq!(
        got,
        vec![
            ("unknown-key", 2, 1),
            ("variable-name", 4, 5),
            ("unknown-action", 10, 17),
            ("unknown-step-field", 15, 9),
            ("input-value", 18, 26),
            ("input-value", 19, 23),
            ("duplicate-step", 20, 15),
            ("timeout-value", 22, 25),
            ("undeclared-variable", 25, 20),
            ("chain-missing-step", 26, 20),
            ("condition-value-missing", 32, 11),
        ],
        "{}",
        diags
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut sorted = diags.clone();
    sorted.sort_by_key(|d| d.pos);
    assert_eq!(diags, sorted);
    assert!(diags.iter().all(|d| d.file == FILE));
}

#[test]
fn duplicate_keys_are_all_reported_and_validation_goes_on() {
    let text = dedent(
        r#"
        schemaVersion: 1.0
        phases:
          - name: build
            steps:
              - name: A
                name: B
                action: ExecuteBash
                inputs:
                  commands: [echo hi]
                inputs:
                  commands: [echo again]
              - name: C
                action: Reboot
                timeoutSeconds: 5
        "#,
    );
    let got: Vec<(&str, usize, usize, String)> = errors(&text)
        .iter()
        .map(|d| (d.code, d.pos.line, d.pos.column, d.field.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("duplicate-key", 6, 9, "phases[0].steps[0].name".to_string()),
            (
                "duplicate-key",
                10,
                9,
                "phases[0].steps[0].inputs".to_string()
            ),
            (
                "reboot-timeout",
                14,
                25,
                "phases[0].steps[1].timeoutSeconds".to_string()
            ),
        ]
    );
}

// ---- valid documents ------------------------------------------------------

#[test]
fn raw_scalars_keep_their_text() {
    let doc = valid(&dedent(
        r#"
        name: Raw scalars
        schemaVersion: 1.0
        constants:
          - Level:
              type: string
              value: 1
        phases:
          - name: build
            steps:
              - name: Folder
                action: CreateFolder
                inputs:
                  - path: /opt/app
                    permissions: 0777
                    overwrite: true
              - name: Wait
                action: Reboot
                inputs:
                  delaySeconds: 010
        "#,
    ));
    assert_eq!(doc.schema_version, "1.0");
    assert_eq!(doc.name.as_deref(), Some("Raw scalars"));
    assert_eq!(doc.constants[0].value, "1");
    let step = &doc.phases[0].steps[0];
    let inputs = step.inputs.as_ref().unwrap().as_seq().unwrap();
    let perm = inputs[0].get("permissions").unwrap();
    assert_eq!(perm.as_str(), Some("0777"));
    assert_eq!(
        perm.pos,
        Pos {
            line: 14,
            column: 26
        }
    );
    assert!(matches!(&perm.value, Value::Scalar(s, _) if s == "0777"));
    assert_eq!(inputs[0].to_json()["permissions"], "0777");
    let delay = doc.phases[0].steps[1].inputs.as_ref().unwrap();
    assert_eq!(delay.get("delaySeconds").unwrap().as_str(), Some("010"));

    let one = valid(&with_top("schemaVersion: 1\n"));
    assert_eq!(one.schema_version, "1");
    let quoted = valid(&with_top("schemaVersion: \"1.0\"\n"));
    assert_eq!(quoted.schema_version, "1.0");
}

#[test]
fn json_documents_parse() {
    let doc = valid(
        r#"{
  "name": "json",
  "schemaVersion": 1.0,
  "parameters": [{"Greeting": {"type": "string", "default": "hi"}}],
  "phases": [
    {"name": "build", "steps": [
      {"name": "Say", "action": "ExecuteBash", "timeoutSeconds": 60,
       "inputs": {"commands": ["echo {{ Greeting }}"]}},
      {"name": "Dir", "action": "CreateFolder",
       "inputs": [{"path": "/opt/x", "permissions": "0755"}]}
    ]},
    {"name": "validate", "steps": [
      {"name": "Check", "action": "Assert",
       "inputs": {"stringEquals": "hi", "value": "{{ build.Say.outputs.stdout }}"}}
    ]}
  ]
}"#,
    );
    assert_eq!(doc.schema_version, "1.0");
    assert_eq!(doc.parameters[0].default.as_deref(), Some("hi"));
    assert_eq!(doc.phases[0].steps[0].timeout_seconds, 60);
    assert_eq!(doc.phases.len(), 2);

    // and JSON errors point into the JSON text
    let diags = errors(
        r#"{"schemaVersion": "1.0", "phases": [{"name": "build", "steps": [
  {"name": "S", "action": "ExecuteBash", "inputs": {"commands": "echo"}}]}]}"#,
    );
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].code, "input-type");
    assert_eq!((diags[0].pos.line, diags[0].pos.column), (2, 65));
    assert_eq!(diags[0].field, "phases[0].steps[0].inputs.commands");
}

/// §4.3: only a scalar that *starts* with `{` needs quotes.
#[test]
fn the_five_quoting_cases() {
    let step = |commands: &str| {
        format!(
            "schemaVersion: 1.0\nparameters:\n  - Greeting:\n      type: string\n      default: hi\nphases:\n  - name: build\n    steps:\n      - name: S\n        action: ExecuteBash\n        inputs:\n          commands:\n{commands}"
        )
    };
    // 1. quoted at the start of a value
    let d = valid(&step(
        "            - '{{ Greeting }}'\n            - \"{{Greeting}}\"\n",
    ));
    let cmds = d.phases[0].steps[0]
        .inputs
        .as_ref()
        .unwrap()
        .get("commands")
        .unwrap();
    assert_eq!(cmds.as_seq().unwrap()[0].as_str(), Some("{{ Greeting }}"));
    // 2. unquoted at the start: YAML reads a map; the error says to quote it
    let e = errors(&step("            - {{ Greeting }}\n"));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].code, "yaml-syntax");
    assert_eq!((e[0].pos.line, e[0].pos.column), (13, 15));
    assert!(e[0].hint.as_deref().unwrap().contains("'{{ Greeting }}'"));
    // 3. inside a longer plain scalar
    valid(&step(
        "            - cd /{{ Greeting }} && echo {{Greeting}}\n",
    ));
    // 4. several in one plain value
    let d = valid(&dedent(
        r#"
        schemaVersion: 1.0
        parameters:
          - Version: {type: string, default: "1"}
          - FileName: {type: string, default: a.tgz}
        phases:
          - name: build
            steps:
              - name: Get
                action: S3Download
                inputs:
                  - source: s3://bucket/{{ Version }}/{{ FileName }}
                    destination: /tmp/{{ FileName }}
        "#,
    ));
    let inputs = d.phases[0].steps[0].inputs.as_ref().unwrap();
    assert_eq!(
        inputs.as_seq().unwrap()[0].get("source").unwrap().as_str(),
        Some("s3://bucket/{{ Version }}/{{ FileName }}")
    );
    // 5. inside a block scalar, with chaining
    valid(&dedent(
        r#"
        schemaVersion: 1.0
        phases:
          - name: build
            steps:
              - name: Fail
                action: ExecuteBash
                inputs:
                  commands: [echo 1]
          - name: validate
            steps:
              - name: Exit
                action: ExecuteBash
                inputs:
                  commands:
                    - |
                      echo checking
                      exit {{ build.Fail.outputs.stdout }}
        "#,
    ));
    // and an undeclared name inside a block scalar is found on its own line
    let e = errors(&step(
        "            - |\n              echo ok\n              echo {{ Greting }}\n",
    ));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].code, "undeclared-variable");
    assert_eq!((e[0].pos.line, e[0].pos.column), (15, 20));
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `Greeting`?"));
}

#[test]
fn same_step_name_in_two_phases_is_fine() {
    let doc = valid(&dedent(
        r#"
        schemaVersion: 1.0
        phases:
          - name: build
            steps:
              - name: Fail
                action: ExecuteBash
                inputs:
                  commands: [echo 1]
          - name: validate
            steps:
              - name: Fail
                action: ExecuteBash
                inputs:
                  commands: ["exit {{ build.Fail.outputs.stdout }}"]
          - name: test
            steps:
              - name: Fail
                action: ExecuteBash
                inputs:
                  commands: ["echo {{ validate.Fail.inputs.commands }}"]
        "#,
    ));
    assert_eq!(doc.phases.len(), 3);
}

#[test]
fn loop_variables_outside_a_loop_are_left_alone() {
    let doc = valid(&dedent(
        r#"
        schemaVersion: 1.0
        phases:
          - name: build
            steps:
              - name: NoLoop
                action: ExecuteBash
                inputs:
                  commands: ["echo {{ loop.value }} {{ loop.index }}"]
              - name: Named
                action: ExecuteBash
                loop:
                  name: pkgs
                  forEach:
                    list: "a b c"
                    delimiter: " "
                inputs:
                  commands: ["echo {{ pkgs.value }} {{ loop.index }}"]
              - name: Range
                action: ExecuteBash
                loop:
                  for: {start: 3, end: 1, updateBy: -1}
                inputs:
                  commands: ["echo {{ loop.value }}"]
        "#,
    ));
    assert!(doc.phases[0].steps[0].looping.is_none());
}

#[test]
fn valid_conditions_up_to_four_levels() {
    valid(&dedent(
        r#"
        schemaVersion: 1.0
        phases:
          - name: build
            steps:
              - name: Probe
                action: ExecuteBash
                inputs:
                  commands: [echo s3]
              - name: Deep
                action: ExecuteBash
                if:
                  and:
                    - or:
                        - not:
                            and:
                              - fileExists: /a
                              - folderExists: /b
                        - binaryExists: apt-get
                    - stringEquals: S3
                      value: "{{ build.Probe.outputs.stdout }}"
                  then: Execute
                  else: Abort
                inputs:
                  commands: [echo deep]
              - name: Check
                action: Assert
                inputs:
                  patternMatches: '^s3$'
                  value: '{{ build.Probe.outputs.stdout }}'
        "#,
    ));
}

#[test]
fn windows_documents_validate_for_windows() {
    valid_on(
        &dedent(
            r#"
            schemaVersion: 1.0
            phases:
              - name: build
                steps:
                  - name: Ps
                    action: ExecutePowerShell
                    inputs:
                      commands: [Write-Host hi]
                  - name: Reg
                    action: SetRegistry
                    inputs:
                      - path: HKLM:\Software\Kiln
                        name: Version
                        value: 1
                        type: dword
                  - name: Msi
                    action: InstallMSI
                    inputs:
                      path: C:\setup.msi
                      reboot: Skip
                      properties:
                        FOO: "1"
                  - name: File
                    action: CreateFile
                    inputs:
                      - path: C:\a.txt
                        content: hi
            "#,
        ),
        OsPlatform::Windows,
    );
}

// ---- how diagnostics look -------------------------------------------------

#[test]
fn diagnostic_display() {
    let d = Diagnostic {
        file: "file.yml".into(),
        pos: Pos { line: 3, column: 7 },
        code: "unknown-action",
        field: "phases[0].steps[0].action".into(),
        message: "unknown action `ExecuteBsh`".into(),
        hint: Some("did you mean `ExecuteBash`?".into()),
    };
    assert_eq!(
        d.to_string(),
        "file.yml:3:7: error[unknown-action]: unknown action `ExecuteBsh`\n  field: phases[0].steps[0].action\n  hint: did you mean `ExecuteBash`?"
    );
    let bare = Diagnostic {
        field: String::new(),
        hint: None,
        ..d
    };
    assert_eq!(
        bare.to_string(),
        "file.yml:3:7: error[unknown-action]: unknown action `ExecuteBsh`"
    );
}

#[test]
fn diagnostic_display_from_a_parse() {
    let text = dedent(
        r#"
        schemaVersion: 1.0
        phases:
          - name: build
            steps:
              - name: S
                action: ExecuteBash
                onfailure: Abort
                inputs:
                  commands: [echo hi]
        "#,
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1);
    assert_eq!(
        e[0].to_string(),
        "c.yml:7:9: error[unknown-step-field]: unknown step field `onfailure`\n  field: phases[0].steps[0].onfailure\n  hint: did you mean `onFailure`?"
    );
}
