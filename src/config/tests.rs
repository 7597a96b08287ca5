#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn no_file_gives_a_working_default() {
    let s = Settings::from_toml("", &env(&[])).unwrap();
    assert!(s.store.redis_url.is_none());
    assert_eq!(s.sessions.default_model, ECHO_MODEL);
    assert!(s.models.iter().any(|m| m.name == ECHO_MODEL));
}

#[test]
fn environment_overrides_the_file() {
    let file = "[server]\nlisten = \"127.0.0.1:1\"\n[store]\nkey_prefix = \"a\"";
    let s = Settings::from_toml(
        file,
        &env(&[
            ("SESSION_RELAY_LISTEN", "127.0.0.1:9"),
            ("REDIS_URL", "redis://x:1"),
        ]),
    )
    .unwrap();
    assert_eq!(s.server.listen, "127.0.0.1:9");
    assert_eq!(s.store.redis_url.as_deref(), Some("redis://x:1"));
    assert_eq!(s.store.key_prefix, "a");
}

#[test]
fn a_cluster_is_named_by_its_nodes_and_one_server_by_its_url() {
    let urls = "redis://a:1, redis://b:2,,";
    let cluster =
        Settings::from_toml("[store]\nmode = \"cluster\"", &env(&[("REDIS_URL", urls)])).unwrap();
    assert_eq!(cluster.store.mode, StoreMode::Cluster);
    assert_eq!(cluster.store.redis_urls(), ["redis://a:1", "redis://b:2"]);
    let single = Settings::from_toml("", &env(&[("REDIS_URL", "redis://a:1")])).unwrap();
    assert_eq!(single.store.mode, StoreMode::Single);
    assert_eq!(single.store.redis_urls(), ["redis://a:1"]);
    let by_env = env(&[("SESSION_RELAY_REDIS_MODE", "cluster")]);
    assert_eq!(
        Settings::from_toml("", &by_env).unwrap().store.mode,
        StoreMode::Cluster
    );
    let sentinels = Settings::from_toml(
        "[store]\nmode = \"sentinel\"\nsentinel_master = \"relay\"",
        &env(&[("REDIS_URL", urls)]),
    )
    .unwrap();
    assert_eq!(sentinels.store.redis_urls(), ["redis://a:1", "redis://b:2"]);
    assert_eq!(sentinels.store.sentinel_master, "relay");
    assert_eq!(single.store.sentinel_master, "mymaster");
    let wrong = Settings::from_toml("[store]\nmode = \"replicated\"", &env(&[]));
    assert!(wrong.is_err_and(|e| e.to_string().contains("replicated")));
}

#[test]
fn errors_name_the_field() {
    let cases = [
        ("[server]\nlistn = \"x\"", "listn"),
        ("[server]\nlisten = \"nope\"", "server.listen"),
        (
            "[[models]]\nname = \"m\"\nprovider = \"ghost\"",
            "models[0].provider",
        ),
        (
            "[sessions]\ndefault_ttl_seconds = \"ten\"",
            "default_ttl_seconds",
        ),
        (
            "[[auth.keys]]\nname = \"k\"\ntenant = \"t\"\nkey_env = \"UNSET_VAR_X\"",
            "auth.keys[0].key_env",
        ),
        // A lease renewed no sooner than it lapses would lapse under a running send.
        (
            "[sessions]\nlease_seconds = 5\nlease_renew_seconds = 5",
            "sessions.lease_renew_seconds",
        ),
        (
            "[sessions]\nlease_renew_seconds = 0",
            "sessions.lease_renew_seconds",
        ),
        (
            "[[models]]\nname = \"m\"\nprovider = \"builtin-echo\"\nattempt_timeout_ms = 0",
            "models[0].attempt_timeout_ms",
        ),
        (
            "[routing]\nbreaker_consecutive_failures = 0",
            "routing.breaker_consecutive_failures",
        ),
    ];
    for (file, field) in cases {
        let err = Settings::from_toml(file, &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{err} should name {field}");
    }
}

#[test]
fn secrets_come_from_the_environment_and_do_not_print() {
    let file = "[[auth.keys]]\nname = \"web\"\ntenant = \"acme\"\nkey_env = \"ACME_KEY\"";
    let s = Settings::from_toml(file, &env(&[("ACME_KEY", "sk-plain-text")])).unwrap();
    assert_eq!(
        s.auth.keys[0].key.as_ref().unwrap().expose(),
        "sk-plain-text"
    );
    assert!(!format!("{s:?}").contains("sk-plain-text"));
}

#[test]
fn models_take_their_own_attempt_settings() {
    let file = "[[models]]\nname = \"m\"\nprovider = \"builtin-echo\"\nmax_retries = 0\n\
                attempt_timeout_ms = 20000\nfirst_byte_timeout_ms = 3000\n\
                first_token_timeout_ms = 4000";
    let s = Settings::from_toml(file, &env(&[])).unwrap();
    let m = &s.models[0];
    let own = (
        m.max_retries,
        m.attempt_timeout_ms,
        m.first_byte_timeout_ms,
        m.first_token_timeout_ms,
    );
    assert_eq!(own, (Some(0), Some(20_000), Some(3_000), Some(4_000)));
    let echo = s.models.iter().find(|m| m.name == ECHO_MODEL).unwrap();
    assert_eq!(echo.max_retries, None, "unset: [routing] decides");
}
