//! The README's "Use it in your crate" lines are enough: builds a fresh
//! crate outside the workspace from exactly those `Cargo.toml` lines (with
//! `remote-core` as a path dependency) and runs its chat server and client.
//!
//! Uses its own target directory under the workspace's (`target/user-crate`)
//! so it does not wait on the lock of the build running this test; the
//! first run compiles the dependencies once, later runs only check them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `[dependencies]` block of the README's "Use it in your crate" section.
fn readme_dependencies(readme: &str) -> String {
    let section = readme
        .split("## Use it in your crate")
        .nth(1)
        .expect("README has a \"Use it in your crate\" section");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the section has a toml block");
    assert!(block.starts_with("[dependencies]\n"), "{block}");
    block.to_owned()
}

#[test]
fn a_crate_outside_the_workspace_builds_from_the_readme_lines() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = core.parent().unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let deps = readme_dependencies(&readme);
    let mut lines = Vec::new();
    let mut found = false;
    for line in deps.lines() {
        if line.starts_with("remote-core = ") {
            found = true;
            lines.push(format!(
                "remote-core = {{ path = {:?} }}",
                core.display().to_string()
            ));
        } else {
            lines.push(line.to_owned());
        }
    }
    assert!(found, "the README's lines name remote-core: {deps}");
    for needed in ["tokio = ", "thiserror = "] {
        assert!(
            deps.contains(needed),
            "the README's lines name {needed}: {deps}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path();
    std::fs::create_dir(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"user-crate\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n{}\n\n[workspace]\n",
            lines.join("\n")
        ),
    )
    .unwrap();
    // The workspace's lock file pins the same versions, so the build works
    // offline from the local registry cache.
    std::fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    std::fs::copy(
        core.join("tests/fixtures/user_crate_main.rs"),
        krate.join("src/main.rs"),
    )
    .unwrap();

    let target: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("user-crate");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "--offline", "--quiet", "--manifest-path"])
        .arg(krate.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        // This build only has to succeed and run: no debug info and no
        // incremental state, which would double its disk for nothing (a CI
        // machine ran out of disk in this build).
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the user crate does not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run = Command::new(target.join("debug").join("user-crate"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "the user crate fails:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "user crate ok");
}
