//! Simulated rack of BMCs (Redfish and IPMI) sharing one power model, with faults and a control API.
