//! The command line of the binary: help and version everywhere, `check-config` on good and
//! bad files (and on every shipped example), unknown subcommands refused.

use std::{path::Path, process::Command};

const BIN: &str = env!("CARGO_BIN_EXE_session-relay");

/// The binary with a clean environment, so nothing of the machine's leaks into the run.
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn help_prints_usage_of_every_command_and_starts_nothing() {
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for command in ["serve", "import", "export", "check-config"] {
        assert!(out.contains(command), "{out}");
    }
    for command in ["serve", "import", "export", "check-config"] {
        let (code, out, err) = run(&[command, "--help"], &[]);
        assert_eq!(code, 0, "{command}: {err}");
        assert!(out.contains("Usage: session-relay"), "{command}: {out}");
    }
    let (_, import_help, _) = run(&["import", "--help"], &[]);
    for flag in [
        "--mode",
        "--url",
        "--key",
        "--batch-lines",
        "--batch-bytes",
        "--concurrency",
        "--retries",
    ] {
        assert!(import_help.contains(flag), "{flag} missing: {import_help}");
    }
}

#[test]
fn version_is_the_crate_version() {
    for args in [
        &["--version"][..],
        &["serve", "--version"],
        &["check-config", "--version"],
    ] {
        let (code, out, _) = run(args, &[]);
        assert_eq!(code, 0, "{args:?}");
        // `session-relay 0.1.0`, or `session-relay-serve 0.1.0` for a subcommand.
        let (name, version) = out.trim().split_once(' ').unwrap();
        assert!(name.starts_with("session-relay"), "{out}");
        assert_eq!(version, env!("CARGO_PKG_VERSION"));
    }
}

#[test]
fn an_unknown_subcommand_or_flag_is_a_usage_error() {
    let (code, _, err) = run(&["frobnicate"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unrecognized subcommand 'frobnicate'"),
        "{err}"
    );
    let (code, _, err) = run(&["import", "x.ndjson", "--mdoe", "append"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--mdoe"), "{err}");
    let (code, _, err) = run(&["export"], &[]);
    assert_eq!(code, 2, "export needs --session or --user: {err}");
}

#[test]
fn check_config_prints_what_the_file_and_environment_resolve_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(
        &path,
        "[[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"https://api.example.com/v1\"\napi_key_env = \"UP_KEY\"\n\
         [[models]]\nname = \"big-model\"\nprovider = \"up\"\ncontext_tokens = 64000\ninput_usd_per_mtok = 1.5\naliases = [\"big\"]\nfallbacks = [\"echo\"]\n\
         max_retries = 0\nfirst_token_timeout_ms = 4000\n",
    )
    .unwrap();
    let env = [
        ("SESSION_RELAY_LISTEN", "127.0.0.1:9999"),
        ("UP_KEY", "secret-value-123"),
    ];
    let (code, out, err) = run(&["check-config", "--config", path.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{err}");
    for expected in [
        "127.0.0.1:9999",
        "https://api.example.com/v1",
        "UP_KEY (set)",
        "big-model",
        "64000",
        "1.500",
        "big ",
        "big-model → echo",
    ] {
        assert!(out.contains(expected), "{expected} missing:\n{out}");
    }
    let cells: Vec<&str> = (out.lines())
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&"big-model") && cells.contains(&"4000"))
        .unwrap_or_default();
    assert_eq!(
        cells,
        ["big-model", "60000", "10000", "4000", "0"],
        "its own settings over the routing defaults:\n{out}"
    );
    assert!(!out.contains("secret-value-123"), "a secret was printed");
}

#[test]
fn check_config_prints_every_cluster_node_without_its_password() {
    let env = [
        (
            "REDIS_URL",
            "redis://:pw-one@10.0.0.1:7000, redis://:pw-two@10.0.0.2:7001",
        ),
        ("SESSION_RELAY_REDIS_MODE", "cluster"),
    ];
    let (code, out, err) = run(&["check-config"], &env);
    assert_eq!(code, 0, "{err}");
    let expected = "redis cluster redis://:***@10.0.0.1:7000,redis://:***@10.0.0.2:7001";
    assert!(out.contains(expected), "{expected} missing:\n{out}");
    assert!(!out.contains("pw-one") && !out.contains("pw-two"), "{out}");
}

#[test]
fn check_config_prints_the_sentinels_and_the_primarys_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(
        &path,
        "[store]\nmode = \"sentinel\"\nsentinel_master = \"relay\"\n",
    )
    .unwrap();
    let env = [(
        "REDIS_URL",
        "redis://:pw@10.0.0.1:26379,redis://:pw@10.0.0.2:26379",
    )];
    let (code, out, err) = run(&["check-config", "--config", path.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{err}");
    let expected =
        "redis sentinel redis://:***@10.0.0.1:26379,redis://:***@10.0.0.2:26379 (primary `relay`";
    assert!(out.contains(expected), "{expected} missing:\n{out}");
}

#[test]
fn check_config_names_the_bad_field_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[models]]\nname = \"m\"\nprovider = \"nowhere\"\n",
            "models[0].provider",
        ),
        ("[server]\nlisten = \"not an address\"\n", "server.listen"),
        ("[server]\nlistne = \"127.0.0.1:1\"\n", "listne"),
        (
            "[[models]]\nname = \"m\"\nprovider = \"builtin-echo\"\naliases = [\"echo\"]\n",
            "models[0].aliases",
        ),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let (code, out, err) = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
        assert_eq!(code, 1, "{text}: {out}");
        assert!(err.contains(field), "{field} not named: {err}");
    }
    let (code, _, err) = run(
        &["check-config"],
        &[("SESSION_RELAY_METRICS_LISTEN", "nope")],
    );
    assert_eq!(code, 1);
    assert!(err.contains("server.metrics_listen"), "{err}");
}

#[test]
fn every_example_configuration_passes_check_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        // The static key of an example needs its variable, as it would in production.
        let (code, out, err) = run(
            &["check-config", "--config", path.to_str().unwrap()],
            &[("ACME_API_KEY", "example-key")],
        );
        assert_eq!(code, 0, "{}: {err}", path.display());
        assert!(
            out.starts_with("configuration OK"),
            "{}: {out}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} examples");
}
