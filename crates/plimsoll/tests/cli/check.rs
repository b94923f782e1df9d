//! `plimsoll check PID`: the breakdown of this test process (whose tree holds the `plimsoll`
//! child checking it), as JSON and for people, and a missing pid.

use crate::harness::Cmd;

#[test]
fn check_json_of_this_process_shows_its_tree() {
    let own = std::process::id();
    let json = Cmd::new("check")
        .arg(own.to_string())
        .arg("--json")
        .expect_exit(0)
        .json();
    assert_eq!(json["pid"], own);
    let processes = json["processes"].as_array().expect("processes");
    assert_eq!(processes[0]["pid"], own);
    assert_eq!(processes[0]["depth"], 0);
    // The checking process is a child of this one while it runs.
    assert!(
        processes
            .iter()
            .any(|p| p["name"] == "plimsoll" && p["ppid"] == own && p["depth"] == 1),
        "{json:#}"
    );
    assert_eq!(json["process_count"], processes.len());
    let bytes = |value: &serde_json::Value, field: &str| {
        value[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} in {value:#}"))
    };
    let rss = bytes(&json, "rss_bytes");
    assert!(rss > 1 << 20, "{json:#}");
    let summed: u64 = processes.iter().map(|p| bytes(p, "rss_bytes")).sum();
    assert_eq!(rss, summed);
    assert_eq!(
        bytes(&json, "anon_bytes") + bytes(&json, "file_bytes") + bytes(&json, "shmem_bytes"),
        rss
    );
    assert!(json["swap_bytes"].is_u64());
    assert_eq!(json["detail"], "smaps_rollup");
    let pss = bytes(&json, "pss_bytes");
    assert!(bytes(&json, "uss_bytes") <= pss && pss <= rss, "{json:#}");
    assert!(json["cgroup"].is_null() || json["cgroup"]["usage_bytes"].is_u64());
    assert!(json["psi"].is_null() || json["psi"]["some_avg10"].is_f64());
}

#[test]
fn check_for_people_is_a_table_with_totals() {
    let own = std::process::id().to_string();
    let out = Cmd::new("check").arg(&own).expect_exit(0);
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["PID", "NAME", "RSS", "PSS", "USS", "SWAP"]);
    assert!(
        lines
            .next()
            .expect("root row")
            .trim_start()
            .starts_with(&own),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("total ("), "{}", out.stdout);
    assert!(out.stdout.contains("resident: anon "), "{}", out.stdout);
    assert!(out.stdout.contains("cgroup"), "{}", out.stdout);
    assert!(out.stdout.contains("memory pressure"), "{}", out.stdout);
}

#[test]
fn check_of_a_missing_pid_exits_2_naming_it() {
    let out = Cmd::new("check").arg("4000000000").expect_exit(2);
    assert!(out.stderr.contains("4000000000"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let out = Cmd::new("check")
        .arg("4000000000")
        .arg("--json")
        .expect_exit(2);
    assert!(
        out.stderr.contains("no process with pid 4000000000"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}
