//! `kiln images list|show|delete|deprecate|keep`: the image catalog.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{print_json, CliError, EXIT_SUCCESS};
use crate::catalog::{self, Catalog, CatalogError, Image, ImageRef};

/// Arguments of `kiln images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// The catalog file (default: $KILN_DATA_DIR/catalog.sqlite, else $XDG_DATA_HOME/kiln/…, else ~/.local/share/kiln/…).
    #[arg(long, global = true)]
    pub catalog: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: ImagesCommand,
}

/// `kiln images` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// List images (every status), by name and version.
    List {
        /// Only images of this name.
        name: Option<String>,
        /// Print a JSON array of images.
        #[arg(long)]
        json: bool,
    },
    /// Show one image: NAME/x.y.z/n, or NAME/x.y.z or NAME/1.x.x for the newest available build.
    Show {
        /// The image.
        image: String,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete one image (NAME/x.y.z/n) and its published folder; refused for the parent of another image or one marked keep.
    Delete {
        /// The image, NAME/x.y.z/n.
        image: String,
        /// Remove only the catalog entry, not the files.
        #[arg(long)]
        keep_files: bool,
        /// Print the deleted image as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deprecate one image (NAME/x.y.z/n): wildcards no longer resolve to it.
    Deprecate {
        /// The image, NAME/x.y.z/n.
        image: String,
        /// Print the image as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Mark one image (NAME/x.y.z/n) keep: retention and delete leave it alone.
    Keep {
        /// The image, NAME/x.y.z/n.
        image: String,
        /// Clear the mark instead.
        #[arg(long)]
        off: bool,
        /// Print the image as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn fail(e: CatalogError) -> CliError {
    if e.is_user_error() {
        CliError::Invalid(format!("error: {e}"))
    } else {
        CliError::Failed(anyhow::Error::new(e))
    }
}

/// Opens the catalog named by `--catalog` or the environment.
pub fn open(path: Option<PathBuf>) -> Result<Catalog, CliError> {
    let path = match path {
        Some(p) => p,
        None => catalog::default_path(|k| std::env::var(k).ok()).map_err(fail)?,
    };
    Catalog::open(&path).map_err(fail)
}

/// Parses a reference that must name one build.
fn exact(text: &str) -> Result<ImageRef, CliError> {
    let r = ImageRef::parse(text).map_err(fail)?;
    if r.exact().is_none() {
        return Err(CliError::Invalid(format!(
            "error: `{text}` does not name one build\n  hint: write NAME/x.y.z/n, e.g. {}/1.0.0/1 (`kiln images list {}` shows them)",
            r.name, r.name
        )));
    }
    Ok(r)
}

/// One line per image: `NAME/x.y.z/n  status  [keep]  created  parent`.
pub fn table(images: &[Image]) -> String {
    let rows: Vec<[String; 4]> = images
        .iter()
        .map(|i| {
            [
                i.full_name(),
                if i.keep {
                    format!("{} keep", i.status)
                } else {
                    i.status.to_string()
                },
                i.created_at.clone(),
                i.parent.as_ref().map_or("-".into(), |p| p.origin.clone()),
            ]
        })
        .collect();
    let header = ["IMAGE", "STATUS", "CREATED", "PARENT"].map(String::from);
    let width = |c: usize| {
        std::iter::once(&header)
            .chain(&rows)
            .map(|r| r[c].chars().count())
            .max()
            .unwrap_or(0)
    };
    let w = [width(0), width(1), width(2)];
    std::iter::once(&header)
        .chain(&rows)
        .map(|r| {
            format!(
                "{:w0$}  {:w1$}  {:w2$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every field of one image, one per line.
pub fn details(i: &Image) -> String {
    let mut out = vec![
        format!("image:    {}", i.full_name()),
        format!("id:       {}", i.id),
        format!(
            "status:   {}{}",
            i.status,
            if i.keep { " (keep)" } else { "" }
        ),
        format!("inputs:   {}", i.inputs_digest),
        format!("created:  {}", i.created_at),
    ];
    let opt = |label: &str, v: &Option<String>| v.as_ref().map(|v| format!("{label}{v}"));
    out.extend(opt("finished: ", &i.finished_at));
    out.extend(opt("pipeline: ", &i.pipeline));
    if let Some(p) = &i.parent {
        out.push(format!("parent:   {} (sha256 {})", p.origin, p.sha256));
    }
    out.extend(opt("folder:   ", &i.location));
    out.extend(opt("logs:     ", &i.log_location));
    out.extend(opt("failure:  ", &i.failure));
    for a in &i.artifacts {
        out.push(format!(
            "artifact: {} ({}, {} bytes, sha256 {})",
            a.path, a.format, a.size, a.sha256
        ));
    }
    for a in &i.amis {
        out.push(format!("ami:      {} {}", a.region, a.ami_id));
    }
    out.join("\n")
}

/// Runs `kiln images`.
pub fn run(args: ImagesArgs) -> Result<u8, CliError> {
    let mut cat = open(args.catalog)?;
    match args.command {
        ImagesCommand::List { name, json } => {
            let images = cat.list(name.as_deref()).map_err(fail)?;
            if json {
                print_json(&images)?;
            } else if images.is_empty() {
                println!("no images in {}", cat.path().display());
            } else {
                println!("{}", table(&images));
            }
        }
        ImagesCommand::Show { image, json } => {
            let r = ImageRef::parse(&image).map_err(fail)?;
            let found = cat.find(&r).map_err(fail)?;
            if json {
                print_json(&found)?;
            } else {
                println!("{}", crate::util::redact::text(&details(&found)));
            }
        }
        ImagesCommand::Delete {
            image,
            keep_files,
            json,
        } => {
            let found = cat.find(&exact(&image)?).map_err(fail)?;
            let gone = cat.delete(found.id).map_err(fail)?;
            let removed = if keep_files {
                Vec::new()
            } else {
                catalog::files::remove_published(&gone).map_err(|e| {
                    CliError::Failed(anyhow::Error::new(e).context(format!(
                        "{} was removed from the catalog, but not all its files",
                        gone.full_name()
                    )))
                })?
            };
            if json {
                print_json(&gone)?;
            } else {
                println!("deleted {}", gone.full_name());
                for p in removed {
                    println!("  removed {}", p.display());
                }
            }
        }
        ImagesCommand::Deprecate { image, json } => {
            let found = cat.find(&exact(&image)?).map_err(fail)?;
            cat.deprecate(found.id).map_err(fail)?;
            let now = cat.get(found.id).map_err(fail)?;
            if json {
                print_json(&now)?;
            } else {
                println!("deprecated {}", now.full_name());
            }
        }
        ImagesCommand::Keep { image, off, json } => {
            let found = cat.find(&exact(&image)?).map_err(fail)?;
            cat.set_keep(found.id, !off).map_err(fail)?;
            let now = cat.get(found.id).map_err(fail)?;
            if json {
                print_json(&now)?;
            } else {
                println!(
                    "{} {}",
                    now.full_name(),
                    if off { "no longer kept" } else { "marked keep" }
                );
            }
        }
    }
    Ok(EXIT_SUCCESS)
}
