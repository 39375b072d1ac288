//! hw-sim's Redfish service against DSP0266 (Redfish Specification 1.x)
//! rules a conformance tool or a careful client relies on: the `Link`
//! header, AccountService, `OData-Version` negotiation, POST to `Members`,
//! `$` query parameters, and the headers of errors. Each test runs over
//! plain HTTP and over HTTPS (`--tls`).

use baton_hwsim::Rack;
use baton_tests::hwsim::{client, config, message_key, plain_and_tls, redfish, send, start, USER};
use reqwest::{Client, Method, Response};
use serde_json::{json, Value};

const ROOT: &str = "/redfish/v1";
const SYSTEM: &str = "/redfish/v1/Systems/1";
const SESSIONS: &str = "/redfish/v1/SessionService/Sessions";

/// A one-node rack over plain HTTP, then one over HTTPS.
async fn racks() -> Vec<(Rack, Client)> {
    plain_and_tls(config(1)).await
}

async fn raw(rack: &Rack, http: &Client, method: Method, path: &str) -> Response {
    redfish(http, rack, &rack.nodes()[0], method, path)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn get(rack: &Rack, http: &Client, path: &str) -> Value {
    let (status, body) = send(redfish(http, rack, &rack.nodes()[0], Method::GET, path)).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

#[tokio::test]
async fn get_and_head_name_the_schema_in_a_link_header() {
    for (rack, http) in racks().await {
        let cases = [
            (SYSTEM, "ComputerSystem.v1_22_0.json"),
            ("/redfish/v1/Systems", "ComputerSystemCollection.json"),
            (ROOT, "ServiceRoot.v1_21_0.json"),
        ];
        for (path, schema) in cases {
            for method in [Method::GET, Method::HEAD] {
                let reply = raw(&rack, &http, method.clone(), path).await;
                assert_eq!(reply.status(), 200);
                assert_eq!(
                    header(&reply, "link"),
                    format!("<http://redfish.dmtf.org/schemas/v1/{schema}>; rel=describedby"),
                    "{method} {path}"
                );
                assert_eq!(header(&reply, "odata-version"), "4.0");
                assert!(!header(&reply, "etag").is_empty(), "{method} {path}");
                assert!(!header(&reply, "allow").is_empty(), "{method} {path}");
            }
        }
        rack.shutdown().await;
    }
}

#[tokio::test]
async fn account_service_lists_the_bmc_user_and_the_predefined_roles() {
    for (rack, http) in racks().await {
        let root = get(&rack, &http, ROOT).await;
        let service_path = root["AccountService"]["@odata.id"].as_str().unwrap_or("");
        let service = get(&rack, &http, service_path).await;
        let accounts_path = service["Accounts"]["@odata.id"].as_str().unwrap_or("");
        let accounts = get(&rack, &http, accounts_path).await;
        assert_eq!(accounts["Members@odata.count"], 1, "{accounts}");
        let account_path = accounts["Members"][0]["@odata.id"].as_str().unwrap_or("");
        let account = get(&rack, &http, account_path).await;
        assert_eq!(
            (&account["UserName"], &account["RoleId"]),
            (&json!(USER), &json!("Administrator"))
        );
        assert_eq!(account["Password"], Value::Null, "never shown");

        let roles_path = service["Roles"]["@odata.id"].as_str().unwrap_or("");
        let roles = get(&rack, &http, roles_path).await;
        let mut privileges = Vec::new();
        for member in roles["Members"].as_array().cloned().unwrap_or_default() {
            let role = get(&rack, &http, member["@odata.id"].as_str().unwrap_or("")).await;
            assert_eq!(role["IsPredefined"], true);
            privileges.push((role["RoleId"].clone(), role["AssignedPrivileges"].clone()));
        }
        assert_eq!(
            privileges,
            [
                (
                    json!("Administrator"),
                    json!([
                        "Login",
                        "ConfigureManager",
                        "ConfigureUsers",
                        "ConfigureSelf",
                        "ConfigureComponents"
                    ])
                ),
                (
                    json!("Operator"),
                    json!(["Login", "ConfigureSelf", "ConfigureComponents"])
                ),
                (json!("ReadOnly"), json!(["Login", "ConfigureSelf"])),
            ]
        );

        // Accounts cannot be created, changed or deleted here: 405 with Allow.
        for (method, path) in [
            (Method::POST, accounts_path),
            (Method::PATCH, account_path),
            (Method::DELETE, account_path),
        ] {
            let reply = raw(&rack, &http, method.clone(), path).await;
            assert_eq!(reply.status(), 405, "{method} {path}");
            assert_eq!(header(&reply, "allow"), "GET, HEAD", "{method} {path}");
        }
        rack.shutdown().await;
    }
}

#[tokio::test]
async fn an_odata_version_other_than_4_0_is_refused_412() {
    for (rack, http) in racks().await {
        let node = &rack.nodes()[0];
        let ask = |version: &'static str| {
            redfish(&http, &rack, node, Method::GET, SYSTEM).header("OData-Version", version)
        };
        let (status, error) = send(ask("4.01")).await;
        assert_eq!(status, 412, "{error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("4.01")),
            "{error}"
        );
        assert_eq!(send(ask("4.0")).await.0, 200);
        // A reset asking for 5.0 never reaches the power model.
        let reset = redfish(
            &http,
            &rack,
            node,
            Method::POST,
            "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
        )
        .header("OData-Version", "5.0")
        .json(&json!({"ResetType": "ForceOff"}));
        assert_eq!(send(reset).await.0, 412);
        assert_eq!(node.counters().power_commands, 0);
        rack.shutdown().await;
    }
}

#[tokio::test]
async fn a_post_to_members_creates_a_session_like_a_post_to_the_collection() {
    for (rack, http) in racks().await {
        let base = rack.redfish_url(&rack.nodes()[0]);
        let login = http
            .post(format!("{base}{SESSIONS}/Members"))
            .json(&json!({"UserName": USER, "Password": baton_tests::hwsim::PASSWORD}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(login.status(), 201);
        let token = header(&login, "x-auth-token");
        let location = header(&login, "location");
        assert!(location.starts_with(&format!("{SESSIONS}/")), "{location}");
        let session = http
            .get(format!("{base}{location}"))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(session.status(), 200);
        let listed = get(&rack, &http, SESSIONS).await;
        assert_eq!(listed["Members"][0]["@odata.id"], json!(location));
        // Members takes only POST.
        let reply = raw(&rack, &http, Method::GET, &format!("{SESSIONS}/Members")).await;
        assert_eq!(
            (reply.status().as_u16(), header(&reply, "allow")),
            (405, "POST".into())
        );
        rack.shutdown().await;
    }
}

#[tokio::test]
async fn unsupported_dollar_parameters_are_501_and_top_skip_work_as_declared() {
    for (rack, http) in racks().await {
        let node = &rack.nodes()[0];
        let root = get(&rack, &http, ROOT).await;
        let features = &root["ProtocolFeaturesSupported"];
        assert_eq!(features["TopSkipQuery"], true, "{features}");
        assert_eq!(features["SelectQuery"], false, "{features}");
        for query in [
            "$expand=.",
            "$select=Name",
            "$filter=Id%20eq%201",
            "$levels=1",
        ] {
            let path = format!("{SYSTEM}?{query}");
            let (status, error) = send(redfish(&http, &rack, node, Method::GET, &path)).await;
            assert_eq!(
                (status, message_key(&error)),
                (501, "QueryParameterUnsupported".to_owned()),
                "{query}"
            );
        }
        let (status, error) = send(redfish(
            &http,
            &rack,
            node,
            Method::GET,
            &format!("{SESSIONS}?$top=x"),
        ))
        .await;
        assert_eq!(status, 400, "{error}");
        // Parameters without `$` are ignored.
        assert_eq!(
            get(&rack, &http, &format!("{SYSTEM}?only&foo=1")).await["Id"],
            "1"
        );

        let mut ids = Vec::new();
        for _ in 0..3 {
            let login = json!({"UserName": USER, "Password": baton_tests::hwsim::PASSWORD});
            let (status, created) = send(
                http.post(format!("{}{SESSIONS}", rack.redfish_url(node)))
                    .json(&login),
            )
            .await;
            assert_eq!(status, 201);
            ids.push(created["@odata.id"].clone());
        }
        let page = get(&rack, &http, &format!("{SESSIONS}?$skip=1&$top=1")).await;
        assert_eq!(page["Members"], json!([{"@odata.id": ids[1]}]), "{page}");
        assert_eq!(page["Members@odata.count"], 3);
        rack.shutdown().await;
    }
}

#[tokio::test]
async fn errors_carry_the_headers_dsp0266_asks_for() {
    for (rack, http) in racks().await {
        let base = rack.redfish_url(&rack.nodes()[0]);
        let refused = raw(&rack, &http, Method::PUT, SYSTEM).await;
        assert_eq!(refused.status(), 405);
        assert_eq!(header(&refused, "allow"), "GET, HEAD, PATCH");
        let unauthenticated = http
            .get(format!("{base}{SYSTEM}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(unauthenticated.status(), 401);
        assert!(header(&unauthenticated, "www-authenticate").starts_with("Basic"));
        let bad_token = http
            .get(format!("{base}{SYSTEM}"))
            .header("X-Auth-Token", "no-such-token")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bad_token.status(), 401);
        for reply in [refused, unauthenticated, bad_token] {
            assert_eq!(header(&reply, "odata-version"), "4.0");
            assert_eq!(header(&reply, "cache-control"), "no-cache");
            assert!(header(&reply, "content-type").starts_with("application/json"));
            let (_, error) = baton_tests::hwsim::body(reply).await;
            assert!(
                error["error"]["@Message.ExtendedInfo"].is_array(),
                "{error}"
            );
        }
        rack.shutdown().await;
    }
}

/// DSP0266 "If-None-Match": a GET or HEAD naming the current ETag is 304
/// Not Modified, without a body, with the `ETag`; once the resource
/// changed it is 200 again. Comparison is weak (`W/"x"` matches `"x"`).
#[tokio::test]
async fn if_none_match_with_the_current_etag_is_304() {
    for (rack, http) in racks().await {
        let first = raw(&rack, &http, Method::GET, SYSTEM).await;
        let tag = header(&first, "etag");
        assert!(tag.starts_with('"'), "{tag}");
        for (method, sent) in [
            (Method::GET, tag.clone()),
            (Method::HEAD, format!("W/{tag}")),
            (Method::GET, format!("\"other\", {tag}")),
        ] {
            let cached = redfish(&http, &rack, &rack.nodes()[0], method.clone(), SYSTEM)
                .header("If-None-Match", &sent)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(cached.status(), 304, "{method} {sent}");
            assert_eq!(header(&cached, "etag"), tag);
            assert_eq!(header(&cached, "odata-version"), "4.0");
            let bytes = cached.bytes().await.unwrap_or_default();
            assert!(bytes.is_empty(), "a 304 has no body");
        }
        let patch = redfish(&http, &rack, &rack.nodes()[0], Method::PATCH, SYSTEM)
            .json(&json!({"Boot": {"BootSourceOverrideTarget": "Pxe"}}));
        assert_eq!(send(patch).await.0, 200);
        let changed = redfish(&http, &rack, &rack.nodes()[0], Method::GET, SYSTEM)
            .header("If-None-Match", &tag)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(changed.status(), 200, "the resource changed");
        rack.shutdown().await;
    }
}

#[tokio::test]
async fn a_body_not_sent_as_json_is_refused_400_unless_the_node_is_lenient() {
    for (rack, http) in racks().await {
        let node = &rack.nodes()[0];
        let reset = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset";
        let post = |content_type: Option<&'static str>| {
            let request = redfish(&http, &rack, node, Method::POST, reset)
                .body(r#"{"ResetType": "ForceRestart"}"#);
            match content_type {
                Some(value) => request.header("Content-Type", value),
                None => request,
            }
        };
        for content_type in [None, Some("text/plain"), Some("application/jsonx")] {
            let (status, error) = send(post(content_type)).await;
            assert_eq!(
                (status, message_key(&error)),
                (400, "UnrecognizedRequestBody".to_owned()),
                "{content_type:?}"
            );
        }
        let patch = redfish(&http, &rack, node, Method::PATCH, SYSTEM)
            .body(r#"{"Boot": {"BootSourceOverrideTarget": "Pxe"}}"#);
        assert_eq!(send(patch).await.0, 400);
        assert_eq!(
            node.counters().power_commands,
            0,
            "nothing reached the model"
        );

        let (status, _) = send(post(Some("application/json; charset=utf-8"))).await;
        assert_eq!(status, 204);
        let mut quirks = node.quirks();
        quirks.lenient_content_type = true;
        node.set_quirks(quirks);
        assert_eq!(send(post(None)).await.0, 204);
        assert_eq!(node.counters().power_commands, 2);
        rack.shutdown().await;
    }
}

#[tokio::test]
async fn session_limits_are_configurable_and_a_full_bmc_answers_503() {
    let mut cfg = config(1);
    cfg.redfish_max_sessions = 2;
    cfg.ipmi_max_sessions = 4;
    let rack = start(cfg).await;
    let http = client();
    let node = &rack.nodes()[0];
    let login = json!({"UserName": USER, "Password": baton_tests::hwsim::PASSWORD});
    let url = format!("{}{SESSIONS}", rack.redfish_url(node));
    for _ in 0..2 {
        assert_eq!(send(http.post(&url).json(&login)).await.0, 201);
    }
    let (status, error) = send(http.post(&url).json(&login)).await;
    assert_eq!(
        (status, message_key(&error)),
        (503, "SessionLimitExceeded".to_owned())
    );
    // The IPMI side reports its configured slot count (Get Session Info).
    let addr = node
        .ipmi_addr()
        .unwrap_or_else(|| panic!("the node serves IPMI"));
    let output = tokio::process::Command::new("ipmitool")
        .args(["-I", "lanplus", "-H", &addr.ip().to_string()])
        .args(["-p", &addr.port().to_string(), "-U", USER])
        .args([
            "-P",
            baton_tests::hwsim::PASSWORD,
            "session",
            "info",
            "active",
        ])
        .output()
        .await
        .unwrap_or_else(|e| panic!("ipmitool (scripts/install-test-deps.sh): {e}"));
    let info = String::from_utf8_lossy(&output.stdout);
    assert!(info.contains("slot count                    : 4"), "{info}");
    rack.shutdown().await;
}
