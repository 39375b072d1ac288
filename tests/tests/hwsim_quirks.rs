//! hw-sim's vendor quirks as a Redfish client meets them, each set through
//! the control API (`PUT /nodes/{name}/quirks`) on a rack served over plain
//! HTTP and over HTTPS: how the power state reads during a transition, and
//! how a command the transition does not allow is answered.

use std::time::Duration;

use baton_hwsim::{InitialPower, Rack, RackConfig};
use baton_tests::hwsim::{config, control_url, message_key, plain_and_tls, redfish, send};
use reqwest::{Client, Method};
use serde_json::{json, Value};

const SYSTEM: &str = "/redfish/v1/Systems/1";
const RESET: &str = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset";

/// A one-node rack that starts off and takes `power_on` to boot.
fn slow_boot(power_on: Duration) -> RackConfig {
    let mut cfg = config(1);
    cfg.initial_power = InitialPower::Off;
    cfg.delays.power_on = power_on;
    cfg
}

/// Merges `change` into node 0's quirks through the control API.
async fn set_quirks(rack: &Rack, change: Value) {
    let http = baton_tests::hwsim::client();
    let node = format!("/nodes/{}", rack.nodes()[0].name());
    let (_, status) = send(http.get(control_url(rack, &node))).await;
    let mut quirks = status["quirks"].clone();
    for (key, value) in change.as_object().into_iter().flatten() {
        quirks[key] = value.clone();
    }
    let (code, answer) = send(
        http.put(control_url(rack, &format!("{node}/quirks")))
            .json(&quirks),
    )
    .await;
    assert_eq!(code, 200, "PUT quirks {quirks}: {answer}");
}

async fn power_state(rack: &Rack, http: &Client) -> String {
    let (status, body) = send(redfish(http, rack, &rack.nodes()[0], Method::GET, SYSTEM)).await;
    assert_eq!(status, 200, "{body}");
    body["PowerState"].as_str().unwrap_or_default().to_owned()
}

async fn reset(rack: &Rack, http: &Client, reset_type: &str) -> (u16, Value) {
    let request = redfish(http, rack, &rack.nodes()[0], Method::POST, RESET)
        .json(&json!({ "ResetType": reset_type }));
    send(request).await
}

#[tokio::test]
async fn power_state_styles_ideal_binary_and_stale() {
    for (rack, http) in plain_and_tls(slow_boot(Duration::from_secs(30))).await {
        assert_eq!(reset(&rack, &http, "On").await.0, 204);
        assert_eq!(power_state(&rack, &http).await, "PoweringOn", "ideal");
        set_quirks(&rack, json!({"power_state_style": "binary"})).await;
        assert_eq!(
            power_state(&rack, &http).await,
            "On",
            "binary: in POST reads On"
        );
        let node = &rack.nodes()[0];
        node.set_power_out_of_band(true);
        set_quirks(&rack, json!({"power_state_style": "stale=1h"})).await;
        assert_eq!(
            power_state(&rack, &http).await,
            "Off",
            "stale: the state of an hour ago, before every change"
        );
        assert_eq!(node.power_state(), baton_hwsim::PowerState::On);
    }
}

#[tokio::test]
async fn a_command_mid_transition_is_refused_or_ignored() {
    for (rack, http) in plain_and_tls(slow_boot(Duration::from_secs(30))).await {
        assert_eq!(reset(&rack, &http, "On").await.0, 204);
        let (status, body) = reset(&rack, &http, "GracefulShutdown").await;
        assert_eq!(
            (status, message_key(&body)),
            (409, "ActionParameterValueConflict".to_owned())
        );
        set_quirks(&rack, json!({"mid_transition": "ignore"})).await;
        let commands = rack.nodes()[0].counters().power_commands;
        assert_eq!(reset(&rack, &http, "GracefulShutdown").await.0, 204);
        assert_eq!(rack.nodes()[0].counters().power_commands, commands + 1);
        assert_eq!(power_state(&rack, &http).await, "PoweringOn", "dropped");
    }
}

async fn patch_boot(
    rack: &Rack,
    http: &Client,
    boot: Value,
    if_match: Option<&str>,
) -> (u16, Value) {
    let mut request =
        redfish(http, rack, &rack.nodes()[0], Method::PATCH, SYSTEM).json(&json!({ "Boot": boot }));
    if let Some(tag) = if_match {
        request = request.header("If-Match", tag);
    }
    send(request).await
}

/// The full message id of a Redfish error body.
fn message_id(error: &Value) -> String {
    error["error"]["@Message.ExtendedInfo"][0]["MessageId"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn boot_patch_quirks_refuse_what_their_bmcs_refuse() {
    for (rack, http) in plain_and_tls(slow_boot(Duration::from_secs(30))).await {
        let pxe_once =
            json!({"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"});
        set_quirks(&rack, json!({"boot_patch": ["refuse_in_post"]})).await;
        assert_eq!(
            patch_boot(&rack, &http, pxe_once.clone(), None).await.0,
            200,
            "off: not in POST"
        );
        assert_eq!(reset(&rack, &http, "On").await.0, 204);
        let (status, body) = patch_boot(&rack, &http, pxe_once.clone(), None).await;
        assert_eq!(
            (status, message_id(&body).as_str()),
            (400, "iLO.2.15.UnableToModifyDuringSystemPOST")
        );
        rack.nodes()[0].set_power_out_of_band(true);

        set_quirks(&rack, json!({"boot_patch": ["all_required"]})).await;
        let (status, body) = patch_boot(&rack, &http, pxe_once.clone(), None).await;
        assert_eq!(
            (status, message_key(&body)),
            (400, "PropertyMissing".to_owned())
        );
        let all = json!({"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Once",
                         "BootSourceOverrideMode": "UEFI"});
        assert_eq!(patch_boot(&rack, &http, all, None).await.0, 200);

        set_quirks(&rack, json!({"boot_patch": ["enabled_required"]})).await;
        let target_only = json!({"BootSourceOverrideTarget": "Cd"});
        assert_eq!(patch_boot(&rack, &http, target_only, None).await.0, 400);

        set_quirks(&rack, json!({"boot_patch": ["no_repeat_enabled"]})).await;
        let (status, body) = patch_boot(&rack, &http, pxe_once.clone(), None).await;
        assert_eq!(
            (status, message_key(&body)),
            (400, "PropertyValueConflict".to_owned()),
            "Once repeats Once"
        );
        assert_eq!(
            patch_boot(
                &rack,
                &http,
                json!({"BootSourceOverrideTarget": "Pxe"}),
                None
            )
            .await
            .0,
            200
        );

        set_quirks(&rack, json!({"boot_patch": ["no_continuous"]})).await;
        let (_, system) = send(redfish(&http, &rack, &rack.nodes()[0], Method::GET, SYSTEM)).await;
        assert_eq!(
            system["Boot"]["BootSourceOverrideEnabled@Redfish.AllowableValues"],
            json!(["Disabled", "Once"])
        );
        let continuous = json!({"BootSourceOverrideEnabled": "Continuous"});
        let (status, body) = patch_boot(&rack, &http, continuous, None).await;
        assert_eq!(
            (status, message_key(&body)),
            (400, "PropertyValueNotInList".to_owned())
        );
        assert_eq!(
            rack.nodes()[0].boot_override().target,
            baton_hwsim::BootTarget::Pxe
        );
    }
}

async fn system_tag(rack: &Rack, http: &Client) -> (Option<String>, Value) {
    let response = redfish(http, rack, &rack.nodes()[0], Method::GET, SYSTEM)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let header = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (header, baton_tests::hwsim::body(response).await.1)
}

#[tokio::test]
async fn etag_quirks_weak_body_only_required_and_racy() {
    for (rack, http) in plain_and_tls(config(1)).await {
        let pxe = json!({"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"});
        set_quirks(&rack, json!({"etag": ["weak"]})).await;
        let (tag, _) = system_tag(&rack, &http).await;
        let tag = tag.unwrap_or_default();
        assert!(tag.starts_with("W/\""), "{tag}");
        assert_eq!(
            patch_boot(&rack, &http, pxe.clone(), Some(&tag)).await.0,
            412,
            "strong comparison"
        );
        let strong = tag.trim_start_matches("W/");
        assert_eq!(
            patch_boot(&rack, &http, pxe.clone(), Some(strong)).await.0,
            200
        );

        set_quirks(&rack, json!({"etag": ["body_only", "if_match_required"]})).await;
        let (header, body) = system_tag(&rack, &http).await;
        assert_eq!(header, None);
        let tag = body["@odata.etag"].as_str().unwrap_or_default().to_owned();
        assert!(tag.starts_with('"'), "{body}");
        let (status, error) = patch_boot(&rack, &http, pxe.clone(), None).await;
        assert_eq!(
            (status, message_key(&error)),
            (428, "PreconditionRequired".to_owned())
        );
        assert_eq!(
            patch_boot(&rack, &http, pxe.clone(), Some(&tag)).await.0,
            200
        );

        // Two writers holding the same tag: one wins, unless the check races.
        for (quirks, both_win) in [(json!([]), false), (json!(["racy"]), true)] {
            set_quirks(&rack, json!({"etag": quirks})).await;
            let none = json!({"BootSourceOverrideTarget": "None"});
            assert_eq!(patch_boot(&rack, &http, none, None).await.0, 200);
            let (tag, _) = system_tag(&rack, &http).await;
            let tag = tag.unwrap_or_default();
            let first = json!({"BootSourceOverrideTarget": "Cd"});
            let second = json!({"BootSourceOverrideTarget": "Usb"});
            let (a, b) = tokio::join!(
                patch_boot(&rack, &http, first, Some(&tag)),
                patch_boot(&rack, &http, second, Some(&tag))
            );
            let mut statuses = [a.0, b.0];
            statuses.sort_unstable();
            let want = if both_win { [200, 200] } else { [200, 412] };
            assert_eq!(statuses, want, "etag {quirks}");
        }
    }
}

#[tokio::test]
async fn a_full_session_table_can_answer_with_a_vendor_message() {
    let mut cfg = config(1);
    cfg.redfish_max_sessions = 1;
    for (rack, http) in plain_and_tls(cfg).await {
        set_quirks(&rack, json!({"session_limit_reply": "vendor"})).await;
        let url = format!(
            "{}/redfish/v1/SessionService/Sessions",
            rack.redfish_url(&rack.nodes()[0])
        );
        let login =
            json!({"UserName": baton_tests::hwsim::USER, "Password": baton_tests::hwsim::PASSWORD});
        assert_eq!(send(http.post(&url).json(&login)).await.0, 201);
        let (status, body) = send(http.post(&url).json(&login)).await;
        assert_eq!(
            (status, message_id(&body).as_str()),
            (503, "IDRAC.2.9.RAC0218")
        );
    }
}

#[tokio::test]
async fn keep_alive_connections_close_after_n_requests_or_when_idle() {
    for (rack, http) in plain_and_tls(config(1)).await {
        let node = &rack.nodes()[0];
        let get = || async {
            let (status, body) = send(redfish(&http, &rack, node, Method::GET, SYSTEM)).await;
            assert_eq!(status, 200, "{body}");
        };
        let end_connection = || async {
            let last = redfish(&http, &rack, node, Method::GET, SYSTEM)
                .header("Connection", "close")
                .send()
                .await;
            assert!(last.is_ok_and(|r| r.status() == 200));
        };
        get().await;
        get().await;
        assert_eq!(node.counters().connections, 1, "kept alive by default");

        set_quirks(&rack, json!({"keep_alive_requests": 2})).await;
        // The open connection keeps the settings it opened with: end it.
        end_connection().await;
        node.reset_counters();
        for _ in 0..5 {
            get().await;
        }
        assert_eq!(
            node.counters().connections,
            3,
            "5 requests, closed after every 2nd"
        );

        set_quirks(
            &rack,
            json!({"keep_alive_requests": null, "keep_alive_idle": "200ms"}),
        )
        .await;
        end_connection().await;
        node.reset_counters();
        get().await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        get().await;
        assert_eq!(
            node.counters().connections,
            2,
            "closed when idle, opened anew"
        );
    }
}
