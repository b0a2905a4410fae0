//! The few kata-agent protocol messages the test client uses, written by
//! hand from Kata Containers' public protocol files
//! (`src/libs/protocols/protos/health.proto` and `agent.proto`, protobuf
//! package `grpc`): only the fields named there, with their numbers and
//! types. ttrpc carries them as the payload of its own request envelope,
//! addressed as `grpc.SERVICE` / `METHOD`.

/// ttrpc service of the health checks.
pub const HEALTH_SERVICE: &str = "grpc.Health";
/// ttrpc service of the agent's API.
pub const AGENT_SERVICE: &str = "grpc.AgentService";

/// `grpc.CheckRequest` (Health/Check, Health/Version).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.HealthCheckResponse.ServingStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ServingStatus {
    Unknown = 0,
    Serving = 1,
    NotServing = 2,
}

impl ServingStatus {
    /// The name of the .proto file (`SERVING`), which the scenarios assert.
    pub fn proto_name(self) -> &'static str {
        match self {
            ServingStatus::Unknown => "UNKNOWN",
            ServingStatus::Serving => "SERVING",
            ServingStatus::NotServing => "NOT_SERVING",
        }
    }
}

/// `grpc.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    #[prost(enumeration = "ServingStatus", tag = "1")]
    pub status: i32,
}

/// `grpc.VersionCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionCheckResponse {
    #[prost(string, tag = "1")]
    pub grpc_version: String,
    #[prost(string, tag = "2")]
    pub agent_version: String,
}

/// `grpc.GuestDetailsRequest` (AgentService/GetGuestDetails).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GuestDetailsRequest {
    #[prost(bool, tag = "1")]
    pub mem_block_size: bool,
    #[prost(bool, tag = "2")]
    pub mem_hotplug_probe: bool,
}

/// `grpc.AgentDetails`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentDetails {
    #[prost(string, tag = "1")]
    pub version: String,
    /// Set when the agent runs as PID 1.
    #[prost(bool, tag = "2")]
    pub init_daemon: bool,
    #[prost(string, repeated, tag = "3")]
    pub device_handlers: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub storage_handlers: Vec<String>,
    #[prost(bool, tag = "5")]
    pub supports_seccomp: bool,
    #[prost(string, repeated, tag = "6")]
    pub extra_features: Vec<String>,
}

/// `grpc.GuestDetailsResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GuestDetailsResponse {
    #[prost(uint64, tag = "1")]
    pub mem_block_size_bytes: u64,
    #[prost(message, optional, tag = "2")]
    pub agent_details: Option<AgentDetails>,
    #[prost(bool, tag = "3")]
    pub support_mem_hotplug_probe: bool,
}

/// `grpc.DestroySandboxRequest` (no fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DestroySandboxRequest {}

/// `google.protobuf.Empty`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn wire_format_matches_the_proto_numbers() {
        // Field 1, varint 1: what the agent sends for SERVING.
        assert_eq!(HealthCheckResponse::decode(&[0x08, 0x01][..]).unwrap().status, ServingStatus::Serving as i32);
        assert_eq!(CheckRequest { service: "x".into() }.encode_to_vec(), [0x0a, 0x01, b'x']);
        assert_eq!(GuestDetailsRequest { mem_block_size: true, mem_hotplug_probe: false }.encode_to_vec(), [0x08, 1]);
        // agent_details (field 2, length-delimited) with init_daemon (field 2) = true.
        let resp = GuestDetailsResponse::decode(&[0x12, 0x02, 0x10, 0x01][..]).unwrap();
        assert!(resp.agent_details.unwrap().init_daemon);
        assert!(DestroySandboxRequest {}.encode_to_vec().is_empty());
    }
}
