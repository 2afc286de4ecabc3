//! The deployment files name only settings the gateway has: every `--flag` of the Kubernetes
//! manifests and every `ECS_GATEWAY_*` variable there and in the Dockerfile is one
//! `ecs-gateway --help` lists.

use std::collections::BTreeSet;
use std::path::Path;

use clap::CommandFactory as _;
use ecs_gateway::app::cli::Cli;

fn files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, found);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            found.push(path);
        }
    }
}

/// Every word of `text` that starts with `prefix`, up to the first character that cannot be
/// part of a flag or variable name.
fn words<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let word = &rest[at..];
        let end = word[prefix.len()..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .map_or(word.len(), |e| e + prefix.len());
        out.push(&word[..end]);
        rest = &word[end..];
    }
    out
}

#[test]
fn the_manifests_and_the_dockerfile_use_only_settings_the_gateway_has() {
    let command = Cli::command();
    let mut flags: BTreeSet<String> = BTreeSet::new();
    let mut variables: BTreeSet<String> = BTreeSet::new();
    for arg in command.get_arguments() {
        if let Some(long) = arg.get_long() {
            flags.insert(format!("--{long}"));
        }
        if let Some(env) = arg.get_env() {
            variables.insert(env.to_string_lossy().into_owned());
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    files(&root.join("deploy/kubernetes"), &mut paths);
    paths.push(root.join("Dockerfile"));
    assert!(paths.len() > 5, "{paths:?}");
    let mut checked = 0;
    for path in &paths {
        let text = std::fs::read_to_string(path).unwrap();
        let yaml = path.extension().is_some_and(|e| e == "yaml");
        for flag in words(&text, "--").into_iter().filter(|_| yaml) {
            // YAML document separators and comment rules are not flags.
            if flag.len() > 2 && flag.as_bytes()[2].is_ascii_lowercase() {
                assert!(
                    flags.contains(flag),
                    "{}: {flag} is no flag of ecs-gateway",
                    path.display()
                );
                checked += 1;
            }
        }
        for variable in words(&text, "ECS_GATEWAY_") {
            assert!(
                variables.contains(variable),
                "{}: {variable} is no variable of ecs-gateway",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 15,
        "only {checked} settings found: is the scan broken?"
    );
}
