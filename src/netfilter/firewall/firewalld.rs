//! The firewall with firewalld (the reference's `firewalld.go`): the container's addresses
//! become sources of a zone (`firewalldZone`, default `trusted`) over D-Bus on the system bus,
//! and firewalld writes the rules. ADD ignores `ZONE_ALREADY_SET`; DEL removes the sources and
//! counts a bus without firewalld, or a source firewalld does not know, as done; CHECK asks
//! `getZoneOfSource` and requires our zone (the reference calls `querySource` and ignores
//! its answer).

use crate::dbus::{Bus, DbusError, Value};
use crate::error::ErrorList;
use anyhow::{Context, Result, bail};
use ipnet::IpNet;

/// The well-known name firewalld owns.
pub const NAME: &str = "org.fedoraproject.FirewallD1";
const PATH: &str = "/org/fedoraproject/FirewallD1";
const ZONE_IFACE: &str = "org.fedoraproject.FirewallD1.zone";

/// True when something owns firewalld's name on the bus at `address`.
pub fn running(address: &str) -> bool {
    let owned = || -> Result<bool> {
        let mut bus = Bus::connect(address)?;
        let v = bus.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            &[NAME],
        )?;
        Ok(v == Value::Bool(true))
    };
    owned().unwrap_or(false)
}

fn connect(address: &str) -> Result<Bus> {
    Bus::connect(address).context("firewalld: cannot reach the system bus")
}

/// The firewalld error code (`ZONE_ALREADY_SET`, `UNKNOWN_SOURCE`, ...) of `e`, if any.
fn code_of(e: &anyhow::Error) -> Option<&str> {
    let d = e.downcast_ref::<DbusError>()?;
    Some(d.message.split(':').next().unwrap_or("").trim())
}

/// Adds every address of `ips` to `zone`.
pub fn add(address: &str, zone: &str, ips: &[IpNet]) -> Result<()> {
    let mut bus = connect(address)?;
    for ip in ips {
        let source = ip.to_string();
        match bus.call(NAME, PATH, ZONE_IFACE, "addSource", &[zone, &source]) {
            Err(e) if code_of(&e) != Some("ZONE_ALREADY_SET") => {
                return Err(e)
                    .with_context(|| format!("firewalld: add source {source} to zone {zone}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Removes the addresses of `ips` from `zone`; no bus, no firewalld or an unknown source is
/// success.
pub fn remove(address: &str, zone: &str, ips: &[IpNet]) -> Result<()> {
    if ips.is_empty() || !running(address) {
        return Ok(());
    }
    let mut bus = connect(address)?;
    let mut errors = ErrorList::new();
    for ip in ips {
        let source = ip.to_string();
        match bus.call(NAME, PATH, ZONE_IFACE, "removeSource", &[zone, &source]) {
            Err(e) if !matches!(code_of(&e), Some("UNKNOWN_SOURCE" | "INVALID_ZONE")) => {
                errors.note::<()>(Err(e.context(format!(
                    "firewalld: remove source {source} from zone {zone}"
                ))));
            }
            _ => {}
        }
    }
    errors.finish()
}

/// Fails unless every address of `ips` is a source of `zone`.
pub fn check(address: &str, zone: &str, ips: &[IpNet]) -> Result<()> {
    let mut bus = connect(address)?;
    for ip in ips {
        let source = ip.to_string();
        let got = bus
            .call(NAME, PATH, ZONE_IFACE, "getZoneOfSource", &[&source])
            .with_context(|| format!("firewalld: zone of source {source}"))?;
        if got != Value::Str(zone.into()) {
            bail!("firewalld: source {source} is not in zone {zone} ({got:?})");
        }
    }
    Ok(())
}
