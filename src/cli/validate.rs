//! `kiln validate RECIPE`: checks a recipe and every component it names.

use std::path::PathBuf;

use clap::Args;

use super::toe::invalid_report;
use super::{CliError, EXIT_SUCCESS};
use crate::recipe::{self, RecipeError};
use crate::util::display::chain;

/// Arguments of `kiln validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The recipe file: kiln's YAML recipe, or the JSON `aws imagebuilder get-image-recipe` prints.
    pub recipe: PathBuf,
    /// Print the problems as a JSON array of diagnostics (`[]` when valid).
    #[arg(long)]
    pub json: bool,
}

/// Runs `kiln validate`: exit 0 with a one-line summary when the recipe and
/// its components are valid, exit 2 with every problem otherwise.
pub fn run(args: ValidateArgs) -> Result<u8, CliError> {
    match recipe::load_resolved(&args.recipe) {
        Ok((recipe, components)) => {
            if args.json {
                println!("[]");
            } else {
                let tests = components.iter().filter(|c| c.is_test_only).count();
                let line = format!(
                    "{}: valid: {} {} (parent: {}; {} component{}, {tests} test-only)",
                    args.recipe.display(),
                    recipe.name,
                    recipe.version,
                    recipe.parent.summary(),
                    components.len(),
                    if components.len() == 1 { "" } else { "s" },
                );
                println!("{}", crate::util::display::Escaped(&line));
            }
            Ok(EXIT_SUCCESS)
        }
        Err(RecipeError::Invalid(diags)) => {
            if args.json {
                let text = serde_json::to_string_pretty(&diags).map_err(anyhow::Error::from)?;
                println!("{text}");
                Err(CliError::Invalid(format!("{} problem(s) found", diags.len())))
            } else {
                Err(CliError::Invalid(invalid_report(&diags, &[])))
            }
        }
        Err(e @ RecipeError::Io { .. }) => Err(CliError::Invalid(format!(
            "error: {}\n  hint: give the path of a recipe file (kiln's YAML, or the JSON `aws imagebuilder get-image-recipe` prints)",
            chain(&e)
        ))),
    }
}
