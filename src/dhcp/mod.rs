//! DHCP for the `dhcp` IPAM applet: a daemon that holds leases for containers and a plugin
//! side that asks it for them, as the reference's `plugins/ipam/dhcp` (FEATURES.md 6.12),
//! plus what the reference lacks: leases persisted across daemon restarts, `-broadcast`
//! applied, a DEL that succeeds when the daemon is gone, a read-only CHECK.
//!
//! Parts: [`packet`] (DHCPv4 messages on the `dhcproto` codec, IPv4/UDP framing),
//! [`client`] (the pure per-lease state machine), [`rawsock`] (the packet socket opened in
//! the container's netns), [`store`] (lease files), [`lease`] (the worker driving a client,
//! with a thread only while it has work), [`park`] (the one timer thread idle leases wait on),
//! [`lease6`] and [`v6`] (DHCPv6), [`ra`] (is DHCPv6 offered on this link?), [`daemon`] (flags, the unix socket server, socket activation, shutdown).
//!
//! # Plugin <-> daemon protocol
//! The reference speaks Go gob-RPC; ours only needs to talk to itself. One connection per
//! call on the unix socket: the plugin writes one JSON [`Request`] followed by `\n`, the daemon
//! answers one JSON [`Response`] followed by `\n` and closes. Requests:
//! - `{"op":"allocate","target":{...}}`: return the lease of the target's client id,
//!   acquiring one first if there is none (the answer comes when bound or failed);
//! - `{"op":"release","target":{...}}`: send DHCPRELEASE, forget the lease (unknown: success);
//! - `{"op":"lookup","target":{...}}`: the current lease or none, never acquiring (CHECK);
//! - `{"op":"ping"}`: liveness (STATUS).
//!
//! A target with `"v6": true` names the attachment's DHCPv6 lease (its own key); with
//! `"auto": true` as well, the daemon acquires it only when a Router Advertisement on the link
//! has the M flag, else answers `{}` (no lease, no error). A response is
//! `{"lease": Lease}` or `{"lease6": Lease6}` (or `{}`) on success, `{"error": "..."}` otherwise,
//! with `"code": 11` when no DHCP server answered (try again later).

pub mod client;
pub mod daemon;
pub mod lease;
pub mod lease6;
pub mod packet;
pub mod park;
pub mod ra;
pub mod rawsock;
pub mod store;
pub mod v6;

use anyhow::{Context, Result};
use client::Lease;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// The reference's default socket path.
pub const DEFAULT_SOCKET: &str = "/run/cni/dhcp.sock";
/// Where leases are kept by default.
pub const DEFAULT_LEASE_DIR: &str = "/var/lib/cni/dhcp";

/// Who a lease is for and how to ask for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// The network name from the configuration.
    pub network: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// Absolute netns path (the daemon prefixes `-hostprefix`).
    pub netns: String,
    /// Option codes for the parameter request list.
    #[serde(default)]
    pub request: Vec<u8>,
    /// Options to send: code and value.
    #[serde(default)]
    pub provide: Vec<(u8, String)>,
    /// DHCPv6 (IA_NA) instead of DHCPv4.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub v6: bool,
    /// With `v6`: only if the link's routers say addresses come from DHCPv6 ([`ra`]); else
    /// the allocation answers no lease.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto: bool,
}

impl Target {
    /// The reference's client id, `<containerID>/<network>/<ifname>`, cut to 254 bytes.
    pub fn client_id(&self) -> String {
        let mut id = format!("{}/{}/{}", self.container_id, self.network, self.ifname);
        if id.len() > 254 {
            let mut end = 254;
            while !id.is_char_boundary(end) {
                end -= 1;
            }
            id.truncate(end);
        }
        id
    }

    /// The daemon's key for this lease: the client id, plus `/dhcpv6` for the v6 lease.
    pub fn key(&self) -> String {
        let id = self.client_id();
        if self.v6 { format!("{id}/dhcpv6") } else { id }
    }
}

/// One call from the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Get (acquiring if needed) the lease.
    Allocate {
        /// For whom.
        target: Target,
    },
    /// Release and forget the lease.
    Release {
        /// For whom.
        target: Target,
    },
    /// Read the lease without acquiring.
    Lookup {
        /// For whom.
        target: Target,
    },
    /// Is the daemon there?
    Ping,
}

/// The daemon's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The lease, when the call has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// The DHCPv6 lease, when the call has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease6: Option<v6::Lease6>,
    /// Set when the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `error`: the CNI code to report (11 when no server answered), else 999.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u32>,
}

/// Why a call did not get an answer.
#[derive(Debug)]
pub enum CallError {
    /// No daemon listening at the path (connect failed).
    Unreachable(std::io::Error),
    /// The daemon answered with an error, or the exchange broke.
    Failed(anyhow::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "DHCP daemon unreachable: {e}"),
            CallError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for CallError {}

impl CallError {
    /// As a CNI error: no daemon is code 11 (try again later: it may be starting, and a
    /// runtime retries), anything else keeps its own chain.
    pub fn into_cni(self) -> anyhow::Error {
        match self {
            CallError::Unreachable(_) => {
                crate::error::CniError::new(crate::error::code::TRY_AGAIN_LATER, self.to_string())
                    .into()
            }
            CallError::Failed(e) => e,
        }
    }
}

/// Sends one request to the daemon at `socket` and reads its answer.
pub fn call(socket: &Path, req: &Request) -> Result<Response, CallError> {
    let stream = UnixStream::connect(socket).map_err(CallError::Unreachable)?;
    exchange(stream, req)
        .with_context(|| format!("DHCP daemon at {}", socket.display()))
        .map_err(CallError::Failed)
}

fn exchange(mut stream: UnixStream, req: &Request) -> Result<Response> {
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream.write_all(&line).context("send request")?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("read answer")?;
    if answer.is_empty() {
        anyhow::bail!("the daemon closed the connection without an answer");
    }
    let mut resp: Response = serde_json::from_str(&answer).context("decode answer")?;
    match (resp.error.take(), resp.code) {
        (Some(e), Some(code)) => Err(crate::error::CniError::new(code, e).into()),
        (Some(e), None) => Err(anyhow::anyhow!(e)),
        (None, _) => Ok(resp),
    }
}
