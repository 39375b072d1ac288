//! The stable equivalent of the `cargo fuzz` targets in `fuzz/`: each of
//! the five surfaces (API request path, config parser, JSON Patch rules,
//! Redfish and IPMI answer decoding) gets the committed fuzz corpus and a
//! few hundred proptest-generated inputs, through the same entries the
//! fuzz targets use (`baton_tests::fuzzing`), in a few seconds.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use baton_tests::fuzzing::{self, ApiTarget, RedfishTarget, ANSWER_SEPARATOR};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

/// The committed corpus of one fuzz target.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} cannot be read: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

/// A corpus input with a few bytes overwritten, inserted or removed.
fn mutated(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), 0_u8..3, any::<u8>()), 1..6);
    (prop::sample::select(corpus), edits).prop_map(|(mut input, edits)| {
        for (at, kind, byte) in edits {
            let at = at.index(input.len() + 1);
            match kind {
                0 if at < input.len() => input[at] = byte,
                1 if at < input.len() => {
                    input.remove(at);
                }
                _ => input.insert(at, byte),
            }
        }
        input
    })
}

/// A small JSON value: scalars, strings with odd characters, shallow
/// arrays and objects.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "[a-z0-9 ._/\u{0}\u{7f}é-]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

// ---------------------------------------------------------------- API

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics anywhere in the process (a handler's panic only closes
/// its connection, the test would not see it otherwise).
fn count_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default(info);
    }));
}

/// One request: a method and a path from the routes (with odd idents and
/// queries), some headers, and a JSON body of random shape.
fn api_request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec![
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
    ]);
    let ident = prop_oneof![
        Just("n1".to_owned()),
        Just("n2".to_owned()),
        "[a-z0-9%./-]{0,12}",
    ];
    let path = (
        prop::sample::select(vec![
            "/v1",
            "/v1/conductor",
            "/metrics",
            "/v1/nodes",
            "/v1/nodes/detail",
            "/v1/nodes/import",
            "/v1/nodes/{}",
            "/v1/nodes/{}/states",
            "/v1/nodes/{}/states/power",
            "/v1/nodes/{}/states/boot_device",
            "/v1/nodes/{}/maintenance",
            "/v1/nodes/{}/action",
            "/v1/nodes/{}/os-instance-actions",
            "/v1/baremetalservers/action",
            "/v1/p1/baremetalservers/action",
            "/v1/jobs",
            "/v1/jobs/{}",
            "/v1/jobs/{}/cancel",
            "/v1/schedules",
            "/v1/schedules/{}",
        ]),
        ident,
        prop::option::of("[a-z_=&0-9%+-]{0,20}"),
    )
        .prop_map(|(template, ident, query)| {
            let path = template.replace("{}", &ident);
            query.map_or(path.clone(), |q| format!("{path}?{q}"))
        });
    let content_type = prop::sample::select(vec![
        "",
        "content-type: application/json\r\n",
        "content-type: text/plain\r\n",
    ]);
    (method, path, content_type, prop::option::of(json_value()), any::<bool>()).prop_map(
        |(method, path, content_type, body, close)| {
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let connection = if close { "connection: close\r\n" } else { "" };
            format!(
                "{method} {path} HTTP/1.1\r\nhost: baton\r\n{content_type}{connection}content-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        },
    )
}

#[test]
fn api_inputs_get_no_5xx_and_no_panic() {
    count_panics();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let target = runtime.block_on(ApiTarget::start());
    let corpus = corpus("api");
    let mut sent = 0;
    for input in corpus.iter().filter(|i| !fuzzing::may_name_a_bmc(i)) {
        runtime.block_on(target.send(input));
        sent += 1;
    }
    assert!(sent > 0, "no corpus input could be sent");
    let inputs = prop_oneof![api_request(), mutated(corpus)]
        .prop_filter("may name a BMC", |i| !fuzzing::may_name_a_bmc(i));
    runner(200)
        .run(&inputs, |input| {
            runtime.block_on(target.send(&input));
            Ok(())
        })
        .unwrap();
    runtime.block_on(target.stop());
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");
}

/// The fuzz harness writes each input and then closes its sending side:
/// batond took that for a hang-up and dropped the request unanswered,
/// mid-handling, unless the answer was ready at once.
#[test]
fn a_request_whose_client_closes_its_sending_side_is_answered() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let target = runtime.block_on(ApiTarget::start());
    for path in [
        "/v1/nodes/n1",
        "/v1/nodes?limit=5",
        "/v1/jobs",
        "/v1/conductor",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nhost: baton\r\n\r\n");
        let answer = runtime.block_on(target.send(request.as_bytes()));
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "{path}: {answer:?}"
        );
    }
    runtime.block_on(target.stop());
}

// ------------------------------------------------------------- config

fn config_text() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "[api]",
        "[state]",
        "[conductor]",
        "[conductor.min_command_interval]",
        "[sync]",
        "[power_on]",
        "[log]",
        "[auth]",
        "[bmc]",
        "socket",
        "max_connections",
        "header_timeout",
        "write_timeout",
        "database",
        "workers",
        "shutdown_timeout",
        "bmc_timeout",
        "max_retries",
        "redfish",
        "ipmi",
        "interval",
        "policy",
        "max_failures",
        "stagger",
        "max_per_domain",
        "level",
        "format",
        "admin_groups",
        "default_password_credential",
    ]);
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{1,4}(ms|s|m|h|d|y|ns)?".prop_map(|d| format!("{d:?}")),
        "[a-z/._ -]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("[]".to_owned()),
        Just("true".to_owned()),
        Just("{ a = 1 }".to_owned()),
        Just("1e999".to_owned()),
    ];
    prop::collection::vec((key, value), 0..10).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(key, value)| {
                if key.starts_with('[') {
                    format!("{key}\n")
                } else {
                    format!("{key} = {value}\n")
                }
            })
            .collect()
    })
}

#[test]
fn config_files_are_refused_with_problems_or_read_back_alike() {
    let corpus = corpus("config");
    for input in &corpus {
        fuzzing::config(input);
    }
    let inputs = prop_oneof![config_text().prop_map(String::into_bytes), mutated(corpus)];
    runner(500)
        .run(&inputs, |input| {
            fuzzing::config(&input);
            Ok(())
        })
        .unwrap();
}

// --------------------------------------------------------- JSON Patch

fn patch_body() -> impl Strategy<Value = Vec<u8>> {
    let pointer = prop::sample::select(vec![
        "",
        "/",
        "/name",
        "/driver",
        "/power_domain",
        "/maintenance",
        "/maintenance_reason",
        "/extra",
        "/extra/rack",
        "/extra/slots/0",
        "/extra/slots/-",
        "/extra/slots/2/u",
        "/extra/a~1b",
        "/bmc",
        "/bmc/address",
        "/bmc/password",
        "/bmc/username",
        "/bmc/port",
        "/uuid",
        "/power_state",
        "/colour",
    ]);
    let op = (
        prop::sample::select(vec!["add", "remove", "replace", "move", "copy", "test", "frob"]),
        pointer.clone(),
        pointer,
        json_value(),
    )
        .prop_map(|(op, path, from, value)| {
            serde_json::json!({"op": op, "path": path, "from": from, "value": value})
        });
    prop::collection::vec(op, 0..6)
        .prop_map(|ops| serde_json::Value::from(ops).to_string().into_bytes())
}

#[test]
fn patches_give_a_valid_node_or_an_error_without_the_password() {
    let corpus = corpus("patch");
    for input in &corpus {
        fuzzing::patch(input);
    }
    runner(500)
        .run(&prop_oneof![patch_body(), mutated(corpus)], |input| {
            fuzzing::patch(&input);
            Ok(())
        })
        .unwrap();
}

// ------------------------------------------------------------ Redfish

/// A raw answer: a status, some of the headers the driver reads, and a
/// body of random JSON or a Redfish-shaped one.
fn redfish_answer() -> impl Strategy<Value = Vec<u8>> {
    let status = prop::sample::select(vec![
        200_u16, 201, 202, 204, 400, 401, 404, 409, 412, 500, 503,
    ]);
    let header = prop::sample::select(vec![
        "x-auth-token: tok\r\n",
        "location: /redfish/v1/TaskMonitors/1\r\n",
        "location: http://elsewhere.example/x\r\n",
        "retry-after: 99999999999\r\n",
        "retry-after: soon\r\n",
        "etag: W/\"1\"\r\n",
        "content-length: 99\r\n",
    ]);
    let body = prop_oneof![
        json_value().prop_map(|v| v.to_string()),
        Just(r#"{"Systems":{"@odata.id":"/redfish/v1/Systems"},"Links":{"Sessions":{"@odata.id":"/redfish/v1/SessionService/Sessions"}}}"#.to_owned()),
        Just(r#"{"Members":[{"@odata.id":"/redfish/v1/Systems/1"}]}"#.to_owned()),
        Just(r##"{"PowerState":"On","Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideTarget":"Pxe"},"Actions":{"#ComputerSystem.Reset":{"target":"/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"}}}"##.to_owned()),
        Just(r#"{"TaskState":"Exception","Messages":[{"Message":"no"}]}"#.to_owned()),
    ];
    (status, prop::collection::vec(header, 0..3), body).prop_map(|(status, headers, body)| {
        let headers: String = headers.concat();
        let length = if headers.contains("content-length") {
            String::new()
        } else {
            format!("content-length: {}\r\n", body.len())
        };
        format!("HTTP/1.1 {status} X\r\n{headers}{length}\r\n{body}").into_bytes()
    })
}

fn redfish_input() -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), prop::collection::vec(redfish_answer(), 0..8)).prop_map(|(calls, answers)| {
        let mut input = vec![calls];
        input.extend(answers.join(ANSWER_SEPARATOR));
        input
    })
}

#[test]
fn redfish_answers_end_within_the_deadline_without_showing_the_password() {
    let runtime = fuzzing::redfish_runtime();
    let target = runtime.block_on(RedfishTarget::start());
    let corpus = corpus("redfish");
    for input in &corpus {
        runtime.block_on(target.run(input));
    }
    runner(200)
        .run(&prop_oneof![redfish_input(), mutated(corpus)], |input| {
            runtime.block_on(target.run(&input));
            Ok(())
        })
        .unwrap();
}

// --------------------------------------------------------------- IPMI

#[test]
fn ipmi_answers_decode_without_panicking() {
    let corpus = corpus("ipmi");
    for input in &corpus {
        fuzzing::ipmi(input);
    }
    let inputs = prop_oneof![prop::collection::vec(any::<u8>(), 0..64), mutated(corpus)];
    runner(2000)
        .run(&inputs, |input| {
            fuzzing::ipmi(&input);
            Ok(())
        })
        .unwrap();
}
