//! Harness for conductor tests: a hw-sim rack serving Redfish (HTTPS with
//! its own CA) and IPMI, batond in-process with short timeouts, the rack's
//! inventory imported — and helpers to ask for power changes, wait for a
//! node to be idle again, and read what the simulated BMCs saw.

use std::time::Duration;

use baton_hwsim::{CounterSnapshot, ExportDriver, Rack, RackConfig};
use batond::api::types::{
    ActionAccepted, InstanceActionDocument, JobCreated, JobDocument, NodeStates, NodeView,
};
use batond::client::RawResponse;
use batond::config::Config;
use http::Method;

use crate::daemon::{wait_until, TestDaemon};

/// How long a test waits for an operation to end.
pub const SETTLE: Duration = Duration::from_secs(30);

/// A rack and a daemon that knows every node of it.
#[derive(Debug)]
pub struct Fleet {
    pub rack: Rack,
    pub daemon: TestDaemon,
}

/// Conductor settings for tests: short timeouts, no sweeps unless asked.
pub fn fast(config: &mut Config) {
    config.conductor.power_state_change_timeout = Duration::from_secs(5);
    config.conductor.bmc_timeout = Duration::from_secs(2);
    config.conductor.max_retries = 3;
    config.conductor.soft_power_off_timeout = Duration::from_secs(3);
    config.sync.interval = Duration::from_secs(3600);
    config.sync.recovery_interval = Duration::from_secs(3600);
}

impl Fleet {
    /// A rack of `nodes` (even ones enrolled as Redfish, odd ones as IPMI)
    /// and batond with [`fast`] settings changed further by `adjust`.
    pub async fn start(nodes: usize, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_rack(crate::hwsim::config(nodes), adjust).await
    }

    pub async fn start_rack(rack: RackConfig, adjust: impl FnOnce(&mut Config)) -> Self {
        let rack = crate::hwsim::start(RackConfig { ipmi: true, ..rack }).await;
        let daemon = TestDaemon::start_with(|config| {
            fast(config);
            adjust(config);
        })
        .await;
        let inventory = daemon.dir.path().join("inventory.json");
        rack.write_inventory(&inventory, ExportDriver::Mixed)
            .expect("inventory written");
        let body = std::fs::read_to_string(&inventory).expect("inventory read");
        let imported = daemon
            .call(Method::POST, "/v1/nodes/import", Some(&body))
            .await;
        assert_eq!(imported.status.as_u16(), 200, "{:?}", imported.body);
        Self { rack, daemon }
    }

    /// The name of node `index`, as hw-sim and batond both call it.
    pub fn name(&self, index: usize) -> String {
        self.rack.nodes()[index].name().to_owned()
    }

    /// What the BMC of `name` has seen.
    pub fn counters(&self, name: &str) -> CounterSnapshot {
        self.rack.node(name).expect("hw-sim node").counters()
    }

    /// Whether hw-sim says `name` is on (settled).
    pub fn sim_power_on(&self, name: &str) -> bool {
        self.rack.node(name).expect("hw-sim node").power_state() == baton_hwsim::PowerState::On
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&str>) -> RawResponse {
        self.daemon.call(method, path, body).await
    }

    /// `PUT /v1/nodes/{name}/states/power`, expecting 202.
    pub async fn power(&self, name: &str, target: &str) -> ActionAccepted {
        let body = serde_json::json!({ "target": target }).to_string();
        let r = self
            .call(
                Method::PUT,
                &format!("/v1/nodes/{name}/states/power"),
                Some(&body),
            )
            .await;
        assert_eq!(r.status.as_u16(), 202, "{target} on {name}: {:?}", r.body);
        serde_json::from_slice(&r.body).expect("accepted body")
    }

    /// `POST /v1/nodes/{name}/action` with `body`.
    pub async fn action(&self, name: &str, body: serde_json::Value) -> RawResponse {
        self.call(
            Method::POST,
            &format!("/v1/nodes/{name}/action"),
            Some(&body.to_string()),
        )
        .await
    }

    pub async fn states(&self, name: &str) -> NodeStates {
        let r = self
            .call(Method::GET, &format!("/v1/nodes/{name}/states"), None)
            .await;
        serde_json::from_slice(&r.body).expect("states")
    }

    pub async fn node(&self, name: &str) -> NodeView {
        let r = self
            .call(Method::GET, &format!("/v1/nodes/{name}"), None)
            .await;
        serde_json::from_slice(&r.body).expect("node view")
    }

    /// Waits until `name` has no target, and returns its states.
    pub async fn settled(&self, name: &str) -> NodeStates {
        wait_until(
            &format!("{name} to finish its operation"),
            SETTLE,
            || async {
                let states = self.states(name).await;
                states.target_power_state.is_none().then_some(states)
            },
        )
        .await
    }

    pub async fn action_record(&self, name: &str, request_id: &str) -> InstanceActionDocument {
        let r = self
            .call(
                Method::GET,
                &format!("/v1/nodes/{name}/os-instance-actions/{request_id}"),
                None,
            )
            .await;
        assert_eq!(r.status.as_u16(), 200, "{:?}", r.body);
        serde_json::from_slice(&r.body).expect("action document")
    }

    /// `POST /v1/baremetalservers/action` with `body`.
    pub async fn batch_raw(&self, body: &serde_json::Value) -> RawResponse {
        self.call(
            Method::POST,
            "/v1/baremetalservers/action",
            Some(&body.to_string()),
        )
        .await
    }

    /// Starts a batch, expecting 200, and returns its job id.
    pub async fn batch(&self, body: &serde_json::Value) -> String {
        let r = self.batch_raw(body).await;
        assert_eq!(r.status.as_u16(), 200, "{:?}", r.body);
        let created: JobCreated = serde_json::from_slice(&r.body).expect("job created");
        created.job_id
    }

    /// `GET /v1/jobs/{job_id}`.
    pub async fn job(&self, job_id: &str) -> JobDocument {
        let r = self
            .call(Method::GET, &format!("/v1/jobs/{job_id}"), None)
            .await;
        assert_eq!(r.status.as_u16(), 200, "{:?}", r.body);
        serde_json::from_slice(&r.body).expect("job document")
    }

    /// Waits until the job is SUCCESS or FAIL, and returns it.
    pub async fn finished_job(&self, job_id: &str) -> JobDocument {
        wait_until(&format!("job {job_id} to finish"), SETTLE, || async {
            let job = self.job(job_id).await;
            matches!(job.status.as_str(), "SUCCESS" | "FAIL").then_some(job)
        })
        .await
    }

    pub async fn stop(self) {
        self.daemon.stop().await;
        self.rack.shutdown().await;
    }
}
