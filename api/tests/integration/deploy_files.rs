//! The Dockerfile, docker-compose.yml and the Kubernetes manifests in deploy/ speak the
//! binary's language: every subcommand they run exists, every `BOXOFFICE_*` variable
//! they set is a setting the binary accepts (`boxoffice config` checks names and
//! types), and the ports and probe paths agree with the server's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut value: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    value.apply_merge().expect("merge keys");
    value
}

fn boxoffice(args: &[&str], env: &BTreeMap<String, String>) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .args(args)
        .env_clear()
        .env("BOXOFFICE_CONFIG", "/nonexistent/boxoffice.toml")
        .envs(env)
        .output()
        .expect("the binary runs")
}

/// The subcommand exists (its `--help` succeeds).
fn assert_subcommand(where_: &str, command: &str) {
    let out = boxoffice(&[command, "--help"], &BTreeMap::new());
    assert!(
        out.status.success(),
        "{where_}: `boxoffice {command}` is not a subcommand"
    );
}

/// `boxoffice config` accepts these variables: known names, values of the right type.
fn assert_settings(where_: &str, env: &BTreeMap<String, String>) {
    let out = boxoffice(&["config"], env);
    assert!(
        out.status.success(),
        "{where_}: the binary refuses its settings {env:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compose's `${NAME:-default}` with the default (the file must work without a .env).
fn interpolate(where_: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .expect("closing brace");
        let (_, default) = rest[start + 2..end]
            .split_once(":-")
            .unwrap_or_else(|| panic!("{where_}: {value} needs a default"));
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out + rest
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map_or_else(Vec::new, |s| s.iter().map(scalar).collect())
}

/// `ENV` of the Dockerfile's final stage.
fn dockerfile() -> (BTreeMap<String, String>, Vec<String>) {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let joined = text.replace("\\\n", " ");
    let last_stage = joined.rsplit("\nFROM ").next().expect("a stage");
    let mut env = BTreeMap::new();
    let mut instructions = Vec::new();
    for line in last_stage.lines().map(str::trim) {
        if let Some(pairs) = line.strip_prefix("ENV ") {
            for pair in pairs.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV key=value");
                env.insert(k.to_owned(), v.to_owned());
            }
        }
        instructions.push(line.to_owned());
    }
    (env, instructions)
}

fn listen_port(env: &BTreeMap<String, String>) -> u16 {
    env["BOXOFFICE_LISTEN"]
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The JSON array after `prefix` on a Dockerfile line: `CMD ["serve"]`.
fn exec_form(instructions: &[String], prefix: &str) -> Vec<String> {
    let line = instructions
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("Dockerfile has no {prefix}"));
    let array = &line[line.find('[').expect("exec form")..];
    serde_json::from_str(array).expect("a JSON array")
}

#[test]
fn the_dockerfile_runs_real_subcommands_with_real_settings() {
    let (env, instructions) = dockerfile();
    assert_settings("Dockerfile ENV", &env);
    assert_eq!(exec_form(&instructions, "ENTRYPOINT"), ["boxoffice"]);
    assert_subcommand("Dockerfile CMD", &exec_form(&instructions, "CMD")[0]);
    let health = exec_form(&instructions, "HEALTHCHECK");
    assert_eq!(health[0], "boxoffice");
    assert_subcommand("Dockerfile HEALTHCHECK", &health[1]);
    let exposed: u16 = instructions
        .iter()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE")
        .parse()
        .unwrap();
    assert_eq!(
        exposed,
        listen_port(&env),
        "EXPOSE is the port the server listens on"
    );
}

#[test]
fn compose_runs_real_subcommands_with_real_settings() {
    let (image_env, _) = dockerfile();
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let mut apps = 0;
    for (name, service) in services {
        let name = scalar(name);
        let is_boxoffice = service["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("boxoffice"));
        if !is_boxoffice {
            continue;
        }
        let command = strings(&service["command"]);
        assert_subcommand(&name, &command[0]);
        // What the container sees: the image's ENV, then the service's environment.
        let mut env = image_env.clone();
        for (k, v) in service["environment"].as_mapping().expect("environment") {
            env.insert(scalar(k), interpolate(&name, &scalar(v)));
        }
        assert_settings(&name, &env);
        if command[0] == "serve" {
            apps += 1;
            let health = strings(&service["healthcheck"]["test"]);
            assert_eq!(health[..2], ["CMD", "boxoffice"], "{name}: health check");
            assert_subcommand(&name, &health[2]);
            for port in strings(&service["ports"]) {
                let container = port.rsplit(':').next().unwrap().parse::<u16>().unwrap();
                assert_eq!(
                    container,
                    listen_port(&env),
                    "{name}: {port} reaches the server"
                );
            }
            assert!(service["cpus"].as_f64().is_some(), "{name}: a CPU limit");
            assert!(
                service["mem_limit"].as_str().is_some(),
                "{name}: a memory limit"
            );
        }
    }
    assert_eq!(apps, 2, "app-small and app-medium");
    // Prometheus scrapes exactly the app services, on their port.
    let prometheus = yaml("grafana/prometheus/prometheus.yml");
    let targets = strings(&prometheus["scrape_configs"][0]["static_configs"][0]["targets"]);
    for target in targets {
        let (host, port) = target.split_once(':').unwrap();
        assert!(
            services.contains_key(host),
            "prometheus scrapes {host}, a compose service"
        );
        assert_eq!(port.parse::<u16>().unwrap(), listen_port(&image_env));
    }
}

#[test]
fn the_kubernetes_manifests_run_real_subcommands_with_real_settings() {
    let config = yaml("deploy/configmap.yaml");
    let secret = yaml("deploy/secret.yaml");
    let mut env = BTreeMap::new();
    for data in [&config["data"], &secret["stringData"]] {
        for (k, v) in data.as_mapping().expect("data") {
            env.insert(scalar(k), scalar(v));
        }
    }
    let openapi = std::fs::read_to_string(repo().join("openapi.yaml")).unwrap();
    let mut containers = 0;
    for file in [
        "deploy/api-deployment.yaml",
        "deploy/consumer-deployment.yaml",
        "deploy/migrate-job.yaml",
    ] {
        let manifest = yaml(file);
        let spec = &manifest["spec"]["template"]["spec"];
        for container in spec["containers"].as_sequence().expect("containers") {
            containers += 1;
            let args = strings(&container["args"]);
            assert_subcommand(file, &args[0]);
            let mut env = env.clone();
            for var in container["env"].as_sequence().into_iter().flatten() {
                env.insert(scalar(&var["name"]), scalar(&var["value"]));
            }
            assert_settings(file, &env);
            for port in container["ports"].as_sequence().into_iter().flatten() {
                assert_eq!(
                    port["containerPort"].as_u64(),
                    Some(u64::from(listen_port(&env))),
                    "{file}"
                );
            }
            for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                if let Some(path) = container[probe]["httpGet"]["path"].as_str() {
                    assert!(
                        openapi.contains(&format!("  {path}:\n")),
                        "{file}: {probe} {path} is an API path"
                    );
                }
            }
        }
    }
    assert_eq!(containers, 3);
}

/// A shell that exports the test harness's variables (as the README suggests) can
/// still run the binary, which refuses unknown `BOXOFFICE_*` settings.
#[test]
fn the_test_harness_variables_are_not_taken_for_settings() {
    let harness: BTreeMap<String, String> = crate::helpers::HARNESS_VARIABLES
        .iter()
        .map(|name| ((*name).to_owned(), "mysql://root@127.0.0.1:3306".to_owned()))
        .collect();
    assert_settings("the test harness's variables", &harness);
    // An unknown setting is still an error, not ignored.
    let typo = BTreeMap::from([("BOXOFFICE_HOLD_SECOND".to_owned(), "60".to_owned())]);
    let out = boxoffice(&["config"], &typo);
    assert!(!out.status.success(), "an unknown setting is refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hold_second"),
        "the refusal names it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The topic's replication factor is a setting: at least 1, and 3 in the Kubernetes
/// files, which point at a real cluster.
#[test]
fn the_topics_replication_factor_is_a_setting() {
    let factor = |value: &str| {
        let env = BTreeMap::from([(
            "BOXOFFICE_KAFKA_REPLICATION_FACTOR".to_owned(),
            value.to_owned(),
        )]);
        boxoffice(&["config"], &env)
    };
    let three = factor("3");
    assert!(
        three.status.success(),
        "{}",
        String::from_utf8_lossy(&three.stderr)
    );
    assert!(
        String::from_utf8_lossy(&three.stdout).contains("kafka_replication_factor: 3,"),
        "{}",
        String::from_utf8_lossy(&three.stdout)
    );
    assert!(!factor("0").status.success(), "no copies is refused");
    let configmap = std::fs::read_to_string(repo().join("deploy/configmap.yaml")).unwrap();
    assert!(configmap.contains("BOXOFFICE_KAFKA_REPLICATION_FACTOR: \"3\""));
}
