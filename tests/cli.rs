//! Guards the `ringmq` binary as a user meets it: the README tour (serve, topic
//! create/list/describe, produce from stdin, consume), a SIGTERM stopping the
//! server cleanly with exit 0 and every record kept, and a kernel that refuses
//! io_uring producing one clear sentence and a non-zero exit within a second.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_ringmq");

/// Spawns `ringmq serve ARGS --data-dir DIR` with its output piped.
fn spawn_serve(args: &[&str], data_dir: &std::path::Path) -> Child {
    Command::new(BINARY)
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts `ringmq serve` and waits for its "listening" line; returns the address.
fn serve(data_dir: &std::path::Path, shards: u16) -> (Child, String) {
    let shards = shards.to_string();
    let mut child = spawn_serve(&["--listen", "127.0.0.1:0", "--kafka-listen", "off", "--shards", &shards], data_dir);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("ringmq listening on "), "unexpected first line: {line:?}");
    let address = line["ringmq listening on ".len()..].split(' ').next().unwrap().to_string();
    (child, address)
}

fn ringmq(bootstrap: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(BINARY)
        .arg("--bootstrap")
        .arg(bootstrap)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (output.status.success(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: sends SIGTERM to a child process we own and have not reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    child.wait().unwrap()
}

#[test]
fn the_readme_tour_works_and_sigterm_stops_cleanly() {
    let dir = common::temp_dir("cli-tour");
    let (mut server, bootstrap) = serve(&dir, 2);
    let (ok, out, err) = ringmq(&bootstrap, &["topic", "create", "orders", "--partitions", "3"], "");
    assert!(ok, "{err}");
    assert!(out.contains("created topic orders"));
    let (ok, out, _) = ringmq(&bootstrap, &["topic", "list"], "");
    assert!(ok && out.lines().any(|l| l == "orders"), "{out}");

    let lines: String = (1..=100).map(|i| format!("order {i}\n")).collect();
    let (ok, _, err) = ringmq(&bootstrap, &["produce", "orders", "--partition", "1"], &lines);
    assert!(ok, "produce failed: {err}");
    let (ok, _, err) =
        ringmq(&bootstrap, &["produce", "orders", "--key", "customer-42", "--acks", "written"], "k1\nk2\n");
    assert!(ok, "{err}");
    let (ok, out, _) = ringmq(
        &bootstrap,
        &["consume", "orders", "--partition", "1", "--max-messages", "100", "--timeout-ms", "2000"],
        "",
    );
    assert!(ok);
    assert_eq!(out, lines, "consume prints one value per line in offset order");
    let keyed = ringmq::client::partition_for_key(b"customer-42", 3).to_string();
    let (ok, out, _) = ringmq(
        &bootstrap,
        &["consume", "orders", "--partition", &keyed, "--from", "beginning", "--timeout-ms", "300"],
        "",
    );
    assert!(ok);
    assert!(out.ends_with("k1\nk2\n"), "keyed records went to murmur2's partition: {out:?}");
    let (ok, out, _) = ringmq(&bootstrap, &["topic", "describe", "orders"], "");
    assert!(ok);
    assert!(out.contains("partitions 3"), "{out}");
    let (ok, _, err) = ringmq(&bootstrap, &["produce", "missing-topic"], "x\n");
    assert!(!ok, "producing to a missing topic must fail");
    assert!(err.contains("unknown topic"), "{err}");

    let status = terminate(&mut server);
    assert!(status.success(), "SIGTERM must stop the server with exit 0, got {status}");

    // Everything is still there after a restart.
    let (mut server, bootstrap) = serve(&dir, 2);
    let (ok, out, _) = ringmq(&bootstrap, &["consume", "orders", "--partition", "1", "--timeout-ms", "300"], "");
    assert!(ok);
    assert_eq!(out, lines);
    assert!(terminate(&mut server).success());
}

/// Runs the server with io_uring_setup(2) refused by a seccomp filter, as a
/// container profile that blocks io_uring would.
#[test]
fn a_refused_io_uring_fails_fast_with_one_clear_sentence() {
    const IO_URING_SETUP: u32 = 425;
    let dir = common::temp_dir("cli-no-uring");
    let mut command = Command::new(BINARY);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--kafka-listen", "off"])
        .arg("--data-dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // prctl(2), which is async-signal-safe; the filter array outlives the call.
    unsafe {
        command.pre_exec(|| {
            let mut filter = [
                libc::sock_filter { code: 0x20, jt: 0, jf: 0, k: 0 }, // load seccomp_data.nr
                libc::sock_filter { code: 0x15, jt: 0, jf: 1, k: IO_URING_SETUP }, // jeq
                libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x0005_0000 | libc::EPERM as u32 }, // errno
                libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 }, // allow
            ];
            let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, 2, &program as *const libc::sock_fprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let output = command.output().unwrap();
    let elapsed = started.elapsed();
    assert!(!output.status.success(), "the server started without io_uring");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?} to fail");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one sentence, got: {stderr}");
    assert!(stderr.contains("io_uring is refused"), "names the cause: {stderr}");
    assert!(stderr.contains("io_uring_disabled=0") && stderr.contains("seccomp"), "names the fix: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn settings_come_from_the_file_then_the_environment_then_flags() {
    let dir = common::temp_dir("cli-config");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ringmq.toml");
    let data_from_file = dir.join("from-file");
    std::fs::write(
        &file,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\nkafka_listen = \"off\"\nshards = 1\nsegment_bytes = 1048576\n",
            data_from_file
        ),
    )
    .unwrap();
    let start = |env: &[(&str, &str)], flags: &[&str]| {
        let mut child = Command::new(BINARY)
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .args(flags)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(terminate(&mut child).success());
        line
    };
    let line = start(&[], &[]);
    assert!(line.contains("(1 shard(s)") && line.contains(data_from_file.to_str().unwrap()), "{line}");
    let data_from_env = dir.join("from-env");
    let line = start(&[("RINGMQ_DATA_DIR", data_from_env.to_str().unwrap())], &[]);
    assert!(line.contains(data_from_env.to_str().unwrap()), "the environment beats the file: {line}");
    let data_from_flag = dir.join("from-flag");
    let line = start(
        &[("RINGMQ_DATA_DIR", data_from_env.to_str().unwrap())],
        &["--data-dir", data_from_flag.to_str().unwrap()],
    );
    assert!(line.contains(data_from_flag.to_str().unwrap()), "the flag beats the environment: {line}");
    std::fs::write(&file, "no_such_setting = 1\n").unwrap();
    let output = Command::new(BINARY).arg("serve").arg("--config").arg(&file).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no_such_setting"), "unknown keys are named");
}

#[test]
fn bench_prints_json_and_writes_a_percentile_distribution() {
    let dir = common::temp_dir("cli-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let hgrm = dir.join("latency.hgrm");
    let output = Command::new(BINARY)
        .args(["bench", "produce", "--embedded", "--count", "5000", "--batch-records", "100", "--message-size", "64"])
        .args(["--acks", "durable", "--shards", "1", "--json", "--hgrm"])
        .arg(&hgrm)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["records"], 5000);
    assert_eq!(report["bytes"], 5000 * 64);
    for key in ["seconds", "records_per_sec", "mb_per_sec"] {
        assert!(report[key].as_f64().unwrap() > 0.0, "{key}: {report}");
    }
    let latency = &report["latency_us"];
    let p50 = latency["p50"].as_u64().unwrap();
    for key in ["p90", "p99", "p999", "p9999", "max"] {
        assert!(latency[key].as_u64().unwrap() >= p50, "{key} below p50: {latency}");
    }
    assert_eq!(latency["samples"], 50, "one sample per batch");
    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(text.starts_with("       Value     Percentile TotalCount"), "{text}");
    assert!(text.contains("#[Max"), "{text}");

    // e2e over TCP against a real server.
    let (mut server, bootstrap) = serve(&dir.join("server"), 2);
    let output = Command::new(BINARY)
        .args(["--bootstrap", &bootstrap, "bench", "e2e", "--count", "2000", "--batch-records", "10"])
        .args(["--partitions", "2", "--consumers", "2", "--message-size", "32", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["records"], 2000, "every record produced was consumed: {report}");
    assert_eq!(report["latency_us"]["samples"], 2000);
    assert!(terminate(&mut server).success());

    // e2e with the producer and the consumer on one thread (embedded only).
    let output = Command::new(BINARY)
        .args(["bench", "e2e", "--embedded", "--same-thread", "--count", "500", "--message-size", "64"])
        .args(["--batch-records", "1", "--shards", "1", "--rate", "20000", "--json", "--data-dir"])
        .arg(dir.join("same-thread"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["records"], 500, "every record produced was consumed: {report}");
    assert_eq!(report["latency_us"]["samples"], 500);
    let output = Command::new(BINARY)
        .args(["bench", "e2e", "--embedded", "--same-thread", "--partitions", "2", "--count", "10"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "--same-thread refuses two partitions");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--same-thread"));
}

/// Long commands show a progress line on standard error when asked (and by
/// default on a terminal), ending with the final count; `never` keeps quiet.
#[test]
fn produce_and_consume_show_progress_when_asked() {
    let dir = common::temp_dir("cli-progress");
    let (mut server, bootstrap) = serve(&dir, 1);
    let lines: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    assert!(ringmq(&bootstrap, &["topic", "create", "bulk"], "").0);
    let (ok, _, err) = ringmq(&bootstrap, &["produce", "bulk", "--acks", "written", "--progress", "always"], &lines);
    assert!(ok, "{err}");
    assert!(err.contains("produced 5000 records ("), "the last progress line counts every record: {err:?}");
    let consume = ["consume", "bulk", "--timeout-ms", "300", "--progress"];
    let (ok, out, err) = ringmq(&bootstrap, &[&consume[..], &["always"]].concat(), "");
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 5000);
    assert!(err.contains("consumed 5000 records ("), "{err:?}");
    let (ok, out, err) = ringmq(&bootstrap, &[&consume[..], &["never"]].concat(), "");
    assert!(ok && out.lines().count() == 5000);
    assert!(!err.contains("records ("), "no progress line with --progress never: {err:?}");
    assert!(terminate(&mut server).success());
}

/// A listener beyond loopback without authentication is warned about at
/// start; with authentication it is not.
#[test]
fn serving_beyond_loopback_without_authentication_prints_a_warning() {
    for (authentication, warned) in [("off", true), ("required", false)] {
        let dir = common::temp_dir(&format!("cli-exposed-{authentication}"));
        let args =
            ["--listen", "0.0.0.0:0", "--kafka-listen", "off", "--shards", "1", "--authentication", authentication];
        let mut child = spawn_serve(&args, &dir);
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("ringmq listening on "), "{line}");
        assert!(terminate(&mut child).success());
        let mut errors = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut errors).unwrap();
        assert_eq!(errors.contains("without authentication"), warned, "--authentication {authentication}: {errors}");
    }
}

/// `bench produce --kafka` drives the Kafka listener with the bench's own
/// batches: every record lands (read back over the native protocol) and the
/// report says which protocol carried them.
#[test]
fn bench_produces_through_the_kafka_listener() {
    let dir = common::temp_dir("cli-bench-kafka");
    let mut server = spawn_serve(&["--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0", "--shards", "2"], &dir);
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let bootstrap = first["ringmq listening on ".len()..].split(' ').next().unwrap().to_string();
    let second = lines.next().unwrap().unwrap();
    let kafka = second.strip_prefix("ringmq kafka listening on ").expect(&second).trim().to_string();
    for (topic, acks, partitions) in [("bk-written", "written", "3"), ("bk-durable", "durable", "1")] {
        let output = Command::new(BINARY)
            .args(["--bootstrap", &bootstrap, "bench", "produce", "--kafka", &kafka, "--topic", topic])
            .args(["--count", "3000", "--batch-records", "100", "--message-size", "64", "--json"])
            .args(["--acks", acks, "--partitions", partitions])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["protocol"], "kafka", "{report}");
        assert_eq!(report["records"], 3000, "{report}");
        assert_eq!(report["latency_us"]["samples"], 30, "one acknowledgement per batch: {report}");
        let client = ringmq::client::Client::connect(&bootstrap).unwrap();
        let landed: i64 = (0..partitions.parse::<u32>().unwrap())
            .map(|partition| client.list_offsets(topic, partition, -1).unwrap().latest)
            .sum();
        assert_eq!(landed, 3000, "records in {topic} after the Kafka bench");
    }
    // Refused where it cannot apply, with the reason.
    let output = Command::new(BINARY)
        .args(["bench", "produce", "--embedded", "--kafka", &kafka, "--count", "10"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--kafka is for produce runs"), "{output:?}");
    assert!(terminate(&mut server).success());
}

#[test]
fn consume_with_a_group_prints_each_record_once_across_runs_and_group_describe_shows_lag() {
    let dir = common::temp_dir("cli-group");
    let (mut server, bootstrap) = serve(&dir, 2);
    let (ok, _, err) = ringmq(&bootstrap, &["topic", "create", "jobs", "--partitions", "2"], "");
    assert!(ok, "{err}");
    let lines: String = (1..=30).map(|i| format!("job {i}\n")).collect();
    let (ok, _, err) = ringmq(&bootstrap, &["produce", "jobs"], &lines);
    assert!(ok, "{err}");
    let group_args =
        |max: &'static str| ["consume", "jobs", "--group", "workers", "--max-messages", max, "--timeout-ms", "500"];
    let (ok, first, err) = ringmq(&bootstrap, &group_args("12"), "");
    assert!(ok, "{err}");
    assert_eq!(first.lines().count(), 12);
    let (ok, out, err) = ringmq(&bootstrap, &["group", "describe", "workers"], "");
    assert!(ok, "{err}");
    let lag: i64 = out
        .lines()
        .filter(|l| l.starts_with("jobs "))
        .map(|l| l.split_whitespace().last().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(lag, 18, "lag is what was not printed: {out}");
    // The second run starts where the group committed: the rest, once.
    let (ok, second, err) = ringmq(&bootstrap, &group_args("100"), "");
    assert!(ok, "{err}");
    let mut all: Vec<&str> = first.lines().chain(second.lines()).collect();
    all.sort();
    let mut expected: Vec<&str> = lines.lines().collect();
    expected.sort();
    assert_eq!(all, expected, "every record printed exactly once over the two runs");
    let (ok, out, _) = ringmq(&bootstrap, &["group", "list"], "");
    assert!(ok && out.lines().any(|l| l.starts_with("workers ") && l.contains("consumer")), "{out}");
    let (ok, _, err) = ringmq(&bootstrap, &["group", "describe", "nobody"], "");
    assert!(!ok && err.contains("unknown group"), "{err}");
    assert!(terminate(&mut server).success());
}

#[test]
fn queue_receive_acknowledges_as_told_and_queue_describe_counts() {
    let dir = common::temp_dir("cli-queue");
    let (mut server, bootstrap) = serve(&dir, 2);
    let (ok, _, err) = ringmq(&bootstrap, &["topic", "create", "tasks", "--partitions", "1"], "");
    assert!(ok, "{err}");
    let lines: String = (1..=10).map(|i| format!("task {i}\n")).collect();
    let (ok, _, err) = ringmq(&bootstrap, &["produce", "tasks"], &lines);
    assert!(ok, "{err}");
    let receive = |max: &'static str, ack: &'static str| {
        ringmq(
            &bootstrap,
            &["queue", "receive", "tasks", "--group", "q", "--max-messages", max, "--timeout-ms", "300", "--ack", ack],
            "",
        )
    };
    let (ok, out, err) = receive("3", "accept");
    assert!(ok, "{err}");
    assert_eq!(out, "task 1\ntask 2\ntask 3\n");
    let (ok, out, err) = receive("2", "release");
    assert!(ok, "{err}");
    assert_eq!(out, "task 4\ntask 5\n");
    let (ok, out, err) = receive("1", "reject");
    assert!(ok, "{err}");
    assert_eq!(out, "task 4\n", "released records come back first");
    let (ok, out, err) = ringmq(&bootstrap, &["queue", "describe", "q"], "");
    assert!(ok, "{err}");
    let row: Vec<&str> = out.lines().find(|l| l.starts_with("tasks ")).unwrap().split_whitespace().collect();
    // topic partition start end available acquired archived
    assert_eq!(&row[..], ["tasks", "0", "4", "10", "6", "0", "4"], "{out}");
    let (ok, out, _) = ringmq(&bootstrap, &["consume", "tasks.dlq", "--timeout-ms", "300"], "");
    assert!(ok);
    assert_eq!(out, "task 4\n", "the rejected record is in the dead-letter topic");
    let (ok, out, err) = ringmq(&bootstrap, &["group", "describe", "q"], "");
    assert!(ok && out.contains("archived"), "group describe shows share groups too: {out} {err}");
    assert!(terminate(&mut server).success());
}

#[test]
fn consume_starts_at_a_time_or_the_last_n_and_prints_kcat_fields_or_json_lines() {
    let dir = common::temp_dir("cli-consume-from");
    let (mut server, bootstrap) = serve(&dir, 2);
    let client = ringmq::client::Client::connect(&bootstrap).unwrap();
    client.create_topic("times", 2, ringmq::client::Retention::Default, ringmq::client::Retention::Default).unwrap();
    // Four records a second apart from 2023-11-14T22:13:20Z, in partition 1,
    // and one record in partition 0.
    for i in 0..4 {
        let mut builder = ringmq::batch::BatchBuilder::new();
        let value = format!("v{i}");
        builder
            .append(1_700_000_000_000 + 1000 * i, Some(b"k"), Some(value.as_bytes()), &[(b"h", Some(b"x"))])
            .unwrap();
        client.produce("times", 1, &builder.finish().unwrap(), ringmq::log::Acks::Durable).unwrap();
    }
    client.produce("times", 0, &common::batch_of(&[b"p0".to_vec()], 1), ringmq::log::Acks::Durable).unwrap();
    let consume = |extra: &[&str]| {
        let mut args = vec!["consume", "times", "--partition", "1", "--timeout-ms", "300"];
        args.extend_from_slice(extra);
        let (ok, out, err) = ringmq(&bootstrap, &args, "");
        assert!(ok, "consume {extra:?} failed: {err}");
        out
    };
    assert_eq!(consume(&["--from", "2023-11-14T22:13:21Z"]), "v1\nv2\nv3\n");
    assert_eq!(consume(&["--from", "2023-11-14T23:13:21.500+01:00"]), "v2\nv3\n");
    assert_eq!(consume(&["--from", "@1700000003000"]), "v3\n");
    assert_eq!(consume(&["--from", "-2"]), "v2\nv3\n");
    assert_eq!(consume(&["--from", "-100"]), "v0\nv1\nv2\nv3\n", "fewer records than asked: all of them");
    assert_eq!(consume(&["--from", "@1800000000000"]), "", "past the last record: the end");
    assert_eq!(
        consume(&["--from", "-1", "--format", "%t/%p@%o %T %k=%s (%S bytes) [%h]\\n"]),
        "times/1@3 1700000003000 k=v3 (2 bytes) [h=x]\n"
    );
    let json = consume(&["--from", "-2", "--format", "json"]);
    let lines: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[0]["offset"].as_u64(), lines[0]["value"].as_str()), (Some(2), Some("v2")));
    assert_eq!(lines[1]["headers"], serde_json::json!([["h", "x"]]));
    // -N and times apply to every partition when none is named.
    let (ok, out, _) = ringmq(&bootstrap, &["consume", "times", "--from", "-1", "--timeout-ms", "300"], "");
    assert!(ok);
    let mut values: Vec<&str> = out.lines().collect();
    values.sort_unstable();
    assert_eq!(values, ["p0", "v3"]);
    // Bad input says what would be right.
    let (ok, _, err) = ringmq(&bootstrap, &["consume", "times", "--from", "yesterday", "--timeout-ms", "100"], "");
    assert!(!ok && err.contains("RFC 3339"), "{err}");
    let (ok, _, err) = ringmq(&bootstrap, &["consume", "times", "--format", "%q", "--timeout-ms", "100"], "");
    assert!(!ok && err.contains("unknown field %q"), "{err}");
    terminate(&mut server);
}
