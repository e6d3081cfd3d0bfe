//! The component document model and its parser. Parsing is pure: it takes
//! the text and returns either a document or every problem found in it.

use super::actions::spec::{self, Kind, OsPlatform, Shape};
use super::condition::{self, IfClause};
use super::looping::{self, Loop};
use crate::util::diag::{did_you_mean, record_yaml_issues, Diagnostic, Diagnostics};
use crate::util::yaml::{self, Node, Pos, YamlIssueKind};

/// Step timeout when none is given.
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 7200;

/// A parsed component document.
#[derive(Clone, Debug)]
pub struct Document {
    /// The path the document was read from, as given.
    pub file: String,
    /// The original text.
    pub text: String,
    /// `name`.
    pub name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `schemaVersion`, as written.
    pub schema_version: String,
    /// Declared parameters.
    pub parameters: Vec<Parameter>,
    /// Declared constants.
    pub constants: Vec<Constant>,
    /// Phases in document order.
    pub phases: Vec<Phase>,
}

/// A declared parameter.
#[derive(Clone, Debug)]
pub struct Parameter {
    /// Name.
    pub name: String,
    /// Where it is declared.
    pub pos: Pos,
    /// Default value; `None` means the caller must supply it.
    pub default: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Allowed values, if restricted.
    pub allowed_values: Option<Vec<String>>,
}

/// A declared constant.
#[derive(Clone, Debug)]
pub struct Constant {
    /// Name.
    pub name: String,
    /// Where it is declared.
    pub pos: Pos,
    /// Its value, as written.
    pub value: String,
}

/// A phase.
#[derive(Clone, Debug)]
pub struct Phase {
    /// Name (`build`, `validate`, `test`, …).
    pub name: String,
    /// Where it is declared.
    pub pos: Pos,
    /// Steps in order.
    pub steps: Vec<Step>,
}

/// What happens after a step fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OnFailure {
    /// Stop the run; the run fails.
    Abort,
    /// Go on; the run still fails.
    Continue,
    /// Go on; the failure is tolerated.
    Ignore,
}

impl OnFailure {
    /// The name as written in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Abort => "Abort",
            OnFailure::Continue => "Continue",
            OnFailure::Ignore => "Ignore",
        }
    }
}

/// A step.
#[derive(Clone, Debug)]
pub struct Step {
    /// Name, unique in its phase.
    pub name: String,
    /// Where the step starts.
    pub pos: Pos,
    /// The action module.
    pub action: String,
    /// The raw inputs (expressions not yet resolved).
    pub inputs: Option<Node>,
    /// Timeout per attempt in seconds; `-1` for none.
    pub timeout_seconds: i64,
    /// Failure handling.
    pub on_failure: OnFailure,
    /// Total attempts.
    pub max_attempts: u32,
    /// The `if` block.
    pub condition: Option<IfClause>,
    /// The loop.
    pub looping: Option<Loop>,
    /// Hide the step's output from logs.
    pub disable_logging: bool,
}

impl Document {
    /// The phase named `name`.
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// True when the only phase is `test` (a test component).
    pub fn is_test_component(&self) -> bool {
        self.phases.iter().all(|p| p.name == "test") && !self.phases.is_empty()
    }
}

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "schemaVersion",
    "parameters",
    "constants",
    "phases",
];
const STEP_KEYS: &[&str] = &[
    "name",
    "action",
    "inputs",
    "timeoutSeconds",
    "onFailure",
    "maxAttempts",
    "if",
    "loop",
    "disableLogging",
];
const STANDARD_PHASES: &[&str] = &["build", "validate", "test"];
const DOCUMENT_HINT: &str =
    "a component document is a map: `name:`, `schemaVersion: 1.0` and `phases:` at the top level";

/// True when `name` follows the parameter and constant naming rules.
pub fn valid_variable_name(name: &str) -> bool {
    (3..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parses a document's text. `file` is only used in diagnostics.
pub fn parse(file: &str, text: &str, os: OsPlatform) -> Result<Document, Vec<Diagnostic>> {
    let mut d = Diagnostics::new(file);
    let (root, issues) = yaml::parse_checked(text);
    record_yaml_issues(&mut d, issues, "document-shape", |issue| match issue.kind {
        YamlIssueKind::Empty => (issue.message, Some(DOCUMENT_HINT.to_string())),
        _ => (issue.message, issue.hint),
    });
    let Some(root) = root else {
        return Err(d.into_vec());
    };
    let Some(map) = root.as_map() else {
        d.error(
            root.pos,
            "document-shape",
            "",
            format!("a component document is a map, found {}", root.kind_name()),
            Some(DOCUMENT_HINT.to_string()),
        );
        return Err(d.into_vec());
    };
    for (k, _) in map {
        let key = k.as_str().unwrap_or_default();
        if !TOP_KEYS.contains(&key) {
            d.error(
                k.pos,
                "unknown-key",
                key,
                format!("unknown top-level key `{key}`"),
                did_you_mean(key, TOP_KEYS.iter().copied())
                    .or(Some(format!("allowed: {}", TOP_KEYS.join(", ")))),
            );
        }
    }
    let text_field = |key: &str, d: &mut Diagnostics| -> Option<String> {
        let n = root.get(key)?;
        match n.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                d.error(
                    n.pos,
                    "wrong-type",
                    key,
                    format!("`{key}` must be a string, found {}", n.kind_name()),
                    None,
                );
                None
            }
        }
    };
    let name = text_field("name", &mut d);
    let description = text_field("description", &mut d);
    let schema_version = match root.get("schemaVersion") {
        None => {
            d.error(
                root.pos,
                "schema-version",
                "schemaVersion",
                "`schemaVersion` is missing",
                Some("add `schemaVersion: 1.0`".into()),
            );
            String::new()
        }
        Some(n) => match n.as_str() {
            Some(v @ ("1.0" | "1")) => v.to_string(),
            other => {
                d.error(
                    n.pos,
                    "schema-version",
                    "schemaVersion",
                    format!(
                        "unsupported schemaVersion `{}`",
                        other.unwrap_or("(not a scalar)")
                    ),
                    Some("the only schema version is 1.0".into()),
                );
                String::new()
            }
        },
    };
    let parameters = root
        .get("parameters")
        .map(|n| parse_parameters(n, &mut d))
        .unwrap_or_default();
    let constants = root
        .get("constants")
        .map(|n| parse_constants(n, &mut d))
        .unwrap_or_default();
    check_variable_names(&parameters, &constants, &mut d);
    let phases = match root.get("phases") {
        None => {
            d.error(
                root.pos,
                "phases-missing",
                "phases",
                "`phases` is missing",
                Some("a document needs at least one of the phases build, validate or test".into()),
            );
            Vec::new()
        }
        Some(n) => parse_phases(n, os, &mut d),
    };
    let doc = Document {
        file: file.to_string(),
        text: text.to_string(),
        name,
        description,
        schema_version,
        parameters,
        constants,
        phases,
    };
    super::validate::check_document_nodes(&doc, Some(&root), &mut d);
    if d.is_empty() {
        Ok(doc)
    } else {
        Err(d.into_vec())
    }
}

/// Yields `(name, body)` of list items shaped `- Name: {…}`.
fn named_items<'a>(node: &'a Node, what: &str, d: &mut Diagnostics) -> Vec<(&'a Node, &'a Node)> {
    let Some(items) = node.as_seq() else {
        d.error(
            node.pos,
            "wrong-type",
            what,
            format!("`{what}` must be a list, found {}", node.kind_name()),
            Some(format!(
                "write `{what}:` then items like `- MyName: {{type: string, …}}`"
            )),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_map() {
            Some([(k, v)]) if !(k.as_str() == Some("name") && v.as_map().is_none()) => {
                out.push((k, v))
            }
            Some([(_, v)]) => d.error(
                item.pos,
                "variable-shape",
                format!("{what}[{i}]"),
                format!(
                    "`name: {}` declares nothing: each item of `{what}` is a map with one key, the name",
                    v.as_str().unwrap_or_default()
                ),
                Some(format!(
                    "that is the Image Builder workflow syntax; in a component write `- {}:` with `type: string` indented under it",
                    v.as_str().filter(|s| !s.is_empty()).unwrap_or("MyName")
                )),
            ),
            _ => d.error(item.pos, "variable-shape", format!("{what}[{i}]"),
                format!("each item of `{what}` is a map with one key, the name; found {}", item.kind_name()),
                Some(if item.get("name").is_some() {
                    "that is the Image Builder workflow syntax; in a component write `- MyName:` with `type:` and `default:` indented under it".into()
                } else {
                    "write `- MyName:` then `type: string` indented under it".into()
                })),
        }
    }
    out
}

fn check_fields(body: &Node, field: &str, allowed: &[&str], d: &mut Diagnostics) {
    for (k, _) in body.as_map().unwrap_or_default() {
        let key = k.as_str().unwrap_or_default();
        if !allowed.contains(&key) {
            d.error(
                k.pos,
                "unknown-field",
                format!("{field}.{key}"),
                format!("unknown field `{key}`"),
                did_you_mean(key, allowed.iter().copied())
                    .or(Some(format!("allowed: {}", allowed.join(", ")))),
            );
        }
    }
}

fn check_type_string(body: &Node, field: &str, d: &mut Diagnostics) {
    match body.get("type").map(|t| (t, t.as_str())) {
        Some((_, Some("string"))) => {}
        Some((t, v)) => d.error(
            t.pos,
            "variable-type",
            format!("{field}.type"),
            format!("unsupported type `{}`", v.unwrap_or("(not a scalar)")),
            Some("the only type is `string`".into()),
        ),
        None => d.error(
            body.pos,
            "variable-type",
            format!("{field}.type"),
            "`type` is missing",
            Some("add `type: string`".into()),
        ),
    }
}

fn parse_parameters(node: &Node, d: &mut Diagnostics) -> Vec<Parameter> {
    let mut out = Vec::new();
    for (k, body) in named_items(node, "parameters", d) {
        let name = k.as_str().unwrap_or_default().to_string();
        let field = format!("parameters.{name}");
        if body.as_map().is_none() {
            d.error(
                body.pos,
                "variable-shape",
                &field,
                format!("parameter `{name}` needs a map with `type`"),
                None,
            );
            continue;
        }
        check_fields(
            body,
            &field,
            &["type", "default", "description", "allowedValues"],
            d,
        );
        check_type_string(body, &field, d);
        let allowed_values = body.get("allowedValues").and_then(|n| match n.as_seq() {
            Some(items) => Some(
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect::<Vec<String>>(),
            ),
            None => {
                d.error(
                    n.pos,
                    "wrong-type",
                    format!("{field}.allowedValues"),
                    "`allowedValues` must be a list",
                    None,
                );
                None
            }
        });
        let default = match body.get("default").filter(|n| !n.is_null()) {
            None => None,
            Some(n) => match n.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    d.error(
                        n.pos,
                        "wrong-type",
                        format!("{field}.default"),
                        format!("`default` must be a string, found {}", n.kind_name()),
                        Some(
                            "parameters are strings; for several values write one string, e.g. `default: \"a,b\"`, and split it with `forEach: {list: …}`"
                                .into(),
                        ),
                    );
                    None
                }
            },
        };
        if let (Some(allowed), Some(def)) = (&allowed_values, &default) {
            if !allowed.contains(def) {
                let n = body.get("default").unwrap_or(body);
                d.error(
                    n.pos,
                    "variable-value",
                    format!("{field}.default"),
                    format!("default `{def}` is not one of `allowedValues`"),
                    Some(format!("allowed: {}", allowed.join(", "))),
                );
            }
        }
        out.push(Parameter {
            name,
            pos: k.pos,
            default,
            description: body
                .get("description")
                .and_then(|n| n.as_str())
                .map(str::to_string),
            allowed_values,
        });
    }
    out
}

fn parse_constants(node: &Node, d: &mut Diagnostics) -> Vec<Constant> {
    let mut out = Vec::new();
    for (k, body) in named_items(node, "constants", d) {
        let name = k.as_str().unwrap_or_default().to_string();
        let field = format!("constants.{name}");
        if body.as_map().is_none() {
            d.error(
                body.pos,
                "variable-shape",
                &field,
                format!("constant `{name}` needs a map with `type` and `value`"),
                None,
            );
            continue;
        }
        check_fields(body, &field, &["type", "value", "description"], d);
        check_type_string(body, &field, d);
        match body.get("value").filter(|v| !v.is_null()) {
            Some(v) => match v.as_str() {
                Some(value) => out.push(Constant {
                    name,
                    pos: k.pos,
                    value: value.to_string(),
                }),
                None => d.error(
                    v.pos,
                    "constant-value",
                    format!("{field}.value"),
                    format!(
                        "the value of constant `{name}` must be a string, found {}",
                        v.kind_name()
                    ),
                    Some("constants are strings".into()),
                ),
            },
            None => d.error(
                body.pos,
                "constant-value",
                format!("{field}.value"),
                format!("constant `{name}` needs a `value`"),
                Some("add `value: …` beside `type: string`".into()),
            ),
        }
    }
    out
}

fn check_variable_names(params: &[Parameter], consts: &[Constant], d: &mut Diagnostics) {
    let all = params
        .iter()
        .map(|p| (p.name.as_str(), p.pos, "parameters"))
        .chain(consts.iter().map(|c| (c.name.as_str(), c.pos, "constants")));
    let mut seen: Vec<(&str, Pos)> = Vec::new();
    for (name, pos, what) in all {
        if !valid_variable_name(name) {
            let len = name.chars().count();
            let why = if !(3..=128).contains(&len) {
                format!("it has {len} characters")
            } else {
                let bad: String = name
                    .chars()
                    .filter(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
                    .take(1)
                    .collect();
                format!("`{bad}` is not allowed")
            };
            d.error(
                pos,
                "variable-name",
                format!("{what}.{name}"),
                format!("invalid name `{name}`: {why}"),
                Some("names are 3 to 128 characters of letters, digits, `_` and `-`".into()),
            );
        }
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            d.error(
                pos,
                "duplicate-variable",
                format!("{what}.{name}"),
                format!("`{name}` is declared twice"),
                Some(format!(
                    "`{name}` is first declared on line {}; names are unique across parameters and constants",
                    first.line
                )),
            );
        }
        seen.push((name, pos));
    }
}

fn parse_phases(node: &Node, os: OsPlatform, d: &mut Diagnostics) -> Vec<Phase> {
    let Some(items) = node.as_seq() else {
        d.error(
            node.pos,
            "wrong-type",
            "phases",
            format!("`phases` must be a list, found {}", node.kind_name()),
            Some("write each phase as a list item: `- name: build` with `steps:` under it".into()),
        );
        return Vec::new();
    };
    if items.is_empty() {
        d.error(
            node.pos,
            "phases-missing",
            "phases",
            "`phases` is empty",
            Some("a document needs at least one of the phases build, validate or test".into()),
        );
    }
    let mut phases = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("phases[{i}]");
        if item.as_map().is_none() {
            d.error(
                item.pos,
                "wrong-type",
                &field,
                format!(
                    "a phase is a map with `name` and `steps`, found {}",
                    item.kind_name()
                ),
                Some("write `- name: build` with `steps:` indented under it".into()),
            );
            continue;
        }
        check_fields(item, &field, &["name", "steps"], d);
        let Some(name) = item.get("name").and_then(Node::as_str) else {
            d.error(
                item.pos,
                "phase-name",
                format!("{field}.name"),
                "the phase has no `name`",
                Some("e.g. `name: build`".into()),
            );
            continue;
        };
        let steps = match item.get("steps") {
            None => {
                d.error(
                    item.pos,
                    "steps-missing",
                    format!("{field}.steps"),
                    format!("phase `{name}` has no `steps`"),
                    Some("add `steps:` with a list of steps under the phase".into()),
                );
                Vec::new()
            }
            Some(s) => match s.as_seq() {
                Some(list) => list
                    .iter()
                    .enumerate()
                    .filter_map(|(j, st)| parse_step(st, &format!("{field}.steps[{j}]"), os, d))
                    .collect(),
                None => {
                    d.error(
                        s.pos,
                        "wrong-type",
                        format!("{field}.steps"),
                        format!("`steps` must be a list, found {}", s.kind_name()),
                        Some(
                            "write each step as a list item: `- name: MyStep` with `action:` and `inputs:` under it"
                                .into(),
                        ),
                    );
                    Vec::new()
                }
            },
        };
        phases.push(Phase {
            name: name.to_string(),
            pos: item.pos,
            steps,
        });
    }
    if !items.is_empty()
        && !phases
            .iter()
            .any(|p| STANDARD_PHASES.contains(&p.name.as_str()))
        && !phases.is_empty()
    {
        let suggestion = phases
            .iter()
            .find_map(|p| did_you_mean(&p.name, STANDARD_PHASES.iter().copied()));
        d.error(
            node.pos,
            "phases-missing",
            "phases",
            format!(
                "the document has none of the phases build, validate or test (found: {})",
                phases
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(suggestion.unwrap_or_else(|| {
                "Image Builder only runs the phases build, validate and test".into()
            })),
        );
    }
    phases
}

fn int_value(node: &Node, field: &str, hint: &str, d: &mut Diagnostics) -> Option<i64> {
    match node.as_str().map(str::parse::<i64>) {
        Some(Ok(n)) => Some(n),
        _ => {
            d.error(
                node.pos,
                "wrong-type",
                field,
                format!(
                    "`{}` must be an integer, found `{}`",
                    field.rsplit('.').next().unwrap_or(field),
                    node.as_str().unwrap_or("a non-scalar")
                ),
                Some(hint.to_string()),
            );
            None
        }
    }
}

fn parse_step(node: &Node, field: &str, os: OsPlatform, d: &mut Diagnostics) -> Option<Step> {
    if node.as_map().is_none() {
        d.error(
            node.pos,
            "wrong-type",
            field,
            format!(
                "a step is a map with `name`, `action` and `inputs`, found {}",
                node.kind_name()
            ),
            Some("write `- name: MyStep` with `action:` and `inputs:` indented under it".into()),
        );
        return None;
    }
    for (k, _) in node.as_map().unwrap_or_default() {
        let key = k.as_str().unwrap_or_default();
        if !STEP_KEYS.contains(&key) {
            d.error(
                k.pos,
                "unknown-step-field",
                format!("{field}.{key}"),
                format!("unknown step field `{key}`"),
                did_you_mean(key, STEP_KEYS.iter().copied())
                    .or(Some(format!("allowed: {}", STEP_KEYS.join(", ")))),
            );
        }
    }
    let name = match node.get("name").and_then(Node::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            d.error(
                node.pos,
                "step-name",
                format!("{field}.name"),
                "the step has no `name`",
                Some("add `name: MyStep`; chaining refers to steps as `phase.step`".into()),
            );
            String::new()
        }
    };
    let action_node = node.get("action");
    let action = match action_node.and_then(Node::as_str) {
        Some(a) => a.to_string(),
        None => {
            d.error(
                node.pos,
                "step-action",
                format!("{field}.action"),
                format!("step `{name}` has no `action`"),
                Some("e.g. `action: ExecuteBash`".into()),
            );
            return None;
        }
    };
    let apos = action_node.map_or(node.pos, |n| n.pos);
    let spec = spec::find(&action);
    match spec {
        None => d.error(
            apos,
            "unknown-action",
            format!("{field}.action"),
            format!("unknown action `{action}`"),
            did_you_mean(&action, spec::ACTIONS.iter().map(|a| a.name)),
        ),
        Some(s) if !s.runs_on(os) => d.error(
            apos,
            "platform-action",
            format!("{field}.action"),
            format!(
                "`{action}` is a {} action and cannot run on {os}",
                match s.platform {
                    spec::Platform::Windows => "Windows-only",
                    _ => "Linux-only",
                }
            ),
            Some(platform_hint(&action, os)),
        ),
        Some(_) => {}
    }
    let timeout_node = node.get("timeoutSeconds");
    let mut timeout_seconds = timeout_node
        .and_then(|n| {
            int_value(
                n,
                &format!("{field}.timeoutSeconds"),
                "a whole number of seconds, e.g. `timeoutSeconds: 3600`, or -1 for no limit",
                d,
            )
        })
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    if let Some(n) = timeout_node {
        if timeout_seconds == 0 || timeout_seconds < -1 {
            d.error(
                n.pos,
                "timeout-value",
                format!("{field}.timeoutSeconds"),
                format!("`timeoutSeconds: {timeout_seconds}` is invalid"),
                Some("use a positive number of seconds, or -1 for no limit".into()),
            );
        }
    }
    let attempts_node = node.get("maxAttempts");
    let max_attempts = attempts_node
        .and_then(|n| {
            int_value(
                n,
                &format!("{field}.maxAttempts"),
                "the total number of attempts, e.g. `maxAttempts: 3`",
                d,
            )
        })
        .unwrap_or(1);
    if let Some(n) = attempts_node {
        if max_attempts < 1 {
            d.error(
                n.pos,
                "attempts-value",
                format!("{field}.maxAttempts"),
                format!("`maxAttempts: {max_attempts}` is invalid"),
                Some("maxAttempts counts all attempts and is at least 1".into()),
            );
        }
    }
    match action.as_str() {
        "ExecuteDocument" => {
            if let Some(n) = timeout_node.filter(|_| timeout_seconds != -1) {
                d.error(
                    n.pos,
                    "execute-document-limits",
                    format!("{field}.timeoutSeconds"),
                    "ExecuteDocument runs without a timeout; `timeoutSeconds` must be -1 or left out",
                    Some("remove `timeoutSeconds`; set timeouts on the steps of the called document".into()),
                );
            }
            if let Some(n) = attempts_node.filter(|_| max_attempts != 1) {
                d.error(
                    n.pos,
                    "execute-document-limits",
                    format!("{field}.maxAttempts"),
                    "ExecuteDocument runs once; `maxAttempts` must be 1 or left out",
                    Some(
                        "remove `maxAttempts`; set retries on the steps of the called document"
                            .into(),
                    ),
                );
            }
            timeout_seconds = -1;
        }
        "Reboot" => {
            if let Some(n) = timeout_node {
                d.error(
                    n.pos,
                    "reboot-timeout",
                    format!("{field}.timeoutSeconds"),
                    "`timeoutSeconds` does not apply to Reboot",
                    Some("use `inputs: {delaySeconds: N}` to delay the reboot".into()),
                );
            }
        }
        _ => {}
    }
    let on_failure = match node.get("onFailure") {
        None => OnFailure::Abort,
        Some(n) => match n.as_str() {
            Some("Abort") => OnFailure::Abort,
            Some("Continue") => OnFailure::Continue,
            Some("Ignore") => OnFailure::Ignore,
            other => {
                d.error(
                    n.pos,
                    "on-failure",
                    format!("{field}.onFailure"),
                    format!(
                        "`onFailure` must be Abort, Continue or Ignore, found `{}`",
                        other.unwrap_or("a non-scalar")
                    ),
                    other
                        .and_then(|o| did_you_mean(o, ["Abort", "Continue", "Ignore"]))
                        .or(Some(
                            "Abort stops the run; Continue goes on but the run still fails; Ignore goes on and tolerates the failure"
                                .into(),
                        )),
                );
                OnFailure::Abort
            }
        },
    };
    let disable_logging = match node.get("disableLogging") {
        None => false,
        Some(n) => match n.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("true") => true,
            Some("false") => false,
            _ => {
                d.error(
                    n.pos,
                    "wrong-type",
                    format!("{field}.disableLogging"),
                    "`disableLogging` must be true or false",
                    Some("write `disableLogging: true`".into()),
                );
                false
            }
        },
    };
    let condition = node
        .get("if")
        .and_then(|n| condition::parse_if(n, &format!("{field}.if"), d));
    let looping = node
        .get("loop")
        .and_then(|n| looping::parse_loop(n, &format!("{field}.loop"), d));
    let inputs = node.get("inputs").cloned();
    if let Some(spec) = spec {
        check_inputs(
            spec,
            inputs.as_ref(),
            node.pos,
            &format!("{field}.inputs"),
            os,
            d,
        );
    }
    Some(Step {
        name,
        pos: node.pos,
        action,
        inputs,
        timeout_seconds,
        on_failure,
        max_attempts: max_attempts.max(1) as u32,
        condition,
        looping,
        disable_logging,
    })
}

fn platform_hint(action: &str, os: OsPlatform) -> String {
    let other = match (action, os) {
        ("ExecuteBash", OsPlatform::Windows) => Some("ExecutePowerShell"),
        ("ExecutePowerShell", OsPlatform::Linux) => Some("ExecuteBash"),
        _ => None,
    };
    let flag = match os {
        OsPlatform::Linux => "windows",
        OsPlatform::Windows => "linux",
    };
    match other {
        Some(o) => format!(
            "use `{o}` on {os}, or validate for the other platform (`--os-platform {flag}`)"
        ),
        None => format!(
            "use an action of {os}, or validate for the other platform (`--os-platform {flag}`)"
        ),
    }
}

/// Inputs that exist only on Linux, by action.
const LINUX_ONLY_INPUTS: &[(&str, &[&str])] = &[
    ("CreateFile", &["owner", "group", "permissions"]),
    ("CreateFolder", &["owner", "group", "permissions"]),
];

fn check_inputs(
    spec: &spec::ActionSpec,
    inputs: Option<&Node>,
    step_pos: Pos,
    field: &str,
    os: OsPlatform,
    d: &mut Diagnostics,
) {
    let name = spec.name;
    let inputs = inputs.filter(|n| !n.is_null());
    match (spec.shape, inputs) {
        (Shape::OptionalMap, None) => {}
        (_, None) => d.error(
            step_pos,
            "inputs-missing",
            field,
            format!("`{name}` needs `inputs`"),
            Some(input_hint(spec)),
        ),
        (Shape::Condition, Some(n)) => {
            condition::parse_cond(n, field, d, 1, false);
        }
        (Shape::Map | Shape::OptionalMap, Some(n)) => {
            if n.as_map().is_some() {
                check_input_map(spec, n, field, os, d);
            } else {
                d.error(
                    n.pos,
                    "inputs-shape",
                    field,
                    format!("`{name}` takes a map of inputs, found {}", n.kind_name()),
                    Some(if n.as_seq().is_some() {
                        "remove the leading `-`: this action's inputs are one map".into()
                    } else {
                        input_hint(spec)
                    }),
                );
            }
        }
        (Shape::List, Some(n)) => match n.as_seq() {
            Some(items) => {
                if items.is_empty() {
                    d.error(
                        n.pos,
                        "inputs-shape",
                        field,
                        format!("`{name}` has an empty list of inputs"),
                        Some(input_hint(spec)),
                    );
                }
                for (i, item) in items.iter().enumerate() {
                    let f = format!("{field}[{i}]");
                    if item.as_map().is_some() {
                        check_input_map(spec, item, &f, os, d);
                    } else {
                        d.error(
                            item.pos,
                            "inputs-shape",
                            f,
                            format!(
                                "each input of `{name}` is a map, found {}",
                                item.kind_name()
                            ),
                            Some(format!(
                                "write each item as a map of fields, e.g. `- {}: …`; {}",
                                spec.fields.first().map_or("path", |f| f.name),
                                input_hint(spec)
                            )),
                        );
                    }
                }
            }
            None => d.error(
                n.pos,
                "inputs-shape",
                field,
                format!(
                    "`{name}` takes a list of input maps, found {}",
                    n.kind_name()
                ),
                Some("start the inputs with `- `: this action's inputs are a list".into()),
            ),
        },
    }
}

fn input_hint(spec: &spec::ActionSpec) -> String {
    let names: Vec<String> = spec
        .fields
        .iter()
        .map(|f| {
            if f.required {
                format!("{} (required)", f.name)
            } else {
                f.name.to_string()
            }
        })
        .collect();
    format!(
        "`{}` inputs: {}",
        spec.name,
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    )
}

fn check_input_map(
    spec: &spec::ActionSpec,
    map: &Node,
    field: &str,
    os: OsPlatform,
    d: &mut Diagnostics,
) {
    let name = spec.name;
    for (k, v) in map.as_map().unwrap_or_default() {
        let key = k.as_str().unwrap_or_default();
        if os == OsPlatform::Windows
            && LINUX_ONLY_INPUTS
                .iter()
                .any(|(a, keys)| *a == name && keys.contains(&key))
        {
            d.error(
                k.pos,
                "input-platform",
                format!("{field}.{key}"),
                format!("`{name}.{key}`: `{key}` is not supported on Windows"),
                Some("remove it; set Windows ACLs with ExecutePowerShell instead".into()),
            );
            continue;
        }
        let Some(f) = spec.field(key) else {
            d.error(
                k.pos,
                "unknown-input",
                format!("{field}.{key}"),
                format!("`{name}` has no input `{key}`"),
                did_you_mean(key, spec.fields.iter().map(|f| f.name)).or(Some(input_hint(spec))),
            );
            continue;
        };
        check_kind(name, f, v, &format!("{field}.{key}"), d);
    }
    for f in spec.fields.iter().filter(|f| f.required) {
        if map.get(f.name).is_none_or(Node::is_null) {
            d.error(
                map.pos,
                "input-missing",
                format!("{field}.{}", f.name),
                format!("`{name}` needs the input `{}`", f.name),
                Some(input_hint(spec)),
            );
        }
    }
    if name == "ExecutePowerShell" && (map.get("commands").is_some() == map.get("file").is_some()) {
        d.error(
            map.pos,
            "input-missing",
            field,
            "ExecutePowerShell takes exactly one of `commands` or `file`",
            Some("give `commands:` (a list of lines) or `file:` (a .ps1 path), not both".into()),
        );
    }
}

fn check_kind(action: &str, f: &spec::Field, v: &Node, field: &str, d: &mut Diagnostics) {
    let is_expr = |n: &Node| n.as_str().is_some_and(|s| s.contains("{{"));
    let bad = |d: &mut Diagnostics, what: &str, hint: Option<String>| {
        d.error(
            v.pos,
            "input-type",
            field,
            format!(
                "`{action}.{}` must be {what}, found {}",
                f.name,
                v.kind_name()
            ),
            hint,
        );
    };
    match f.kind {
        Kind::Any => {}
        Kind::Str => match v.as_str() {
            None => bad(
                d,
                "a string",
                Some("quote the value if it should be text, e.g. `'{…}'`".into()),
            ),
            Some(s)
                if !f.one_of.is_empty()
                    && !s.contains("{{")
                    && !f.one_of.iter().any(|o| o.eq_ignore_ascii_case(s)) =>
            {
                d.error(
                    v.pos,
                    "input-value",
                    field,
                    format!("`{s}` is not a valid `{}`", f.name),
                    Some(match did_you_mean(s, f.one_of.iter().copied()) {
                        Some(dym) => format!("{dym} (one of: {})", f.one_of.join(", ")),
                        None => format!("one of: {}", f.one_of.join(", ")),
                    }),
                );
            }
            Some(s)
                if f.name == "permissions"
                    && !s.contains("{{")
                    && !(s.len() >= 3
                        && s.len() <= 4
                        && s.chars().all(|c| ('0'..='7').contains(&c))) =>
            {
                d.error(
                    v.pos,
                    "input-value",
                    field,
                    format!("permissions `{s}` is not an octal mode"),
                    Some("write e.g. `permissions: 0755` or `'644'`".into()),
                );
            }
            Some(_) => {}
        },
        Kind::Bool => match v.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("true" | "false") => {}
            _ if is_expr(v) => {}
            Some(s) => d.error(
                v.pos,
                "input-type",
                field,
                format!("`{}` must be true or false, found `{s}`", f.name),
                Some(format!("write `{}: true` or `{}: false`", f.name, f.name)),
            ),
            None => bad(d, "true or false", None),
        },
        Kind::Int => match v.as_str() {
            Some(s) if s.parse::<i64>().is_ok() || s.contains("{{") => {}
            Some(s) => d.error(
                v.pos,
                "input-type",
                field,
                format!("`{}` must be an integer, found `{s}`", f.name),
                Some(format!("write a whole number, e.g. `{}: 10`", f.name)),
            ),
            None => bad(d, "an integer", None),
        },
        Kind::StrList => match v.as_seq() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    if item.as_str().is_none() {
                        d.error(
                            item.pos,
                            "input-type",
                            format!("{field}[{i}]"),
                            format!(
                                "items of `{}` must be strings, found {}",
                                f.name,
                                item.kind_name()
                            ),
                            Some("quote items that start with `{` or contain `: `".into()),
                        );
                    }
                }
            }
            None => bad(
                d,
                "a list of strings",
                Some(match v.as_str() {
                    Some(s) => format!(
                        "write one item per line under `{}:`, e.g. `- {}`",
                        f.name,
                        s.lines().next().unwrap_or_default()
                    ),
                    None => format!("write one item per line under `{}:`, e.g. `- …`", f.name),
                }),
            ),
        },
        Kind::StrMap => {
            if v.as_map().is_none() {
                bad(
                    d,
                    "a map",
                    Some(format!(
                        "write `{}:` with `KEY: value` lines under it",
                        f.name
                    )),
                );
            }
        }
        Kind::NameValueList => match v.as_seq() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ok = item.as_map().is_some()
                        && item.get("name").and_then(Node::as_str).is_some()
                        && item.get("value").is_some()
                        && item.as_map().unwrap_or_default().len() == 2;
                    if !ok {
                        d.error(
                            item.pos,
                            "input-type",
                            format!("{field}[{i}]"),
                            "each parameter is a map of `name` and `value`",
                            Some("write `- name: Param` and `value: x`".into()),
                        );
                    }
                }
            }
            None => bad(
                d,
                "a list of `{name, value}` maps",
                Some("write `- name: Param` and `value: x` under `parameters:`".into()),
            ),
        },
    }
}
