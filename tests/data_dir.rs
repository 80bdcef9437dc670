//! Where the broker keeps its files: a first `./nsqrs serve` in the directory that holds the
//! binary, a data directory from before the store folder was renamed, and start-up errors
//! that name the path they are about.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nsqrs_testkit::{bin, run_tool, Nsqd};

fn serve_in(dir: &Path, program: &Path, extra: &[&str]) -> Nsqd {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir)
        .args([
            "serve",
            "--tcp-address=127.0.0.1:0",
            "--http-address=127.0.0.1:0",
            "--embedded-lookupd=false",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    Nsqd::spawn(cmd, dir)
}

fn publish(n: &Nsqd, topic: &str, body: &str) {
    let (code, text) = n.post(&format!("/pub?topic={topic}"), body.as_bytes());
    assert_eq!((code, text.as_str()), (200, "OK"));
}

fn depth(n: &Nsqd, topic: &str) -> i64 {
    n.stats()["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == topic)
        .map_or(-1, |t| t["depth"].as_i64().unwrap())
}

#[test]
fn serve_starts_beside_its_own_binary() {
    let dir = tempfile::tempdir().unwrap();
    // The binary is in the directory that becomes the data path (the default, cwd).
    let program = dir.path().join("nsqrs");
    std::fs::copy(bin(), &program).unwrap();
    let n = serve_in(dir.path(), &program, &[]);
    publish(&n, "t", "kept");
    assert!(dir.path().join("nsqrs-data/topics/t_t").is_dir());
    let (code, _) = n.terminate();
    assert_eq!(code, Some(0));
    assert!(program.is_file(), "the binary is untouched");
    let n = serve_in(dir.path(), &program, &[]);
    assert_eq!(depth(&n, "t"), 1);
}

#[test]
fn a_store_folder_of_the_old_name_is_moved_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let n = Nsqd::start_in(dir.path(), &[]);
    publish(&n, "t", "one");
    publish(&n, "t", "two");
    let (code, _) = n.terminate();
    assert_eq!(code, Some(0));
    std::fs::rename(dir.path().join("nsqrs-data"), dir.path().join("nsqrs")).unwrap();

    let n = Nsqd::start_in(dir.path(), &[]);
    assert_eq!(depth(&n, "t"), 2, "messages of {data}/nsqrs are still there");
    assert!(!dir.path().join("nsqrs").exists());
    assert!(dir.path().join("nsqrs-data/topics/t_t").is_dir());
}

#[test]
fn start_up_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("nsqrs-data");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let data = format!("--data-path={}", dir.path().display());
    let out = run_tool(
        &[
            "serve",
            "--tcp-address=127.0.0.1:0",
            "--http-address=127.0.0.1:0",
            "--embedded-lookupd=false",
            &data,
        ],
        b"",
        Duration::from_secs(20),
    );
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&blocker.display().to_string()),
        "the error names {}: {err}",
        blocker.display()
    );

    // A data path below a file.
    let below = dir.path().join("a-file");
    std::fs::write(&below, b"x").unwrap();
    let data = format!("--data-path={}/sub", below.display());
    let out = run_tool(
        &[
            "serve",
            "--tcp-address=127.0.0.1:0",
            "--http-address=127.0.0.1:0",
            "--embedded-lookupd=false",
            &data,
        ],
        b"",
        Duration::from_secs(20),
    );
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}/sub", below.display())), "{err}");
}
