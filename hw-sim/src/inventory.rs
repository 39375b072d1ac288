//! The rack's inventory in the form baton's `POST /v1/nodes/import` takes: one
//! `{"name", "driver", "power_domain", "bmc": {"address", "port", "username",
//! "password"}}` per node. Redfish entries over plain HTTP carry the scheme in
//! the address (`http://127.0.0.1`); over HTTPS the address is bare and
//! `bmc.ca_file` names the rack's CA, written beside the inventory.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::rack::{Rack, RackState};

/// Which driver the exported entries use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportDriver {
    /// Every node through Redfish.
    #[default]
    Redfish,
    /// Every node through IPMI (needs a rack serving IPMI).
    Ipmi,
    /// Alternate: even nodes Redfish, odd nodes IPMI (needs IPMI).
    Mixed,
}

impl ExportDriver {
    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportDriver::Redfish => "redfish",
            ExportDriver::Ipmi => "ipmi",
            ExportDriver::Mixed => "mixed",
        }
    }
}

impl FromStr for ExportDriver {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "redfish" => Ok(ExportDriver::Redfish),
            "ipmi" => Ok(ExportDriver::Ipmi),
            "mixed" => Ok(ExportDriver::Mixed),
            other => Err(format!(
                "unknown export driver {other:?}; valid: redfish, ipmi, mixed"
            )),
        }
    }
}

/// The BMC part of an inventory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryBmc {
    /// Host (Redfish over plain HTTP: `http://host`).
    pub address: String,
    /// Port.
    pub port: u16,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// CA to trust (Redfish over HTTPS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// One node of the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    /// Node name.
    pub name: String,
    /// `redfish` or `ipmi`.
    pub driver: String,
    /// Power domain label.
    pub power_domain: String,
    /// How to reach the BMC.
    pub bmc: InventoryBmc,
}

/// Builds the entries for `driver`.
pub(crate) fn entries(
    state: &RackState,
    driver: ExportDriver,
    tls: bool,
    ca_file: Option<&Path>,
) -> Result<Vec<InventoryEntry>, Error> {
    if driver != ExportDriver::Redfish && !state.config().ipmi {
        return Err(Error::NoIpmi {
            driver: driver.as_str(),
        });
    }
    let creds = &state.config().credentials;
    let mut out = Vec::with_capacity(state.nodes().len());
    for node in state.nodes() {
        let ipmi = match driver {
            ExportDriver::Redfish => false,
            ExportDriver::Ipmi => true,
            ExportDriver::Mixed => node.index() % 2 == 1,
        };
        let endpoints = node.endpoints();
        let host = endpoints.address.to_string();
        let (kind, address, port, ca) = match (ipmi, endpoints.ipmi_port) {
            (true, Some(port)) => ("ipmi", host, port, None),
            (true, None) => {
                return Err(Error::NoIpmi {
                    driver: driver.as_str(),
                })
            }
            (false, _) if tls => (
                "redfish",
                host,
                endpoints.redfish_port,
                ca_file.map(|p| p.display().to_string()),
            ),
            (false, _) => (
                "redfish",
                format!("http://{host}"),
                endpoints.redfish_port,
                None,
            ),
        };
        out.push(InventoryEntry {
            name: node.name().to_owned(),
            driver: kind.to_owned(),
            power_domain: node.power_domain().to_owned(),
            bmc: InventoryBmc {
                address,
                port,
                username: creds.username.clone(),
                password: creds.password.clone(),
                ca_file: ca,
            },
        });
    }
    Ok(out)
}

/// Where the CA goes for an inventory at `path`: `<dir>/<stem>-ca.pem`, absolute.
pub fn ca_path_for(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "inventory".into(), |s| s.to_string_lossy().into_owned());
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    dir.join(format!("{stem}-ca.pem"))
}

/// Writes the inventory (and, with TLS, the CA beside it).
pub(crate) fn write(rack: &Rack, path: &Path, driver: ExportDriver) -> Result<(), Error> {
    let ca_file = match rack.ca_certificate_pem() {
        Some(pem) => {
            let ca = ca_path_for(path);
            write_file(&ca, pem.as_bytes())?;
            Some(ca)
        }
        None => None,
    };
    let entries = rack.inventory(driver, ca_file.as_deref())?;
    let mut json = serde_json::to_vec_pretty(&entries)?;
    json.push(b'\n');
    write_file(path, &json)
}

/// Writes through a temporary file and a rename, so readers never see half a file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let wrap = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(wrap)?;
    std::fs::rename(&tmp, path).map_err(wrap)
}
