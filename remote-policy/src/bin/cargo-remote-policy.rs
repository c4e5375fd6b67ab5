//! `cargo remote-policy`: runs the remote-policy checker on a package's own
//! `#[remote]` descriptors with nothing added to the package.
//!
//! It writes the three-line policy binary into a small runner crate under
//! the workspace's target directory (depending on the package by path and
//! on `remote-policy`), builds it with the workspace's lockfile and target
//! directory, and runs it with your arguments:
//!
//! ```sh
//! cargo remote-policy -p my-crate -- --sarif remote-policy.sarif
//! cargo remote-policy -p my-crate -- diff --against schema/my-crate.json
//! ```
//!
//! Options before `--`: `-p/--package NAME`, `--manifest-path PATH`,
//! `--offline`, `--release`, `--target-dir DIR`, and the package's
//! features: `-F/--features LIST` (repeatable; comma- or space-separated),
//! `--all-features`, `--no-default-features`. Everything after `--` goes
//! to the checker (see `remote-policy --help`). The policy file is found
//! next to the package's `Cargo.toml`, as with the explicit binary.
//!
//! The schema is that of one build: `#[cfg]` on features, on
//! `debug_assertions` or on the target changes which types and methods
//! exist, so check each feature set and profile you ship (a review hid a
//! secret return type behind a feature the check did not enable).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use serde_json::Value;

#[derive(Debug, Default)]
struct Options {
    package: Option<String>,
    manifest_path: Option<PathBuf>,
    offline: bool,
    release: bool,
    target_dir: Option<PathBuf>,
    features: Vec<String>,
    all_features: bool,
    no_default_features: bool,
    rest: Vec<OsString>,
}

const USAGE: &str = "usage: cargo remote-policy [-p PACKAGE] [--manifest-path PATH] [--offline] [--release] [--target-dir DIR] [-F|--features LIST] [--all-features] [--no-default-features] [-- CHECKER ARGS...]";

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Options, String> {
    let mut o = Options::default();
    while let Some(a) = args.next() {
        let s = a.to_string_lossy().into_owned();
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match s.as_str() {
            "-p" | "--package" => o.package = Some(value(&s)?.to_string_lossy().into_owned()),
            "--manifest-path" => o.manifest_path = Some(value(&s)?.into()),
            "--target-dir" => o.target_dir = Some(value(&s)?.into()),
            "--offline" => o.offline = true,
            "--release" => o.release = true,
            "-F" | "--features" => o.features.extend(
                value(&s)?
                    .to_string_lossy()
                    .split([',', ' '])
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned),
            ),
            "--all-features" => o.all_features = true,
            "--no-default-features" => o.no_default_features = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            "--" => {
                o.rest.extend(args);
                break;
            }
            _ => {
                // Checker arguments without `--`.
                o.rest.push(a);
                o.rest.extend(args);
                break;
            }
        }
    }
    Ok(o)
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn metadata(o: &Options) -> Result<Value, String> {
    let mut cmd = Command::new(cargo());
    cmd.args(["metadata", "--format-version", "1", "--no-deps"]);
    if let Some(m) = &o.manifest_path {
        cmd.arg("--manifest-path").arg(m);
    }
    if o.offline {
        cmd.arg("--offline");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata output: {e}"))
}

/// The chosen package: by `-p`, else the one whose manifest is
/// `--manifest-path` (or the current directory's), else the only member.
fn pick<'m>(meta: &'m Value, o: &Options) -> Result<&'m Value, String> {
    let packages: Vec<&Value> = meta["packages"]
        .as_array()
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    if let Some(name) = &o.package {
        return packages
            .iter()
            .copied()
            .find(|p| p["name"] == name.as_str())
            .ok_or_else(|| format!("no package `{name}` in this workspace"));
    }
    let manifest = match &o.manifest_path {
        Some(m) => m.clone(),
        None => std::env::current_dir()
            .map_err(|e| e.to_string())?
            .join("Cargo.toml"),
    };
    let manifest = manifest.canonicalize().unwrap_or(manifest);
    if let Some(p) = packages.iter().copied().find(|p| {
        p["manifest_path"]
            .as_str()
            .is_some_and(|m| Path::new(m) == manifest)
    }) {
        return Ok(p);
    }
    match packages.as_slice() {
        [one] => Ok(one),
        _ => Err(format!(
            "several packages in this workspace: choose one with -p NAME\n{USAGE}"
        )),
    }
}

fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

/// The runner's `Cargo.toml`: it depends on the package at `dir` (its
/// library `lib`) with the features asked for (`declared`: the package's
/// own, for `--all-features`), and on remote-policy (`policy_dep`).
fn runner_manifest(
    runner_name: &str,
    (name, lib, dir): (&str, &str, &Path),
    o: &Options,
    declared: &[String],
    policy_dep: &str,
) -> String {
    let mut features: Vec<&str> = o.features.iter().map(String::as_str).collect();
    if o.all_features {
        features.extend(declared.iter().map(String::as_str));
    }
    features.sort_unstable();
    features.dedup();
    let features: Vec<String> = features.iter().map(|f| toml_str(f)).collect();
    format!(
        "# Generated by cargo remote-policy; safe to delete.\n\
         [package]\nname = {}\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\n{lib} = {{ package = {}, path = {}, default-features = {}, features = [{}] }}\n\
         remote-policy = {policy_dep}\n\n\
         [workspace]\n",
        toml_str(runner_name),
        toml_str(name),
        toml_str(&dir.to_string_lossy()),
        !o.no_default_features,
        features.join(", "),
    )
}

fn run() -> Result<ExitCode, String> {
    let mut args = std::env::args_os().skip(1).peekable();
    // `cargo remote-policy ...` runs us as `cargo-remote-policy remote-policy ...`.
    if args.peek().is_some_and(|a| a == "remote-policy") {
        args.next();
    }
    let o = parse(args)?;
    let meta = metadata(&o)?;
    let package = pick(&meta, &o)?;
    let name = package["name"].as_str().ok_or("package without a name")?;
    let manifest = PathBuf::from(
        package["manifest_path"]
            .as_str()
            .ok_or("no manifest path")?,
    );
    let dir = manifest.parent().ok_or("manifest without a directory")?;
    let lib = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "lib" || k == "rlib"))
        })
        .and_then(|t| t["name"].as_str())
        .ok_or_else(|| format!("package `{name}` has no library: the checker links the library's #[remote] descriptors"))?
        .replace('-', "_");
    let workspace = PathBuf::from(meta["workspace_root"].as_str().ok_or("no workspace root")?);
    let target = match &o.target_dir {
        Some(t) => t.clone(),
        None => PathBuf::from(
            meta["target_directory"]
                .as_str()
                .ok_or("no target directory")?,
        ),
    };
    // remote-policy itself: the workspace's own copy when it has one (this
    // repository, or a vendored one), else this version from the registry.
    let policy_dep = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "remote-policy")
        .and_then(|p| p["manifest_path"].as_str())
        .and_then(|m| {
            Path::new(m)
                .parent()
                .map(|d| format!("{{ path = {} }}", toml_str(&d.to_string_lossy())))
        })
        .unwrap_or_else(|| format!("\"={}\"", env!("CARGO_PKG_VERSION")));
    let runner_name = format!("remote-policy-runner-{name}");
    let runner = target.join("remote-policy-runner").join(name);
    std::fs::create_dir_all(runner.join("src"))
        .map_err(|e| format!("{}: {e}", runner.display()))?;
    let declared: Vec<String> = package["features"]
        .as_object()
        .map(|f| f.keys().cloned().collect())
        .unwrap_or_default();
    let cargo_toml = runner_manifest(&runner_name, (name, &lib, dir), &o, &declared, &policy_dep);
    let main_rs = format!(
        "// Generated by cargo remote-policy: the three-line policy binary.\n\
         use {lib} as _; // links the crate, and so its #[remote] descriptors\n\
         fn main() -> std::process::ExitCode {{\n    \
         remote_policy::run_cli(remote_policy::collect_with(|_| {{}}))\n}}\n"
    );
    let write = |path: PathBuf, text: &str| {
        // Unchanged files keep their timestamps, so nothing rebuilds.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok::<(), String>(())
    };
    write(runner.join("Cargo.toml"), &cargo_toml)?;
    write(runner.join("src/main.rs"), &main_rs)?;
    // The workspace's lockfile: the same versions, and no registry access
    // for what the workspace already resolved.
    if let Ok(lock) = std::fs::read_to_string(workspace.join("Cargo.lock")) {
        if !runner.join("Cargo.lock").exists() {
            write(runner.join("Cargo.lock"), &lock)?;
        }
    }
    let mut build = Command::new(cargo());
    build
        .arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(runner.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target);
    if o.offline {
        build.arg("--offline");
    }
    if o.release {
        build.arg("--release");
    }
    let status = build
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("building the policy runner for `{name}` failed"));
    }
    let exe = target
        .join(if o.release { "release" } else { "debug" })
        .join(format!("{runner_name}{}", std::env::consts::EXE_SUFFIX));
    let status = Command::new(&exe)
        .args(&o.rest)
        .env("CARGO_MANIFEST_DIR", dir)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(2)),
        None => ExitCode::from(2),
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cargo remote-policy: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> Options {
        parse(args.iter().map(OsString::from)).unwrap()
    }

    fn manifest(args: &[&str]) -> toml::Table {
        let o = options(args);
        let declared = ["admin".to_owned(), "default".to_owned(), "audit".to_owned()];
        let text = runner_manifest(
            "runner",
            ("my-crate", "my_crate", Path::new("/src/my-crate")),
            &o,
            &declared,
            "\"=0.1.0\"",
        );
        text.parse().unwrap()
    }

    fn dependency(t: &toml::Table) -> &toml::Table {
        t["dependencies"]["my_crate"].as_table().unwrap()
    }

    #[test]
    fn the_package_is_built_with_the_features_asked_for() {
        let plain = manifest(&[]);
        let dep = dependency(&plain);
        assert_eq!(dep["package"].as_str(), Some("my-crate"));
        assert_eq!(dep["default-features"].as_bool(), Some(true));
        assert!(dep["features"].as_array().unwrap().is_empty());

        let some = manifest(&[
            "-F",
            "admin,audit",
            "--features",
            "x y",
            "--no-default-features",
        ]);
        let dep = dependency(&some);
        assert_eq!(dep["default-features"].as_bool(), Some(false));
        let features: Vec<&str> = dep["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert_eq!(features, ["admin", "audit", "x", "y"]);

        let all = manifest(&["--all-features", "-F", "admin", "--", "--format", "json"]);
        let features: Vec<&str> = dependency(&all)["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert_eq!(features, ["admin", "audit", "default"]);
    }

    #[test]
    fn checker_arguments_are_passed_on() {
        let o = options(&["-p", "x", "--release", "--", "--features", "y"]);
        assert!(o.release);
        assert!(o.features.is_empty(), "after `--`: the checker's");
        assert_eq!(o.rest, ["--features", "y"]);
        assert!(parse(["--features"].iter().map(OsString::from)).is_err());
    }
}
