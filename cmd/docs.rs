//! Man pages (`man/`) and shell completions (`completions/`) generated from the clap
//! definitions and checked in. The test below fails when they are stale;
//! `NSQRS_UPDATE_DOCS=1 cargo test --bin nsqrs docs_are_current` rewrites them.

use clap::CommandFactory;
use clap_complete::Shell;

/// Every generated file: its path relative to the repository and its contents.
pub fn generated() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let cmd = crate::Cli::command();
    out.push(("man/nsqrs.1".to_string(), render_man(&cmd)));
    for sub in cmd.get_subcommands() {
        let name = format!("nsqrs-{}", sub.get_name());
        let sub = sub.clone().name(name.clone());
        out.push((format!("man/{name}.1"), render_man(&sub)));
    }
    for (shell, file) in [
        (Shell::Bash, "nsqrs.bash"),
        (Shell::Zsh, "_nsqrs"),
        (Shell::Fish, "nsqrs.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut crate::Cli::command(), "nsqrs", &mut buf);
        out.push((format!("completions/{file}"), buf));
    }
    out
}

fn render_man(cmd: &clap::Command) -> Vec<u8> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .expect("render man page");
    buf
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn docs_are_current() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let update = std::env::var_os("NSQRS_UPDATE_DOCS").is_some();
        let mut stale = Vec::new();
        for (rel, content) in generated() {
            let path = root.join(&rel);
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &content).unwrap();
            } else if std::fs::read(&path).ok().as_deref() != Some(&content[..]) {
                stale.push(rel);
            }
        }
        assert!(
            stale.is_empty(),
            "stale generated docs {stale:?}: run NSQRS_UPDATE_DOCS=1 cargo test --bin nsqrs docs_are_current"
        );
    }
}
