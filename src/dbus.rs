//! A minimal blocking D-Bus client: a unix socket to the system bus, `EXTERNAL`
//! authentication, `Hello`, and method calls whose arguments are strings and whose answer is
//! one string or boolean (all the firewall's firewalld backend needs). No crate: `zbus` is
//! async and large, `dbus` links libdbus; this is a few hundred bytes on the wire per call.
//!
//! Wire format per the D-Bus specification, "Message Protocol": little-endian messages, a
//! 16-byte fixed header, the header field array `a(yv)` padded to 8, then the body.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The system bus socket when `DBUS_SYSTEM_BUS_ADDRESS` is unset.
pub const DEFAULT_SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";
const TIMEOUT: Duration = Duration::from_secs(10);
const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;

/// A D-Bus error reply: its name and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbusError {
    /// `org.freedesktop.DBus.Error.ServiceUnknown`, ...
    pub name: String,
    /// The first string argument of the error, if any.
    pub message: String,
}

impl std::fmt::Display for DbusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for DbusError {}

/// One value of a reply body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `s`, `o` or `g`.
    Str(String),
    /// `b`.
    Bool(bool),
    /// Any other first argument (not decoded).
    Other,
}

/// A connection to a bus.
pub struct Bus {
    sock: BufReader<UnixStream>,
    serial: u32,
}

/// The socket path of a `unix:path=...` address (the first one of a `;` list that is).
pub fn socket_path(address: &str) -> Option<String> {
    address.split(';').find_map(|a| {
        let rest = a.strip_prefix("unix:")?;
        rest.split(',')
            .find_map(|kv| kv.strip_prefix("path="))
            .map(String::from)
    })
}

impl Bus {
    /// Connects to `address` (`unix:path=...`), authenticates and says `Hello`.
    pub fn connect(address: &str) -> Result<Bus> {
        let path = socket_path(address)
            .with_context(|| format!("unsupported D-Bus address {address:?}"))?;
        let sock = UnixStream::connect(&path)
            .with_context(|| format!("connect to the system bus at {path}"))?;
        sock.set_read_timeout(Some(TIMEOUT))?;
        sock.set_write_timeout(Some(TIMEOUT))?;
        let mut bus = Bus {
            sock: BufReader::new(sock),
            serial: 0,
        };
        bus.auth().context("D-Bus authentication")?;
        bus.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
            &[],
        )?;
        Ok(bus)
    }

    fn auth(&mut self) -> Result<()> {
        let uid = nix::unistd::Uid::effective().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        let w = self.sock.get_mut();
        w.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let mut line = String::new();
        self.sock.read_line(&mut line)?;
        if !line.starts_with("OK ") {
            bail!("the bus refused EXTERNAL authentication: {}", line.trim());
        }
        self.sock.get_mut().write_all(b"BEGIN\r\n")?;
        Ok(())
    }

    /// Calls `member` with string arguments and returns the first value of the reply
    /// (`Value::Other` for an empty or undecoded reply); an error reply is a [`DbusError`].
    pub fn call(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        args: &[&str],
    ) -> Result<Value> {
        self.serial += 1;
        let msg = encode_call(self.serial, dest, path, iface, member, args);
        self.sock.get_mut().write_all(&msg)?;
        loop {
            let (ty, reply_to, fields, body) = self.read_message()?;
            if reply_to != Some(self.serial) {
                continue; // a signal (NameAcquired, ...) or something else
            }
            let first = first_value(&fields.signature, &body);
            return match ty {
                METHOD_RETURN => Ok(first),
                ERROR => Err(DbusError {
                    name: fields.error_name.unwrap_or_default(),
                    message: match first {
                        Value::Str(s) => s,
                        _ => String::new(),
                    },
                }
                .into()),
                t => bail!("unexpected D-Bus message type {t} in reply to {member}"),
            };
        }
    }

    fn read_message(&mut self) -> Result<(u8, Option<u32>, Fields, Vec<u8>)> {
        let mut fixed = [0u8; 16];
        self.sock
            .read_exact(&mut fixed)
            .context("read from the bus")?;
        if fixed[0] != b'l' {
            bail!("big-endian D-Bus messages are not supported");
        }
        let body_len = u32::from_le_bytes(fixed[4..8].try_into().unwrap()) as usize;
        let fields_len = u32::from_le_bytes(fixed[12..16].try_into().unwrap()) as usize;
        let padded = (16 + fields_len).next_multiple_of(8) - 16;
        let mut rest = vec![0u8; padded + body_len];
        self.sock
            .read_exact(&mut rest)
            .context("read from the bus")?;
        let fields = parse_fields(&rest[..fields_len])?;
        let body = rest[padded..].to_vec();
        Ok((fixed[1], fields.reply_serial, fields, body))
    }
}

/// The header fields a reply is read for.
#[derive(Debug, Default)]
struct Fields {
    reply_serial: Option<u32>,
    error_name: Option<String>,
    signature: String,
}

fn pad(buf: &mut Vec<u8>, align: usize) {
    while !buf.len().is_multiple_of(align) {
        buf.push(0);
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    pad(buf, 4);
    buf.extend((s.len() as u32).to_le_bytes());
    buf.extend(s.as_bytes());
    buf.push(0);
}

/// One header field `(code, variant of signature sig)`; string-like values only.
fn put_field(buf: &mut Vec<u8>, code: u8, sig: u8, value: &str) {
    pad(buf, 8);
    buf.extend([code, 1, sig, 0]);
    if sig == b'g' {
        buf.push(value.len() as u8);
        buf.extend(value.as_bytes());
        buf.push(0);
    } else {
        put_str(buf, value);
    }
}

/// A `METHOD_CALL` message with string arguments.
pub fn encode_call(
    serial: u32,
    dest: &str,
    path: &str,
    iface: &str,
    member: &str,
    args: &[&str],
) -> Vec<u8> {
    let mut body = Vec::new();
    for a in args {
        put_str(&mut body, a);
    }
    let mut fields = Vec::new();
    put_field(&mut fields, 1, b'o', path);
    put_field(&mut fields, 2, b's', iface);
    put_field(&mut fields, 3, b's', member);
    put_field(&mut fields, 6, b's', dest);
    if !args.is_empty() {
        put_field(&mut fields, 8, b'g', &"s".repeat(args.len()));
    }
    let mut msg = vec![b'l', METHOD_CALL, 0, 1];
    msg.extend((body.len() as u32).to_le_bytes());
    msg.extend(serial.to_le_bytes());
    msg.extend((fields.len() as u32).to_le_bytes());
    msg.extend(fields);
    pad(&mut msg, 8);
    msg.extend(body);
    msg
}

/// A little-endian reader over a message part, with D-Bus alignment relative to its start
/// (header fields start at offset 16, a multiple of 8, so alignment is preserved).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn align(&mut self, n: usize) {
        self.pos = self.pos.next_multiple_of(n);
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .buf
            .get(self.pos..self.pos + n)
            .context("truncated D-Bus message")?;
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        self.align(4);
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn string(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        let s = String::from_utf8_lossy(self.take(n)?).into_owned();
        self.take(1)?;
        Ok(s)
    }

    fn signature(&mut self) -> Result<String> {
        let n = self.take(1)?[0] as usize;
        let s = String::from_utf8_lossy(self.take(n)?).into_owned();
        self.take(1)?;
        Ok(s)
    }
}

fn parse_fields(buf: &[u8]) -> Result<Fields> {
    let mut r = Reader { buf, pos: 0 };
    let mut f = Fields::default();
    while r.pos < buf.len() {
        r.align(8);
        let code = r.take(1)?[0];
        let sig = r.signature()?;
        match (code, sig.as_str()) {
            (5, "u") => f.reply_serial = Some(r.u32()?),
            (4, "s") => f.error_name = Some(r.string()?),
            (8, "g") => f.signature = r.signature()?,
            (_, "s" | "o") => drop(r.string()?),
            (_, "g") => drop(r.signature()?),
            (_, "u") => drop(r.u32()?),
            (c, s) => bail!("unexpected D-Bus header field {c} of type {s}"),
        }
    }
    Ok(f)
}

fn first_value(signature: &str, body: &[u8]) -> Value {
    let mut r = Reader { buf: body, pos: 0 };
    let v = match signature.as_bytes().first() {
        Some(b's' | b'o') => r.string().map(Value::Str),
        Some(b'g') => r.signature().map(Value::Str),
        Some(b'b') => r.u32().map(|b| Value::Bool(b != 0)),
        _ => Ok(Value::Other),
    };
    v.unwrap_or(Value::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_paths() {
        assert_eq!(
            socket_path(DEFAULT_SYSTEM_BUS).as_deref(),
            Some("/run/dbus/system_bus_socket")
        );
        assert_eq!(
            socket_path("tcp:host=x;unix:path=/tmp/b,guid=1").as_deref(),
            Some("/tmp/b")
        );
        assert_eq!(socket_path("unix:abstract=x"), None);
    }

    /// `dbus-send --dest=a.b /p i.f.M string:z` as dbus-monitor --binary shows it.
    #[test]
    fn method_call_bytes() {
        let m = encode_call(7, "a.b", "/p", "i.f", "M", &["z"]);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[b'l', 1, 0, 1, 6, 0, 0, 0, 7, 0, 0, 0][..], // header, body 6 bytes, serial 7
            &[71, 0, 0, 0],                                // field array length
            &[1, 1, b'o', 0, 2, 0, 0, 0, b'/', b'p', 0, 0, 0, 0, 0, 0], // PATH
            &[2, 1, b's', 0, 3, 0, 0, 0, b'i', b'.', b'f', 0, 0, 0, 0, 0], // INTERFACE
            &[3, 1, b's', 0, 1, 0, 0, 0, b'M', 0, 0, 0, 0, 0, 0, 0], // MEMBER
            &[6, 1, b's', 0, 3, 0, 0, 0, b'a', b'.', b'b', 0, 0, 0, 0, 0], // DESTINATION
            &[8, 1, b'g', 0, 1, b's', 0],                  // SIGNATURE "s"
            &[0],                                          // pad to 8 (16 + 71 -> 88)
            &[1, 0, 0, 0, b'z', 0],                        // body: "z"
        ]
        .concat();
        assert_eq!(m, want);
        let f = parse_fields(&m[16..16 + 71]).unwrap();
        assert_eq!(f.signature, "s");
        assert_eq!(first_value("s", &m[88..]), Value::Str("z".into()));
    }
}
