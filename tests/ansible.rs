//! The Ansible module in contrib/ansible, run by a real `ansible-playbook` (ansible-core in a
//! scratch virtual environment, made by scripts/ansible-venv.sh) with `connection: local`
//! inside the test's namespaces, so the tool it runs sees the sandbox's private firewalld
//! and tables. Each run is the playbook tests/ansible/module.yml, which keeps the module's
//! result in a file for the test to read.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::firewalld::{with_firewalld, FirewalldSandbox};
use common::run::output_of;
use common::{Sandbox, BIN};
use serde_json::{json, Value};

const MODULE: &str = "tproxy.firewalld.tproxy_firewalld";

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// ansible-core's bin directory, made once per test binary by scripts/ansible-venv.sh; None
/// (after saying why) when it cannot be made here, which under CI=true fails the test.
fn ansible(test: &str) -> Option<PathBuf> {
    static MADE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = MADE.get_or_init(|| {
        let output = Command::new(repository().join("scripts/ansible-venv.sh"))
            .output()
            .map_err(|e| format!("scripts/ansible-venv.sh: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "scripts/ansible-venv.sh failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(PathBuf::from(
            String::from_utf8_lossy(&output.stdout).trim(),
        ))
    });
    match made {
        Ok(bin) => Some(bin.clone()),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: needs ansible-core ({why}); CI must not skip it")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: no ansible-core ({why})");
            None
        }
    }
}

/// An Ansible command from `bin` in `sandbox`'s namespaces (or on the host without one),
/// with the collection found in contrib/ansible and Ansible's own files in `dir`.
fn ansible_command(sandbox: Option<&Sandbox>, bin: &Path, dir: &Path, args: &[&str]) -> Command {
    let program = bin.join(args[0]);
    let program = program.to_str().unwrap();
    let full: Vec<&str> = [&[program], &args[1..]].concat();
    let mut command = match sandbox {
        Some(sandbox) => sandbox.command(&full),
        None => {
            let mut command = Command::new(full[0]);
            command.args(&full[1..]);
            command
        }
    };
    let collections = repository().join("contrib/ansible");
    command
        .env("ANSIBLE_COLLECTIONS_PATH", collections)
        .env("ANSIBLE_HOME", dir.join("ansible-home"))
        .env("ANSIBLE_LOCAL_TEMP", dir.join("ansible-tmp"))
        .env("ANSIBLE_REMOTE_TEMP", dir.join("ansible-tmp"))
        .env("ANSIBLE_PYTHON_INTERPRETER", bin.join("python"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCALHOST_WARNING", "false")
        .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false");
    command
}

/// One run of the module, as a playbook task.
struct Task {
    state: &'static str,
    config: Value,
    firewalld_config_dir: String,
    check: bool,
    diff: bool,
}

impl Task {
    fn present(config: Value) -> Task {
        Task {
            state: "present",
            config,
            firewalld_config_dir: "/etc/firewalld".into(),
            check: false,
            diff: false,
        }
    }
}

/// The playbook's output and the module's result.
struct Ran {
    output: Output,
    result: Value,
}

fn run(sandbox: &Sandbox, bin: &Path, task: Task) -> Ran {
    let result_file = sandbox.path("module-result.json");
    let _ = std::fs::remove_file(&result_file);
    let vars = sandbox.path("vars.json");
    let variables = json!({
        "state": task.state,
        "config": task.config,
        "binary": BIN,
        "firewalld_config_dir": task.firewalld_config_dir,
        "result_file": result_file,
    });
    std::fs::write(&vars, variables.to_string()).unwrap();
    let playbook = repository().join("tests/ansible/module.yml");
    let extra = format!("@{}", vars.display());
    let mut args = vec![
        "ansible-playbook",
        "-c",
        "local",
        "-i",
        "localhost,",
        "-e",
        &extra,
        playbook.to_str().unwrap(),
    ];
    if task.check {
        args.push("--check");
    }
    if task.diff {
        args.push("--diff");
    }
    let command = ansible_command(Some(sandbox), bin, sandbox.dir.path(), &args);
    let output = output_of(command, None, "ansible-playbook");
    let text = std::fs::read_to_string(&result_file).unwrap_or_else(|e| {
        panic!(
            "the playbook kept no result ({e}):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    Ran {
        result: serde_json::from_str(&text).unwrap(),
        output,
    }
}

impl Ran {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// The module's result, which must not have failed, and the playbook's success.
    fn succeeded(&self) -> &Value {
        assert!(
            self.output.status.success() && self.result["failed"] != true,
            "{:#}\n{}",
            self.result,
            self.stdout()
        );
        &self.result
    }
}

/// The kuma-dp user, DNS redirection and SSH kept reachable, in kumactl's keys.
fn config() -> Value {
    json!({
        "kumaDPUser": "kuma-dp",
        "redirect": {"inbound": {"excludePorts": [22]}, "dns": {"enabled": true}},
    })
}

/// Another tool's direct rule.
const FOREIGN: [&str; 10] = [
    "ipv4", "filter", "INPUT", "0", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT",
];

/// The foreign rule as firewalld lists it, runtime or permanent.
fn foreign_rule(world: &FirewalldSandbox, permanent: bool) -> Vec<String> {
    let mut args = vec!["--direct", "--get-all-rules"];
    if permanent {
        args.insert(0, "--permanent");
    }
    let rules = world.firewall_cmd_ok(&args);
    rules
        .lines()
        .filter(|l| l.contains("--dport 9999"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_module_drives_a_firewalld_host() {
    let test = "the_module_drives_a_firewalld_host";
    let Some(world) = with_firewalld(test, "nftables") else {
        return;
    };
    let Some(bin) = ansible(test) else {
        return;
    };
    let bin = bin.as_path();

    // Check mode: would change, changes nothing.
    let checked = run(
        &world,
        bin,
        Task {
            check: true,
            ..Task::present(config())
        },
    );
    let result = checked.succeeded();
    assert_eq!(result["changed"], true, "{result:#}");
    assert_eq!(result["report"]["dry_run"], true, "{result:#}");
    assert_eq!(
        world.count_our_rules(false),
        0,
        "check mode changed the runtime"
    );
    assert_eq!(world.count_our_rules(true), 0, "check mode stored rules");

    // The first run, in diff mode: the rules are in the runtime and permanent configuration,
    // and the diff shows the entries added.
    let first = run(
        &world,
        bin,
        Task {
            diff: true,
            ..Task::present(config())
        },
    );
    let result = first.succeeded();
    assert_eq!(result["changed"], true, "{result:#}");
    let rules = world.count_our_rules(false);
    assert!(rules > 0);
    assert_eq!(world.count_our_rules(true), rules, "permanent rules");
    let exclusion = "rule ipv4 nat KUMA_MESH_INBOUND 0 -m comment --comment 'kuma/mesh/transparent/proxy/exclude inbound traffic from port 22 from redirection' -p tcp --dport 22 -j RETURN";
    let diffs = result["diff"].as_array().unwrap();
    let headers: Vec<&str> = diffs
        .iter()
        .map(|d| d["after_header"].as_str().unwrap())
        .collect();
    assert_eq!(
        headers,
        [
            "runtime: entries of ours added",
            "permanent: entries of ours added"
        ]
    );
    for diff in diffs {
        assert!(
            diff["after"].as_str().unwrap().contains(exclusion),
            "{diff:#}"
        );
        assert_eq!(diff["before"], "", "{diff:#}");
    }
    // Ansible shows it as a unified diff.
    assert!(
        first.stdout().contains(&format!("+{exclusion}")),
        "{}",
        first.stdout()
    );

    // The second run: nothing to change, and no D-Bus write call.
    let mut second = None;
    let calls = world.write_calls(|| second = Some(run(&world, bin, Task::present(config()))));
    let second = second.unwrap();
    let result = second.succeeded();
    assert_eq!(result["changed"], false, "{result:#}");
    assert_eq!(calls, Vec::<String>::new(), "the second run wrote");

    // A config key the tool does not know fails the task with its one-line message.
    let bad = run(
        &world,
        bin,
        Task::present(json!({"redirect": {"inbound": {"excludePort": [22]}}})),
    );
    assert_eq!(bad.result["failed"], true, "{:#}", bad.result);
    let message = bad.result["msg"].as_str().unwrap();
    assert!(
        message.starts_with("config -: redirect.inbound.excludePort: unknown field"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    assert_eq!(bad.result["rc"], 2, "{:#}", bad.result);
    assert_eq!(bad.result["report"]["error"]["message"], message);
    assert_eq!(
        world.count_our_rules(false),
        rules,
        "the failed task changed rules"
    );

    // state: absent removes ours and keeps foreign entries.
    let mut add = vec!["--direct", "--add-rule"];
    add.extend(FOREIGN);
    world.firewall_cmd_ok(&add);
    add.insert(0, "--permanent");
    world.firewall_cmd_ok(&add);
    let absent = run(
        &world,
        bin,
        Task {
            state: "absent",
            ..Task::present(json!({}))
        },
    );
    let result = absent.succeeded();
    assert_eq!(result["changed"], true, "{result:#}");
    assert_eq!(world.count_our_rules(false), 0);
    assert_eq!(world.count_our_rules(true), 0);
    for permanent in [false, true] {
        assert_eq!(
            foreign_rule(&world, permanent).len(),
            1,
            "foreign rule lost"
        );
    }
}

#[test]
fn without_firewalld_the_module_goes_through_iptables() {
    let test = "without_firewalld_the_module_goes_through_iptables";
    let Some(sandbox) = common::sandbox(test) else {
        return;
    };
    let Some(bin) = ansible(test) else {
        return;
    };
    // No firewalld configuration directory: firewalld is not installed.
    let task = |state| Task {
        state,
        firewalld_config_dir: sandbox.path("no-firewalld").display().to_string(),
        ..Task::present(config())
    };
    let installed = run(&sandbox, &bin, task("present"));
    let result = installed.succeeded();
    assert_eq!(result["changed"], true, "{result:#}");
    assert_eq!(
        result["report"]["backend"]["kind"], "iptables",
        "{result:#}"
    );
    assert!(sandbox.save("iptables-save").contains("KUMA_MESH_OUTBOUND"));
    let again = run(&sandbox, &bin, task("present"));
    assert_eq!(again.succeeded()["changed"], false, "{:#}", again.result);
    let removed = run(&sandbox, &bin, task("absent"));
    assert_eq!(removed.succeeded()["changed"], true, "{:#}", removed.result);
    let (ipv4, ipv6) = sandbox.saves();
    assert!(!ipv4.contains("KUMA_MESH") && !ipv6.contains("KUMA_MESH"));
}

/// The module's documentation renders, and its options are exactly what the module takes,
/// with the same types, defaults and choices; the example playbook is valid.
#[test]
fn the_documentation_renders_and_matches_the_module() {
    let test = "the_documentation_renders_and_matches_the_module";
    let Some(bin) = ansible(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ok = |args: &[&str]| {
        let output = output_of(ansible_command(None, &bin, dir.path(), args), None, args[0]);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("ERROR") && !stderr.contains("WARNING"),
            "{args:?}: {stderr}"
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let page = ok(&["ansible-doc", "-t", "module", MODULE]);
    for part in [
        "OPTIONS",
        "ATTRIBUTES",
        "EXAMPLES:",
        "RETURN VALUES:",
        "store_firewalld",
    ] {
        assert!(page.contains(part), "{part} missing:\n{page}");
    }
    let doc: Value =
        serde_json::from_str(&ok(&["ansible-doc", "--json", "-t", "module", MODULE])).unwrap();
    let doc = &doc[MODULE];
    assert!(doc["examples"].as_str().is_some_and(|e| e.contains(MODULE)));
    assert!(
        doc["return"]["report"]["contains"]["targets"].is_object(),
        "{doc:#}"
    );

    let module = repository().join(
        "contrib/ansible/ansible_collections/tproxy/firewalld/plugins/modules/tproxy_firewalld.py",
    );
    let spec = ok(&[
        "python",
        "-c",
        "import importlib.util, json, sys\n\
         spec = importlib.util.spec_from_file_location('m', sys.argv[1])\n\
         module = importlib.util.module_from_spec(spec)\n\
         spec.loader.exec_module(module)\n\
         print(json.dumps(module.ARGUMENT_SPEC))",
        module.to_str().unwrap(),
    ]);
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let options = doc["doc"]["options"].as_object().unwrap();
    let names = |o: &serde_json::Map<String, Value>| {
        let mut names: Vec<String> = o.keys().cloned().collect();
        names.sort();
        names
    };
    assert_eq!(names(options), names(spec.as_object().unwrap()));
    for (name, option) in options {
        assert!(option["description"].is_array(), "{name}: no description");
        for key in ["type", "default", "choices"] {
            assert_eq!(option[key], spec[name][key], "{name}: {key}");
        }
    }

    let example = repository().join("contrib/ansible/playbooks/kuma-dp.yml");
    let inventory = dir.path().join("inventory");
    std::fs::write(&inventory, "[mesh_data_planes]\nlocalhost\n").unwrap();
    ok(&[
        "ansible-playbook",
        "--syntax-check",
        "-i",
        inventory.to_str().unwrap(),
        example.to_str().unwrap(),
    ]);
}
