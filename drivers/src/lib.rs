//! Power drivers for BMCs: the PowerDriver trait with Redfish and IPMI implementations.
