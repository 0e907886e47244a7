//! `vip-assets --out DIR`: the man pages (`DIR/man/vip.1`, `vip-run.1`, ...) and
//! the bash, zsh and fish completions (`DIR/completions/`) that the package
//! ships, made from the `vip` binary's own clap definitions so they cannot
//! drift apart. `cargo xtask dist` runs it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{CommandFactory, Parser};
use clap_complete::Shell;
use vip_userspace::cli::Cli;

/// Writes vip's man pages and shell completions.
#[derive(Parser)]
struct Args {
    /// The directory to write `man/` and `completions/` into.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    generate(Cli::command(), &args.out)
}

fn generate(mut command: clap::Command, out: &Path) -> anyhow::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    command.build();
    // vip(1), and vip-run(1) and the like for each subcommand but `help`.
    let pages = std::iter::once((command.get_name().to_string(), command.clone())).chain(
        command
            .get_subcommands()
            .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
            .map(|sub| {
                let name = format!("{}-{}", command.get_name(), sub.get_name());
                (name.clone(), sub.clone().name(name))
            }),
    );
    for (name, page) in pages {
        let path = man.join(format!("{name}.1"));
        let mut text = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut text)
            .and_then(|()| std::fs::write(&path, text))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, "vip", &completions)
            .with_context(|| format!("writing {shell} completions to {}", completions.display()))?;
    }
    Ok(())
}
