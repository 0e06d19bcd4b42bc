//! Config file, environment overrides and the default database path.

mod common;

use common::{Sandbox, parse_json};

#[test]
fn config_file_limits_are_honoured() {
    let sandbox = Sandbox::new();
    let config = sandbox.path("config.toml");
    std::fs::write(&config, "[limits]\nmemory_content_bytes_max = 10\n").unwrap();
    let config = config.to_str().unwrap();
    sandbox.ok(&["--config", config, "remember", "0123456789"]);
    let line = sandbox.fail(&["--config", config, "remember", "0123456789a"]);
    assert_eq!(
        line,
        "error: invalid input: content is 11 bytes, over the limit of 10 bytes (memory_content_bytes_max)"
    );
    assert_eq!(sandbox.count(), 1);
    let effective = sandbox.json(&["--config", config, "config"]);
    assert_eq!(effective["limits"]["memory_content_bytes_max"], 10);
    assert_eq!(effective["config_file"], config);
    // MNEMOSYNE_CONFIG names the file too.
    let args = ["remember", "0123456789a"];
    let output = sandbox.run_with(&args, &[("MNEMOSYNE_CONFIG", config)]);
    common::fail(output, &args);
    assert_eq!(sandbox.count(), 1);
}

#[test]
fn config_shows_the_server_table_without_the_token() {
    let sandbox = Sandbox::new();
    let config = sandbox.path("config.toml");
    std::fs::write(
        &config,
        "[server]\nbind = \"127.0.0.1:9999\"\ntoken = \"s3cret-token\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let text = sandbox.ok(&["--config", config, "config"]);
    assert!(
        text.contains("[server]\nbind = \"127.0.0.1:9999\""),
        "{text}"
    );
    assert!(text.contains("# HTTP token: set (never printed)"), "{text}");
    assert!(!text.contains("s3cret-token"), "{text}");
    let effective = sandbox.json(&["--config", config, "config"]);
    assert_eq!(effective["server"]["bind"], "127.0.0.1:9999");
    assert_eq!(effective["server"]["token_set"], true);
    assert!(!effective.to_string().contains("s3cret-token"));

    // What `config` prints is a config file that gives the same settings.
    let printed = sandbox.path("printed.toml");
    std::fs::write(&printed, &text).unwrap();
    let printed = printed.to_str().unwrap();
    let again = sandbox.json(&["--config", printed, "config"]);
    assert_eq!(again["server"]["bind"], "127.0.0.1:9999");
    assert_eq!(again["server"]["token_set"], false);
    assert_eq!(again["limits"], effective["limits"]);
    assert_eq!(again["embedder"], effective["embedder"]);

    // Without a [server] table: the default address, no token.
    let bare = sandbox.json(&["config"]);
    assert_eq!(bare["server"]["bind"], "127.0.0.1:7077");
    assert_eq!(bare["server"]["token_set"], false);
}

#[test]
fn env_limit_overrides_are_honoured() {
    let sandbox = Sandbox::new();
    let config = sandbox.path("config.toml");
    std::fs::write(&config, "[limits]\nmemory_content_bytes_max = 20\n").unwrap();
    let env = [("MNEMOSYNE_MEMORY_CONTENT_BYTES_MAX", "10")];
    let args = [
        "--config",
        config.to_str().unwrap(),
        "remember",
        "0123456789a",
    ];
    let line = common::fail(sandbox.run_with(&args, &env), &args);
    assert!(
        line.contains("over the limit of 10 bytes"),
        "env beats the file: {line}"
    );
    let args = ["remember", "0123456789"];
    common::ok(sandbox.run_with(&args, &env), &args);
    assert_eq!(sandbox.count(), 1);

    let args = ["count"];
    let env = [("MNEMOSYNE_MEMORY_CONTENT_BYTES_MAX", "ten")];
    let line = common::fail(sandbox.run_with(&args, &env), &args);
    assert!(
        line.contains("MNEMOSYNE_MEMORY_CONTENT_BYTES_MAX"),
        "{line}"
    );
    let env = [("MNEMOSYNE_RECALL_RESULTS_MAX", "5000")];
    let line = common::fail(sandbox.run_with(&args, &env), &args);
    assert!(line.contains("at most 1000"), "{line}");
}

#[test]
fn bad_config_files_are_one_line_errors() {
    let sandbox = Sandbox::new();
    let config = sandbox.path("config.toml");
    let cases = [
        (
            "db = \"x.db\"\nport = 8080\n",
            "line 2: unknown field `port`",
        ),
        (
            "[limits]\npool_readers_maxx = 2\n",
            "unknown field `pool_readers_maxx`",
        ),
        ("[limits]\npool_readers_max = 0\n", "pool_readers_max"),
        ("[limits]\npool_readers_max = \"many\"\n", "[limits]"),
        ("db = [1]\n", "line 1: "),
        ("this is not toml\n", "line 1: "),
    ];
    for (text, expected) in cases {
        std::fs::write(&config, text).unwrap();
        let line = sandbox.fail(&["--config", config.to_str().unwrap(), "count"]);
        assert!(
            line.contains(expected),
            "{text:?}: want {expected:?} in {line:?}"
        );
        assert!(line.contains("config.toml"), "names the file: {line}");
    }
    let line = sandbox.fail(&[
        "--config",
        sandbox.path("missing.toml").to_str().unwrap(),
        "count",
    ]);
    assert!(line.contains("missing.toml"), "{line}");
    assert!(!sandbox.db.exists());
}

#[test]
fn db_comes_from_flag_then_env_then_config_then_default() {
    let sandbox = Sandbox::new();
    let config = sandbox.path("conf/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "db = \"relative.db\"\n").unwrap();
    let config = config.to_str().unwrap().to_owned();

    let run = |extra: &[&str], env: &[(&str, &str)]| -> serde_json::Value {
        let mut command = sandbox.bare_command();
        command.args(extra).args(["config", "--json"]);
        for (name, value) in env {
            command.env(name, value);
        }
        parse_json(&common::ok(command.output().unwrap(), extra))
    };
    let effective = run(
        &["--config", &config, "--db", "/flag.db"],
        &[("MNEMOSYNE_DB", "/env.db")],
    );
    assert_eq!(
        (effective["db"].as_str(), effective["db_source"].as_str()),
        (Some("/flag.db"), Some("--db"))
    );
    let effective = run(&["--config", &config], &[("MNEMOSYNE_DB", "/env.db")]);
    assert_eq!(
        (effective["db"].as_str(), effective["db_source"].as_str()),
        (Some("/env.db"), Some("MNEMOSYNE_DB"))
    );
    let effective = run(&["--config", &config], &[]);
    let relative = sandbox.path("conf/relative.db");
    assert_eq!(effective["db"], relative.to_str().unwrap());
    assert_eq!(effective["db_source"], "config file");
    let effective = run(&[], &[]);
    assert_eq!(effective["db_source"], "default");
    assert_eq!(effective["config_file"], serde_json::Value::Null);

    // The TOML form is a valid config file.
    let text = common::ok(
        sandbox
            .bare_command()
            .args(["--db", "/x.db", "config"])
            .output()
            .unwrap(),
        &["config"],
    );
    let table: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(table["db"].as_str(), Some("/x.db"));
    assert_eq!(table["limits"]["pool_readers_max"].as_integer(), Some(4));
    assert!(
        !std::path::Path::new("/x.db").exists(),
        "config does not open the database"
    );
}

#[test]
fn config_file_in_the_platform_config_dir_is_read() {
    let sandbox = Sandbox::new();
    // bare_command sets XDG_CONFIG_HOME to <sandbox>/home/config.
    let dir = sandbox.path("home/config/mnemosyne");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        "[limits]\nrecall_results_max = 7\n",
    )
    .unwrap();
    let output = sandbox
        .command()
        .args(["config", "--json"])
        .output()
        .unwrap();
    let effective = parse_json(&common::ok(output, &["config"]));
    assert_eq!(effective["limits"]["recall_results_max"], 7);
    assert_eq!(
        effective["config_file"],
        dir.join("config.toml").to_str().unwrap()
    );
}

#[cfg(target_os = "linux")]
#[test]
fn default_db_is_created_in_the_platform_data_dir() {
    let sandbox = Sandbox::new();
    let home = sandbox.path("home");
    let output = sandbox
        .bare_command()
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .args(["remember", "stored in the default place"])
        .output()
        .unwrap();
    common::ok(output, &["remember"]);
    let db = home.join(".local/share/mnemosyne/mnemosyne.db");
    assert!(db.is_file(), "{} was not created", db.display());

    let data = sandbox.path("xdg-data");
    let output = sandbox
        .bare_command()
        .env("XDG_DATA_HOME", &data)
        .args(["count", "--json"])
        .output()
        .unwrap();
    assert_eq!(parse_json(&common::ok(output, &["count"]))["count"], 0);
    assert!(data.join("mnemosyne/mnemosyne.db").is_file());

    // The first database still holds its memory.
    let output = sandbox
        .bare_command()
        .args(["--db", db.to_str().unwrap(), "count"])
        .output()
        .unwrap();
    assert_eq!(common::ok(output, &["count"]).trim(), "1");
}

#[test]
fn config_shows_the_project_detected_in_the_working_directory_and_why() {
    let sandbox = Sandbox::new();
    let json_in = |dir: &std::path::Path| {
        let output = sandbox
            .command()
            .current_dir(dir)
            .args(["config", "--json"])
            .output()
            .expect("run mnemosyne config");
        assert!(output.status.success(), "{output:?}");
        parse_json(&String::from_utf8_lossy(&output.stdout))
    };
    let outside = json_in(&sandbox.path(""));
    assert_eq!(outside["project"]["namespace"], "global");
    assert_eq!(outside["project"]["source"], "default");

    let repo = sandbox.path("atlas");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("docs")).unwrap();
    let detected = json_in(&repo.join("docs"));
    assert_eq!(detected["project"]["namespace"], "project:atlas");
    assert_eq!(detected["project"]["source"], "git_root");
    assert_eq!(detected["project"]["path"], repo.to_str().unwrap());

    // A broken project file does not stop `config`: it says what is wrong.
    std::fs::write(repo.join(".mnemosyne.toml"), "namespace = 7\n").unwrap();
    let broken = json_in(&repo);
    let error = broken["project"]["error"].as_str().expect("an error");
    assert!(error.contains(".mnemosyne.toml"), "{error}");
    let text = sandbox
        .command()
        .current_dir(&repo)
        .arg("config")
        .output()
        .expect("run mnemosyne config");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("# project: none: "), "{text}");
}
