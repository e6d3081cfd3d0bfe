//! Evaluates conditions (`if` and `Assert`) on a target: comparisons,
//! file and binary checks, and short-circuiting logical operators.

use std::future::Future;
use std::pin::Pin;

use super::condition::{compare_numbers, compare_strings, CmpOp, Cond};
use super::scope::Scope;
use crate::target::{FileKind, Target};

type BoxFuture<'f, T> = Pin<Box<dyn Future<Output = T> + Send + 'f>>;

/// Evaluates `cond`, resolving its operands in `scope`.
pub(crate) fn eval<'f>(
    target: &'f dyn Target,
    cond: &'f Cond,
    scope: &'f Scope<'_>,
    chain_log: &'f mut Vec<(String, String)>,
) -> BoxFuture<'f, Result<bool, String>> {
    Box::pin(async move {
        match cond {
            Cond::And(items) => {
                for c in items {
                    if !eval(target, c, scope, chain_log).await? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Cond::Or(items) => {
                for c in items {
                    if eval(target, c, scope, chain_log).await? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Cond::Not(inner) => Ok(!eval(target, inner, scope, chain_log).await?),
            Cond::Cmp {
                op, operand, value, ..
            } => {
                let a = scope.render(operand, chain_log)?;
                let b = value
                    .as_deref()
                    .map(|v| scope.render(v, chain_log))
                    .transpose()?
                    .unwrap_or_default();
                compare(target, *op, &a, &b).await
            }
        }
    })
}

async fn compare(target: &dyn Target, op: CmpOp, a: &str, b: &str) -> Result<bool, String> {
    use CmpOp::*;
    Ok(match op {
        StringIsEmpty => a.is_empty(),
        StringIsWhitespace => !a.is_empty() && a.chars().all(char::is_whitespace),
        StringEquals
        | StringLessThan
        | StringLessThanEquals
        | StringGreaterThan
        | StringGreaterThanEquals => compare_strings(op, a, b),
        NumberEquals
        | NumberLessThan
        | NumberLessThanEquals
        | NumberGreaterThan
        | NumberGreaterThanEquals => compare_numbers(op, a, b),
        PatternMatches => regex::Regex::new(a)
            .map_err(|e| format!("patternMatches: {e}"))?
            .is_match(b),
        BinaryExists => {
            let args = [
                "-c".to_string(),
                "command -v -- \"$1\" >/dev/null 2>&1".to_string(),
                "sh".to_string(),
                a.to_string(),
            ];
            let out = target
                .capture("sh", &args)
                .await
                .map_err(|e| e.to_string())?;
            out.code == Some(0)
        }
        FileExists | FolderExists => {
            let want = if op == FileExists {
                FileKind::File
            } else {
                FileKind::Dir
            };
            target
                .stat(a, true)
                .await
                .map_err(|e| e.to_string())?
                .is_some_and(|s| s.kind == want)
        }
        FileMd5Equals | FileSha1Equals | FileSha256Equals | FileSha512Equals => {
            match target.stat(b, true).await.map_err(|e| e.to_string())? {
                Some(s) if s.kind == FileKind::File => {}
                _ => return Ok(false),
            }
            let data = target.read(b).await.map_err(|e| e.to_string())?;
            use sha2::Digest;
            let digest = match op {
                FileMd5Equals => hex::encode(md5::Md5::digest(&data)),
                FileSha1Equals => hex::encode(sha1::Sha1::digest(&data)),
                FileSha256Equals => hex::encode(sha2::Sha256::digest(&data)),
                _ => hex::encode(sha2::Sha512::digest(&data)),
            };
            digest.eq_ignore_ascii_case(a.trim())
        }
    })
}
