//! hw-sim's Redfish front end over real HTTP: authentication (basic,
//! sessions, expiry), power transitions seen as `PoweringOff` then `Off`,
//! boot override with ETag/If-Match, Redfish errors, per-node quirks, task
//! monitors, TLS, and the inventory export.

use std::time::{Duration, Instant};

use baton_hwsim::{
    AlreadyInStateReply, BootEnabled, BootTarget, ExportDriver, PowerAction, PowerState, Quirks,
    ResetReply,
};
use baton_tests::hwsim::{
    body, client, config, control_get, message_key, redfish, send, start, wait_for, PASSWORD, USER,
};
use reqwest::Method;
use serde_json::{json, Value};

const SYSTEM: &str = "/redfish/v1/Systems/1";
const RESET: &str = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset";

#[tokio::test]
async fn basic_auth_power_off_and_on_seen_through_redfish_and_control() {
    let mut cfg = config(3);
    cfg.delays.power_off = Duration::from_millis(500);
    cfg.delays.power_on = Duration::from_millis(500);
    let rack = start(cfg.clone()).await;
    let http = client();
    let node = &rack.nodes()[1];

    let (status, system) = send(redfish(&http, &rack, node, Method::GET, SYSTEM)).await;
    assert_eq!(status, 200);
    assert_eq!(system["PowerState"], "On");
    assert_eq!(system["Name"], node.name());

    let sent = Instant::now();
    let (status, _) = send(
        redfish(&http, &rack, node, Method::POST, RESET).json(&json!({"ResetType": "ForceOff"})),
    )
    .await;
    assert_eq!(status, 204);
    let (_, during) = send(redfish(&http, &rack, node, Method::GET, SYSTEM)).await;
    if sent.elapsed() < cfg.delays.power_off {
        // Read before the power-off delay can have ended: must be in transition.
        assert_eq!(during["PowerState"], "PoweringOff");
    }

    wait_for("Off", || async {
        let (_, s) = send(redfish(&http, &rack, node, Method::GET, SYSTEM)).await;
        (s["PowerState"] == "Off").then_some(())
    })
    .await;
    let control = control_get(&http, &rack, &format!("/nodes/{}", node.name())).await;
    assert_eq!(control["power_state"], "off");
    assert_eq!(control["counters"]["power_commands"], 1);
    assert_eq!(control["counters"]["power_offs"], 1);

    let sent = Instant::now();
    let (status, _) =
        send(redfish(&http, &rack, node, Method::POST, RESET).json(&json!({"ResetType": "On"})))
            .await;
    assert_eq!(status, 204);
    let (_, during) = send(redfish(&http, &rack, node, Method::GET, SYSTEM)).await;
    let control = control_get(&http, &rack, &format!("/nodes/{}", node.name())).await;
    if sent.elapsed() < cfg.delays.power_on {
        assert_eq!(during["PowerState"], "PoweringOn");
        assert_eq!(control["power_state"], "powering on");
    }
    wait_for("On", || async {
        (node.power_state() == PowerState::On).then_some(())
    })
    .await;
    // The other nodes were never touched.
    assert_eq!(rack.nodes()[0].counters().power_commands, 0);
    assert_eq!(rack.stats().power_commands, 2);
    rack.shutdown().await;
}

#[tokio::test]
async fn sessions_authenticate_until_deleted_or_expired() {
    let mut cfg = config(1);
    cfg.session_timeout = Duration::from_millis(300);
    let rack = start(cfg).await;
    let http = client();
    let node = &rack.nodes()[0];
    let url = |path: &str| format!("{}{path}", rack.redfish_url(node));

    let unauthenticated = http.get(url(SYSTEM)).send().await;
    let unauthenticated = unauthenticated.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unauthenticated.status(), 401);
    assert!(unauthenticated.headers().contains_key("www-authenticate"));

    let wrong = http
        .post(url("/redfish/v1/SessionService/Sessions"))
        .json(&json!({"UserName": USER, "Password": "nope"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wrong.status(), 401);

    let login = |http: reqwest::Client| {
        let url = url("/redfish/v1/SessionService/Sessions");
        async move {
            let reply = http
                .post(url)
                .json(&json!({"UserName": USER, "Password": PASSWORD}))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(reply.status(), 201);
            let token = reply.headers()["x-auth-token"]
                .to_str()
                .unwrap_or_default()
                .to_owned();
            let location = reply.headers()["location"]
                .to_str()
                .unwrap_or_default()
                .to_owned();
            (token, location)
        }
    };
    let (token, location) = login(http.clone()).await;
    assert!(location.starts_with("/redfish/v1/SessionService/Sessions/"));
    let with_token = |path: &str| http.get(url(path)).header("X-Auth-Token", token.as_str());
    let (status, system) = send(with_token(SYSTEM)).await;
    assert_eq!((status, system["PowerState"].as_str()), (200, Some("On")));
    let (status, sessions) = send(with_token("/redfish/v1/SessionService/Sessions")).await;
    assert_eq!(status, 200);
    assert_eq!(sessions["Members"][0]["@odata.id"], location.as_str());

    let (status, _) = send(
        http.delete(url(&location))
            .header("X-Auth-Token", token.as_str()),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = send(with_token(SYSTEM)).await;
    assert_eq!(status, 401, "a deleted session must no longer authenticate");

    let (token, _) = login(http.clone()).await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    let (status, _) = send(http.get(url(SYSTEM)).header("X-Auth-Token", token.as_str())).await;
    assert_eq!(status, 401, "an idle session must expire after the timeout");
    rack.shutdown().await;
}

#[tokio::test]
async fn boot_override_patch_honours_if_match() {
    let rack = start(config(1)).await;
    let http = client();
    let node = &rack.nodes()[0];

    let reply = redfish(&http, &rack, node, Method::GET, SYSTEM)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let etag = reply.headers()["etag"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(etag.starts_with('"'), "strong ETag expected, got {etag}");

    let patch =
        json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}});
    let (status, error) = send(
        redfish(&http, &rack, node, Method::PATCH, SYSTEM)
            .header("If-Match", "\"stale\"")
            .json(&patch),
    )
    .await;
    assert_eq!(status, 412);
    assert_eq!(message_key(&error), "PreconditionFailed");
    assert_eq!(node.boot_override().target, BootTarget::None);

    let (status, system) = send(
        redfish(&http, &rack, node, Method::PATCH, SYSTEM)
            .header("If-Match", etag.as_str())
            .json(&patch),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(system["Boot"]["BootSourceOverrideTarget"], "Pxe");
    let boot = node.boot_override();
    assert_eq!(
        (boot.target, boot.enabled),
        (BootTarget::Pxe, BootEnabled::Once)
    );

    let cases = [
        (
            json!({"Boot": {"BootSourceOverrideTarget": "Floppy"}}),
            "PropertyValueNotInList",
        ),
        (
            json!({"Boot": {"BootSourceOverrideTarget": 4}}),
            "PropertyValueTypeError",
        ),
        (json!({"Boot": {"Bogus": "x"}}), "PropertyUnknown"),
        (json!({"PowerState": "Off"}), "PropertyNotWritable"),
        (json!({"Colour": "blue"}), "PropertyUnknown"),
    ];
    for (patch, key) in cases {
        let (status, error) =
            send(redfish(&http, &rack, node, Method::PATCH, SYSTEM).json(&patch)).await;
        assert_eq!(
            (status, message_key(&error)),
            (400, key.to_owned()),
            "{patch}"
        );
    }
    assert_eq!(
        node.boot_override().target,
        BootTarget::Pxe,
        "refused patches change nothing"
    );
    rack.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_redfish_errors() {
    let rack = start(config(1)).await;
    let http = client();
    let node = &rack.nodes()[0];
    let reset = |body: Value| redfish(&http, &rack, node, Method::POST, RESET).json(&body);

    let cases = [
        (
            json!({"ResetType": "Explode"}),
            400,
            "ActionParameterValueNotInList",
        ),
        (json!({}), 400, "ActionParameterMissing"),
        (
            json!({"ResetType": "On", "Extra": 1}),
            400,
            "ActionParameterUnknown",
        ),
        (
            json!({"ResetType": 1}),
            400,
            "ActionParameterValueTypeError",
        ),
    ];
    for (request, want_status, want_key) in cases {
        let (status, error) = send(reset(request.clone())).await;
        assert_eq!(
            (status, message_key(&error)),
            (want_status, want_key.to_owned()),
            "{request}"
        );
    }
    let (status, error) = send(
        redfish(&http, &rack, node, Method::POST, RESET)
            .header("Content-Type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(
        (status, message_key(&error)),
        (400, "MalformedJSON".to_owned())
    );

    let (status, error) = send(redfish(
        &http,
        &rack,
        node,
        Method::GET,
        "/redfish/v1/Systems/2",
    ))
    .await;
    assert_eq!(
        (status, message_key(&error)),
        (404, "ResourceNotFound".to_owned())
    );
    let reply = redfish(&http, &rack, node, Method::DELETE, SYSTEM)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.status(), 405);
    assert_eq!(reply.headers()["allow"], "GET, HEAD, PATCH");

    // ForceRestart of a node that is off is refused as a conflict.
    node.set_power_out_of_band(false);
    let (status, error) = send(reset(json!({"ResetType": "ForceRestart"}))).await;
    assert_eq!(
        (status, message_key(&error)),
        (409, "ActionParameterValueConflict".to_owned())
    );
    assert_eq!(
        node.counters().power_commands,
        1,
        "only the refused restart reached the model"
    );
    rack.shutdown().await;
}

#[tokio::test]
async fn quirks_narrow_reset_types_and_change_replies() {
    let mut cfg = config(2);
    // Long enough that the task is certainly running until the test ends it.
    cfg.delays.power_off = Duration::from_secs(3600);
    let rack = start(cfg).await;
    let http = client();
    let (plain, quirky) = (&rack.nodes()[0], &rack.nodes()[1]);
    quirky.set_quirks(Quirks {
        reset_types: vec![PowerAction::On, PowerAction::ForceOff],
        already_in_state: AlreadyInStateReply::Conflict,
        reset_reply: ResetReply::Task,
        ..Quirks::default()
    });

    let (_, system) = send(redfish(&http, &rack, quirky, Method::GET, SYSTEM)).await;
    let allowed = &system["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"];
    assert_eq!(allowed, &json!(["On", "ForceOff"]));
    let (status, error) = send(
        redfish(&http, &rack, quirky, Method::POST, RESET)
            .json(&json!({"ResetType": "GracefulShutdown"})),
    )
    .await;
    assert_eq!(
        (status, message_key(&error)),
        (400, "ActionParameterValueNotInList".to_owned())
    );

    // Already on: the quirky BMC answers 409 NoOperation, the plain one 204.
    let on = json!({"ResetType": "On"});
    let (status, error) = send(redfish(&http, &rack, quirky, Method::POST, RESET).json(&on)).await;
    assert_eq!(
        (status, message_key(&error)),
        (409, "NoOperation".to_owned())
    );
    let (status, _) = send(redfish(&http, &rack, plain, Method::POST, RESET).json(&on)).await;
    assert_eq!(status, 204);

    // An accepted reset answers 202 with a task monitor, which answers 202
    // until the power settles and 204 after.
    let reply = redfish(&http, &rack, quirky, Method::POST, RESET)
        .json(&json!({"ResetType": "ForceOff"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.status(), 202);
    assert!(reply.headers().contains_key("retry-after"));
    let monitor = reply.headers()["location"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let (_, task) = body(reply).await;
    assert_eq!(task["TaskState"], "Running");
    let (status, _) = send(redfish(&http, &rack, quirky, Method::GET, &monitor)).await;
    assert_eq!(status, 202);
    // Someone pulls the plug: the power settles and the task completes.
    quirky.set_power_out_of_band(false);
    let (status, _) = send(redfish(&http, &rack, quirky, Method::GET, &monitor)).await;
    assert_eq!(status, 204);
    let (_, task) = send(redfish(
        &http,
        &rack,
        quirky,
        Method::GET,
        "/redfish/v1/TaskService/Tasks/1",
    ))
    .await;
    assert_eq!(task["TaskState"], "Completed");
    rack.shutdown().await;
}

#[tokio::test]
async fn tls_serves_with_the_generated_ca() {
    let mut cfg = config(2);
    cfg.tls = true;
    let rack = start(cfg).await;
    let pem = rack
        .ca_certificate_pem()
        .unwrap_or_else(|| panic!("a TLS rack must expose its CA"));
    let ca = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let node = &rack.nodes()[1];
    assert!(rack.redfish_url(node).starts_with("https://"));
    let (status, system) = send(redfish(&http, &rack, node, Method::GET, SYSTEM)).await;
    assert_eq!((status, system["Name"].as_str()), (200, Some(node.name())));

    // A client that does not trust the CA is refused by its own TLS check.
    let untrusting = client();
    let refused = redfish(&untrusting, &rack, node, Method::GET, SYSTEM)
        .send()
        .await;
    assert!(refused.is_err(), "an unknown CA must fail verification");

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("inv.json");
    rack.write_inventory(&path, ExportDriver::Redfish)
        .unwrap_or_else(|e| panic!("{e}"));
    let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let ca_file = written[0]["bmc"]["ca_file"].as_str().unwrap_or_default();
    assert_eq!(std::fs::read_to_string(ca_file).unwrap_or_default(), pem);
    assert_eq!(written[0]["bmc"]["address"], "127.0.0.1");
    rack.shutdown().await;
}

#[tokio::test]
async fn inventory_lists_every_node_in_import_form() {
    let mut cfg = config(5);
    cfg.nodes_per_domain = 2;
    let rack = start(cfg).await;
    let entries = rack
        .inventory(ExportDriver::Redfish, None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(entries.len(), 5);
    let json = serde_json::to_value(&entries).unwrap_or_else(|e| panic!("{e}"));
    let first = &json[0];
    let keys: Vec<&str> = first
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["bmc", "driver", "name", "power_domain"]);
    assert_eq!(first["driver"], "redfish");
    assert_eq!(first["bmc"]["address"], "http://127.0.0.1");
    assert_eq!(first["bmc"]["username"], USER);
    assert_eq!(first["bmc"]["password"], PASSWORD);
    for (entry, node) in entries.iter().zip(rack.nodes()) {
        assert_eq!(entry.name, node.name());
        assert_eq!(entry.bmc.port, node.endpoints().redfish_port);
    }
    let domains: Vec<&str> = entries.iter().map(|e| e.power_domain.as_str()).collect();
    assert_eq!(domains[0], domains[1]);
    assert_ne!(domains[1], domains[2]);
    rack.shutdown().await;
}

/// A client that sends the headers and part of the body, then stops, is
/// answered 408 and no longer counts as in flight.
#[tokio::test]
async fn a_body_that_stops_half_way_is_answered_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let rack = start(config(1)).await;
    let node = &rack.nodes()[0];
    let mut stream = tokio::net::TcpStream::connect(node.redfish_addr())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    stream
        .write_all(
            b"POST /redfish/v1/SessionService/Sessions HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"UserName\"",
        )
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    let started = Instant::now();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "no reply to a stalled body");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "gave the client time"
    );
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    let (_, body) = reply.split_once("\r\n\r\n").unwrap_or_default();
    let error: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    assert_eq!(message_key(&error), "GeneralError", "{reply}");
    wait_for("the stalled request to leave", || async {
        (node.counters().in_flight == 0).then_some(())
    })
    .await;
    rack.shutdown().await;
}

/// Clients that all hold the same ETag and patch different boot targets at
/// once: exactly one wins, every other gets 412 (no lost update), and the
/// node holds the winner's target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_with_one_etag_have_one_winner() {
    let rack = start(config(1)).await;
    let node = &rack.nodes()[0];
    let targets = ["Pxe", "Hdd", "Cd", "BiosSetup", "Usb"];
    for round in 0..20 {
        let http = client();
        node.set_boot_override(baton_hwsim::BootOverride::default());
        let reply = redfish(&http, &rack, node, Method::GET, SYSTEM)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let etag = reply.headers()["etag"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        let patches = targets.map(|target| {
            let patch = redfish(&http, &rack, node, Method::PATCH, SYSTEM)
                .header("If-Match", etag.as_str())
                .json(&json!({"Boot": {"BootSourceOverrideTarget": target}}));
            tokio::spawn(async move { (target, send(patch).await.0) })
        });
        let mut winners = Vec::new();
        for patch in patches {
            let (target, status) = patch.await.unwrap_or_else(|e| panic!("join: {e}"));
            match status {
                200 => winners.push(target),
                412 => {}
                other => panic!("round {round}: PATCH {target} answered {other}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let (_, system) = send(redfish(&http, &rack, node, Method::GET, SYSTEM)).await;
        assert_eq!(
            system["Boot"]["BootSourceOverrideTarget"], winners[0],
            "round {round}"
        );
    }
    rack.shutdown().await;
}
