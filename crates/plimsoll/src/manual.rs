//! What the command line says about itself beyond `--help`: the version with its git revision,
//! shell completions (clap_complete) and man pages (clap_mangen), all generated from the one
//! clap definition in `cli.rs`, so they cannot drift from it.

use std::path::Path;

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::stdout::out;

/// `plimsoll --version`: the crate's version and the git revision it was built from
/// (`build.rs`; "unknown" when it was built outside a git checkout and without cargo's record).
pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("PLIMSOLL_REVISION"),
    ")"
);

/// `plimsoll completions SHELL`: the completion script on standard output.
pub(crate) fn completions(args: &CompletionsArgs) -> Result<u8> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "plimsoll", &mut script);
    out!("{}", String::from_utf8_lossy(&script))?;
    Ok(crate::exit::OK)
}

/// `plimsoll man [--out DIR]`: plimsoll(1) on standard output, or every page into DIR.
pub(crate) fn man(args: &ManArgs) -> Result<u8> {
    let pages = pages()?;
    match &args.out {
        None => {
            let (_, top) = pages.last().context("no man page was rendered")?;
            out!("{}", String::from_utf8_lossy(top))?;
        }
        Some(dir) => {
            write_pages(dir, &pages)?;
            for (name, _) in &pages {
                crate::stdout::outln!("{}", dir.join(name).display())?;
            }
        }
    }
    Ok(crate::exit::OK)
}

/// Every page, rendered in memory before anything is written: `(file name, roff)`, the
/// subcommands first and plimsoll.1 last, as clap_mangen orders them.
fn pages() -> Result<Vec<(String, Vec<u8>)>> {
    fn render(command: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            render(sub, pages)?;
        }
        let page = clap_mangen::Man::new(command.clone()).manual("Plimsoll Manual");
        let mut roff = Vec::new();
        page.render(&mut roff)
            .with_context(|| format!("cannot render {}", page.get_filename()))?;
        pages.push((page.get_filename(), roff));
        Ok(())
    }
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut pages = Vec::new();
    render(&command, &mut pages)?;
    Ok(pages)
}

/// Writes each page to a temporary file in `dir` and renames it into place, so a page is
/// either the old one or the whole new one.
fn write_pages(dir: &Path, pages: &[(String, Vec<u8>)]) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the man page folder '{}'", dir.display()))?;
    for (name, roff) in pages {
        let path = dir.join(name);
        let temporary = dir.join(format!(".{name}.tmp"));
        std::fs::write(&temporary, roff)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&temporary);
            })
            .with_context(|| format!("cannot write '{}'", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_command_has_a_man_page_and_the_top_one_names_them() {
        let pages = pages().expect("render");
        let names: Vec<&str> = pages.iter().map(|(name, _)| name.as_str()).collect();
        for expected in [
            "plimsoll.1",
            "plimsoll-run.1",
            "plimsoll-heap-diff.1",
            "plimsoll-completions.1",
        ] {
            assert!(names.contains(&expected), "{expected} missing: {names:?}");
        }
        let (_, top) = pages.last().expect("a page");
        let top = String::from_utf8_lossy(top);
        assert!(top.starts_with(".ie \\n(.g .ds Aq"), "{top}");
        assert!(top.contains(".TH plimsoll 1"), "{top}");
        assert!(top.contains("plimsoll\\-soak(1)"), "{top}");
    }
}
