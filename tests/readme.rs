//! Every `unmask` command the README shows runs as written and succeeds (in a scratch folder
//! that sees the repository's `models/`, `tests/` and `www/`, so what the examples write stays
//! out of the tree). The README's JS examples run in Chromium (tests/browser/readme.test.mjs).

use std::path::{Path, PathBuf};
use std::process::Command;

const PREFIX: &str = "cargo run --release -- ";

/// The README's `cargo run --release -- …` lines, comments dropped, as argument lists.
fn examples(readme: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line.trim() == "```sh";
            continue;
        }
        if let Some(cmd) = line.strip_prefix(PREFIX).filter(|_| in_sh) {
            let cmd = cmd.split(" # ").next().unwrap().trim();
            out.push((cmd.to_string(), split(cmd)));
        }
    }
    out
}

/// Shell words: spaces separate, double quotes group (all the README uses).
fn split(cmd: &str) -> Vec<String> {
    let (mut words, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in cmd.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    assert!(!quoted, "unbalanced quotes in `{cmd}`");
    if any || !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn scratch_with_repo_links() -> tempfile::TempDir {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for d in ["models", "tests", "www"] {
        std::os::unix::fs::symlink(root.join(d), dir.path().join(d)).unwrap();
    }
    dir
}

fn run(dir: &Path, args: &[String]) -> (String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_unmask")).args(args).current_dir(dir).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(o.status.success(), "`unmask {}` failed ({:?}):\n{err}", args.join(" "), o.status.code());
    (out, err)
}

#[test]
fn the_readme_cli_examples_run() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let cmds = examples(&readme);
    let names: Vec<&str> = cmds.iter().map(|(_, a)| a[0].as_str()).collect();
    for sub in ["generate", "convert", "info", "train", "eval", "bench"] {
        assert!(names.contains(&sub), "the README shows no `unmask {sub}`: {names:?}");
    }
    let dir = scratch_with_repo_links();
    for (cmd, args) in &cmds {
        let t0 = std::time::Instant::now();
        let (out, _) = run(dir.path(), args);
        assert!(!out.trim().is_empty(), "`{cmd}` printed nothing");
        if args[0] == "generate" {
            let text = out.lines().last().unwrap();
            assert!(!text.contains("[MASK]"), "`{cmd}` left masks: {text}");
        }
        println!("{:6.1} s  unmask {cmd}\n          {}", t0.elapsed().as_secs_f64(), out.lines().last().unwrap());
    }
}

#[test]
fn the_example_parser_reads_quotes_and_comments() {
    let md = "```sh\ncargo run --release -- generate --infill \"The [MASK:3] sat.\" -n 4   # a comment\n```\n\
              cargo run --release -- not in a block\n```js\ncargo run --release -- nor here\n```\n";
    let ex = examples(md);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].1, ["generate", "--infill", "The [MASK:3] sat.", "-n", "4"]);
}
