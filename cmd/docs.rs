//! Man pages (`man/`) and shell completions (`completions/`) generated from the clap
//! definitions and checked in. The test below fails when they are stale;
//! `NSQRS_UPDATE_DOCS=1 cargo test --bin nsqrs docs_are_current` rewrites them.
//!
//! A subcommand's page is `nsqrs-<name>(1)`, its synopsis the command as typed (`nsqrs
//! trace`), and it ends with the examples `--help` shows and the pages that exist to see
//! next; every page carries the release it documents.

use clap::Command;
use clap_complete::Shell;
use clap_mangen::roff::{roman, Roff};
use clap_mangen::Man;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every generated file: its path relative to the repository and its contents.
pub fn generated() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    // `nsqrs help` is clap's, and has no page of its own to point at.
    let cmd = crate::help::command().disable_help_subcommand(true);
    let pages: Vec<String> = cmd
        .get_subcommands()
        .map(|s| format!("nsqrs-{}", s.get_name()))
        .collect();
    out.push(("man/nsqrs.1".to_string(), render_man(&cmd, "nsqrs", &pages)));
    for sub in cmd.get_subcommands() {
        let page = format!("nsqrs-{}", sub.get_name());
        let shown = sub
            .clone()
            .display_name(page.clone())
            .bin_name(format!("nsqrs {}", sub.get_name()));
        let others: Vec<String> = std::iter::once("nsqrs".to_string())
            .chain(pages.iter().filter(|p| **p != page).cloned())
            .collect();
        out.push((
            format!("man/{page}.1"),
            render_man(&shown, sub.get_name(), &others),
        ));
    }
    for (shell, file) in [
        (Shell::Bash, "nsqrs.bash"),
        (Shell::Zsh, "_nsqrs"),
        (Shell::Fish, "nsqrs.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut crate::help::command(), "nsqrs", &mut buf);
        out.push((format!("completions/{file}"), buf));
    }
    out
}

/// clap_mangen's sections, then EXAMPLES (`examples_of` in help.rs), SEE ALSO and VERSION.
fn render_man(cmd: &Command, examples_of: &str, see_also: &[String]) -> Vec<u8> {
    let man = Man::new(cmd.clone())
        .source(format!("nsqrs {VERSION}"))
        .manual("nsqrs manual");
    let mut buf = Vec::new();
    man.render_title(&mut buf).expect("render man page");
    man.render_name_section(&mut buf).expect("render man page");
    man.render_synopsis_section(&mut buf).expect("render man page");
    man.render_description_section(&mut buf).expect("render man page");
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut buf).expect("render man page");
    }
    if cmd.get_subcommands().next().is_some() {
        man.render_subcommands_section(&mut buf).expect("render man page");
    }
    let mut roff = Roff::default();
    let examples = crate::help::examples(examples_of);
    if !examples.is_empty() {
        roff.control("SH", ["EXAMPLES"]);
        for (what, line) in examples {
            roff.control("PP", []);
            roff.text([roman(*what)]);
            roff.control("PP", []);
            roff.control("RS", ["4"]);
            roff.control("nf", []);
            for l in line.lines() {
                roff.text([roman(l)]);
            }
            roff.control("fi", []);
            roff.control("RE", []);
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    let refs: Vec<String> = see_also.iter().map(|p| format!("{p}(1)")).collect();
    roff.text([roman(refs.join(", "))]);
    roff.control("SH", ["VERSION"]);
    roff.text([roman(format!("nsqrs {VERSION}"))]);
    roff.to_writer(&mut buf).expect("render man page");
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
        // A page nothing generates any more (a removed subcommand) is stale too.
        let made: Vec<String> = generated().into_iter().map(|(rel, _)| rel).collect();
        for entry in std::fs::read_dir(root.join("man")).unwrap() {
            let rel = format!("man/{}", entry.unwrap().file_name().to_string_lossy());
            if !made.contains(&rel) {
                if update {
                    std::fs::remove_file(root.join(&rel)).unwrap();
                } else {
                    stale.push(rel);
                }
            }
        }
        assert!(
            stale.is_empty(),
            "stale generated docs {stale:?}: run NSQRS_UPDATE_DOCS=1 cargo test --bin nsqrs docs_are_current"
        );
    }

    /// Every page a page names exists, and each names the release.
    #[test]
    fn pages_name_only_pages_that_exist() {
        let files = generated();
        let pages: Vec<String> = files
            .iter()
            .filter_map(|(rel, _)| rel.strip_prefix("man/").and_then(|p| p.strip_suffix(".1")))
            .map(|p| p.replace('-', "\\-"))
            .collect();
        for (rel, content) in files.iter().filter(|(rel, _)| rel.starts_with("man/")) {
            let text = String::from_utf8_lossy(content);
            for (i, _) in text.match_indices("(1)") {
                let start = text[..i]
                    .rfind(|c: char| c.is_whitespace() || c == ',')
                    .map_or(0, |s| s + 1);
                let named = &text[start..i];
                assert!(pages.iter().any(|p| p == named), "{rel} names {named}(1)");
            }
            assert!(text.contains(&format!("nsqrs {VERSION}")), "{rel} has no version");
            assert!(text.contains(".SH EXAMPLES"), "{rel} has no examples");
        }
    }
}
