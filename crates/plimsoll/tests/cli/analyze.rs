//! `plimsoll analyze`: verdicts, the verdict JSON, exit codes and bad input.

use crate::harness::{series_csv, write_file, Cmd};

const MB: f64 = 1024.0 * 1024.0;

#[test]
fn a_leak_exits_1_with_the_verdict_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leak = series_csv(1500, |t| {
        100.0 * MB + 3.0 * MB * t / 60.0 + 20.0 * MB * (t % 30.0) / 30.0
    });
    let file = write_file(dir.path(), "leak.csv", &leak);
    let out = Cmd::new("analyze")
        .arg("--json")
        .arg("--budget")
        .arg("1GiB")
        .arg(&file)
        .expect_exit(1);
    let json = out.json();
    assert_eq!(json["verdict"], "leak");
    let detected = json["detected_after_s"].as_f64().expect("detected_after_s");
    assert!(detected > 0.0 && detected <= 900.0, "{detected}");
    let rate = json["growth_bytes_per_s"].as_f64().expect("growth") * 60.0 / MB;
    assert!((2.0..4.0).contains(&rate), "{rate} MB/min");
    assert!(json["time_to_budget_s"].as_f64().expect("time to budget") > 0.0);
    assert_eq!(json["samples"], 1500);
    assert_eq!(json["duration_s"], 1499.0);
    assert_eq!(json["budget_bytes"], 1u64 << 30);
}

#[test]
fn a_sawtooth_exits_0_and_a_short_series_exits_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let saw = series_csv(1500, |t| 100.0 * MB + 80.0 * MB * (t % 45.0) / 45.0);
    let file = write_file(dir.path(), "saw.csv", &saw);
    let json = Cmd::new("analyze")
        .arg("--json")
        .arg(&file)
        .expect_exit(0)
        .json();
    assert_eq!(json["verdict"], "no-leak");
    assert!(json["detected_after_s"].is_null());

    let short = write_file(dir.path(), "short.csv", &series_csv(120, |_| 100.0 * MB));
    let json = Cmd::new("analyze")
        .arg("--json")
        .arg(&short)
        .expect_exit(3)
        .json();
    assert_eq!(json["verdict"], "inconclusive");
    assert!(json["needs_more_s"].as_f64().expect("needs_more_s") > 0.0);
}

#[test]
fn human_output_reads_like_a_sentence() {
    let out = Cmd::new("analyze")
        .arg("-")
        .stdin(series_csv(1500, |t| 100.0 * MB + 3.0 * MB * t / 60.0))
        .expect_exit(1);
    assert!(out.stdout.contains("-: LEAK"), "{}", out.stdout);
    assert!(out.stdout.contains("confirmed"), "{}", out.stdout);
}

#[test]
fn endless_or_huge_lines_stop_at_the_cap_with_a_short_message() {
    // /dev/zero has no line end at all: refused at 64 KiB, not buffered until killed.
    let out = Cmd::new("analyze").arg("/dev/zero").expect_exit(2);
    assert_eq!(
        out.stderr.trim_end(),
        "plimsoll: bad series file '/dev/zero': line 1 is longer than 65536 bytes \
         (is this the right file?)"
    );
    // A 20 MB line on standard input.
    let mut huge = b"t_s,rss_bytes\n0,".to_vec();
    huge.resize(20 << 20, b'7');
    let out = Cmd::new("analyze").arg("-").stdin(huge).expect_exit(2);
    assert!(
        out.stderr.contains("line 2 is longer than"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.len() < 200, "{}", out.stderr);
    // Binary garbage in a value is cut short and escaped, not echoed raw.
    let mut garbage = b"t_s,rss_bytes\n0,".to_vec();
    garbage.extend((0..4000u32).map(|i| (i % 7) as u8 * 37 + 1));
    garbage.push(b'\n');
    let out = Cmd::new("analyze").arg("-").stdin(garbage).expect_exit(2);
    assert!(out.stderr.contains("invalid rss_bytes"), "{}", out.stderr);
    assert!(out.stderr.contains("… (4000 bytes)"), "{}", out.stderr);
    assert!(
        !out.stderr.contains('\u{1}'),
        "raw control bytes: {}",
        out.stderr
    );
    assert!(out.stderr.len() < 400, "{}", out.stderr);
}

#[test]
fn bad_input_exits_2_naming_the_line_and_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "bad_number.csv",
            "t_s,rss_bytes\n0,100\n1,lots\n",
            "line 3: invalid rss_bytes 'lots'",
        ),
        (
            "backwards.csv",
            "t_s,rss_bytes\n0,100\n5,100\n2,100\n",
            "line 4: t_s '2' goes back in time",
        ),
        (
            "no_column.csv",
            "t_s,heap\n0,100\n",
            "missing column 'rss_bytes'",
        ),
        ("empty.csv", "", "empty file"),
        ("header_only.csv", "t_s,rss_bytes\n", "no samples"),
    ];
    for (name, text, expected) in cases {
        let file = write_file(dir.path(), name, text);
        let out = Cmd::new("analyze").arg(&file).expect_exit(2);
        assert!(out.stderr.contains(expected), "{name}: {}", out.stderr);
        assert!(out.stderr.contains(name), "{name}: {}", out.stderr);
        assert!(
            out.stdout.is_empty(),
            "nothing printed half-way: {}",
            out.stdout
        );
    }
    let out = Cmd::new("analyze")
        .arg(dir.path().join("missing.csv"))
        .expect_exit(2);
    assert!(out.stderr.contains("missing.csv"), "{}", out.stderr);
    let out = Cmd::new("analyze")
        .arg("--budget")
        .arg("12QB")
        .arg("x.csv")
        .expect_exit(2);
    assert!(out.stderr.contains("'12QB'"), "{}", out.stderr);
}

#[test]
fn warmup_leaves_the_start_up_out() {
    // A 300 MB load over the first five minutes, then flat: with the first six minutes left
    // out there is nothing left that grows.
    let text = series_csv(1800, |t| 80.0 * MB + 300.0 * MB * (t / 300.0).min(1.0));
    let json = Cmd::new("analyze")
        .arg("--json")
        .arg("--warmup")
        .arg("6m")
        .arg("-")
        .stdin(text)
        .expect_exit(0)
        .json();
    assert_eq!(json["verdict"], "no-leak");
    assert_eq!(json["samples"], 1440);
    let out = Cmd::new("analyze")
        .arg("--warmup")
        .arg("soon")
        .arg("x.csv")
        .expect_exit(2);
    assert!(out.stderr.contains("'soon'"), "{}", out.stderr);
    // Warm-ups are at most 24h, as everywhere else.
    let out = Cmd::new("analyze")
        .arg("--warmup")
        .arg("48h")
        .arg("x.csv")
        .expect_exit(2);
    assert!(out.stderr.contains("'48h'"), "{}", out.stderr);
    // The warm-up is no budget breach either (as in `soak`): 900 MB for the first minute,
    // then 200 MB, under a 500 MB budget.
    let spike = series_csv(1200, |t| if t < 60.0 { 900e6 } else { 200e6 });
    let json = Cmd::new("analyze")
        .arg("--json")
        .arg("--budget")
        .arg("500M")
        .arg("--warmup")
        .arg("2m")
        .arg("-")
        .stdin(spike.clone())
        .expect_exit(0)
        .json();
    assert_eq!(json["budget_exceeded"], false, "{json}");
    Cmd::new("analyze")
        .arg("--budget")
        .arg("500M")
        .arg("-")
        .stdin(spike)
        .expect_exit(1);
    // A warm-up as long as the series names both.
    let out = Cmd::new("analyze")
        .arg("--warmup")
        .arg("23h")
        .arg("-")
        .stdin(series_csv(600, |_| 50.0 * MB))
        .expect_exit(2);
    assert!(
        out.stderr.contains("--warmup 23h") && out.stderr.contains("spans 9m 59s"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_slow_ramp_that_never_confirms_is_inconclusive_with_needs_more_and_a_reason() {
    // 0.6 MB/min for 10 minutes: too soon to confirm, never flat.
    let text = series_csv(600, |t| 100.0 * MB + 0.6 * MB * t / 60.0);
    let json = Cmd::new("analyze")
        .arg("--json")
        .arg("-")
        .stdin(text)
        .expect_exit(3)
        .json();
    assert_eq!(json["verdict"], "inconclusive", "{json}");
    assert!(json["needs_more_s"].as_f64().expect("needs_more_s") > 0.0);
    let reason = json["reason"].as_str().expect("reason");
    assert!(reason.contains("rising"), "{reason}");
}

#[test]
fn hostile_shapes_are_not_no_leak() {
    let mb = |v: f64| (v * MB) as u64;
    // 1 MB per sample, 180 s apart; and two samples 15 minutes apart.
    let sparse: String = std::iter::once("t_s,rss_bytes\n".to_owned())
        .chain((0..12).map(|i| format!("{},{}\n", 180 * i, mb(100.0 + f64::from(i)))))
        .collect();
    let two = format!("t_s,rss_bytes\n0,{}\n900,{}\n", mb(100.0), mb(900.0));
    for text in [sparse, two] {
        let json = Cmd::new("analyze")
            .arg("--json")
            .arg("-")
            .stdin(text)
            .expect_exit(3)
            .json();
        assert_eq!(json["verdict"], "inconclusive", "{json}");
        assert!(json["needs_more_s"].as_f64().is_some(), "{json}");
    }
}

#[test]
fn a_series_over_its_budget_fails_whatever_the_trend() {
    // Flat at 300 MB against a 200 MiB budget: no leak, but over budget.
    let text = series_csv(1500, |_| 300.0 * MB);
    let out = Cmd::new("analyze")
        .arg("--budget")
        .arg("200MiB")
        .arg("-")
        .stdin(text.clone())
        .expect_exit(1);
    assert!(out.stdout.contains("EXCEEDED"), "{}", out.stdout);
    let json = Cmd::new("analyze")
        .arg("--json")
        .arg("--budget")
        .arg("200MiB")
        .arg("-")
        .stdin(text)
        .expect_exit(1)
        .json();
    assert_eq!(json["budget_exceeded"], true, "{json}");
    assert_eq!(json["budget_exceeded_after_s"], 0.0, "{json}");
    // The leak verdict alone would read as a pass: `passed` is the whole answer.
    assert_eq!(json["verdict"], "no-leak", "{json}");
    assert_eq!(json["passed"], false, "{json}");
    let json = Cmd::new("analyze")
        .arg("--json")
        .arg("-")
        .stdin(series_csv(1500, |_| 300.0 * MB))
        .expect_exit(0)
        .json();
    assert_eq!(json["passed"], true, "{json}");
}
