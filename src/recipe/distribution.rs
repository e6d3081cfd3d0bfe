//! The recipe's `distribution:` block (a kiln extension): the formats the
//! tested image is exported to, besides its qcow2, and the AMI it is
//! imported as.

use super::fields::{optional, Field};
use crate::ami::AmiSpec;
use crate::export::format::{self, ExportFormat};
use crate::util::diag::{did_you_mean, Diagnostics};

const KEYS: &[&str] = &["formats", "ami"];

/// Where a built image goes, besides `image.qcow2`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Distribution {
    /// The export formats, in the order written, without repeats.
    pub formats: Vec<ExportFormat>,
    /// `distribution.ami`: import the tested image as an AMI.
    pub ami: Option<AmiSpec>,
}

/// Reads `distribution:`.
pub(crate) fn parse(f: &Field<'_>, d: &mut Diagnostics) -> Option<Distribution> {
    let obj = f.obj(d)?;
    obj.check_keys(KEYS, d);
    let formats = match obj.get("formats") {
        Some(list) => parse_formats(&list, d),
        None => Some(Vec::new()),
    };
    let ami = optional(obj.get("ami").map(|a| super::ami::parse(&a, d)));
    Some(Distribution {
        formats: formats?,
        ami: ami?,
    })
}

/// Reads a list of export format names, each once.
pub(crate) fn parse_formats(list: &Field<'_>, d: &mut Diagnostics) -> Option<Vec<ExportFormat>> {
    let mut out = Vec::new();
    let mut ok = true;
    for item in list.seq(d)? {
        let Some(name) = item.str(d) else {
            ok = false;
            continue;
        };
        match name.parse::<ExportFormat>() {
            Ok(f) if out.contains(&f) => item.error(
                d,
                "duplicate-format",
                format!("the format `{name}` is listed twice"),
                Some("list each format once".into()),
            ),
            Ok(f) => out.push(f),
            Err(_) => {
                ok = false;
                let names = format::ALL.iter().map(|(_, n)| *n);
                let hint = did_you_mean(name, names)
                    .unwrap_or_else(|| format!("supported: {}", format::names()));
                item.error(
                    d,
                    "unknown-format",
                    format!("kiln cannot export to `{name}`"),
                    Some(hint),
                );
            }
        }
    }
    ok.then_some(out)
}
