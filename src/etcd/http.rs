//! The smallest HTTP/1.1 client etcd's JSON gateway needs: `POST` with a JSON body over one
//! blocking keep-alive connection, plain TCP or TLS (rustls with the ring provider, client
//! certificates), `Content-Length` or chunked responses. No thread, no pool: the connection
//! lives in the caller's value and closes when it is dropped, so a plugin process leaves
//! nothing behind.

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// One endpoint URL, `http://host:port` or `https://host:port` (an optional path prefix is
/// kept and put before every request path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// True for `https`.
    pub tls: bool,
    /// Host name or address literal (IPv6 without brackets).
    pub host: String,
    /// Port (default 2379).
    pub port: u16,
    /// Path prefix without a trailing slash ("" for none).
    pub base: String,
}

impl Url {
    /// Parses an endpoint URL; a bare `host:port` means `http`.
    pub fn parse(s: &str) -> anyhow::Result<Url> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if s.contains("://") {
            bail!("etcd endpoint {s:?}: only http:// and https:// are supported");
        } else {
            (false, s)
        };
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6
                .split_once(']')
                .with_context(|| format!("etcd endpoint {s:?}: unclosed '['"))?;
            (h, p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            bail!("etcd endpoint {s:?}: no host");
        }
        let port = match port {
            Some(p) => p
                .parse()
                .with_context(|| format!("etcd endpoint {s:?}: bad port {p:?}"))?,
            None => 2379,
        };
        Ok(Url {
            tls,
            host: host.to_string(),
            port,
            base: base.to_string(),
        })
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.base)
    }
}

/// Builds the TLS configuration: trust `ca` (PEM; the system bundle when absent) and present
/// `cert` + `key` (PEM) when both are given.
pub fn tls_config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let ca = ca.unwrap_or(Path::new("/etc/ssl/certs/ca-certificates.crt"));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("reading CA certificates {}", ca.display()))?
    {
        let c = c.with_context(|| format!("parsing {}", ca.display()))?;
        roots
            .add(c)
            .with_context(|| format!("CA certificate in {}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading {}", cert.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("parsing {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading the private key {}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("client certificate and key")?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => bail!("etcdCert and etcdKey go together"),
    };
    Ok(Arc::new(config))
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One open connection to one endpoint.
pub struct Conn {
    url: Url,
    io: BufReader<Stream>,
    /// False once the server said `Connection: close`.
    reusable: bool,
}

/// A transport failure (connect, TLS, I/O, malformed HTTP): the endpoint is unusable and the
/// caller may fail over to another.
#[derive(Debug)]
pub struct TransportError(pub String);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransportError {}

fn transport(url: &Url, what: &str, e: impl std::fmt::Display) -> anyhow::Error {
    TransportError(format!("{url}: {what}: {e}")).into()
}

impl Conn {
    /// Connects (each resolved address in turn, `timeout` each) and, for `https`, shakes hands.
    pub fn open(
        url: &Url,
        tls: Option<&Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> anyhow::Result<Conn> {
        let addrs = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| transport(url, "resolving", e))?;
        let mut last = None;
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(tcp) = tcp else {
            let e = last.map_or("no address".to_string(), |e| e.to_string());
            return Err(transport(url, "connecting", e));
        };
        tcp.set_read_timeout(Some(timeout)).ok();
        tcp.set_write_timeout(Some(timeout)).ok();
        tcp.set_nodelay(true).ok();
        let stream = if url.tls {
            let config = tls.context("https endpoint without a TLS configuration")?;
            let name = ServerName::try_from(url.host.clone())
                .map_err(|e| transport(url, "server name", e))?;
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| transport(url, "TLS", e))?;
            let mut s = rustls::StreamOwned::new(conn, tcp);
            while s.conn.is_handshaking() {
                s.conn
                    .complete_io(&mut s.sock)
                    .map_err(|e| transport(url, "TLS handshake", e))?;
            }
            Stream::Tls(Box::new(s))
        } else {
            Stream::Plain(tcp)
        };
        Ok(Conn {
            url: url.clone(),
            io: BufReader::new(stream),
            reusable: true,
        })
    }

    /// The endpoint this connection reaches.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// True while the connection may carry another request.
    pub fn reusable(&self) -> bool {
        self.reusable
    }

    /// `POST <base><path>` with a JSON body; returns the status code and the body.
    pub fn post(&mut self, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let head = format!(
            "POST {}{path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.url.base,
            self.url.host_header(),
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        let url = self.url.clone();
        let s = self.io.get_mut();
        s.write_all(&req)
            .and_then(|()| s.flush())
            .map_err(|e| transport(&url, "sending", e))?;
        let (status, body, reusable) =
            read_response(&mut self.io).map_err(|e| transport(&url, "reading the response", e))?;
        self.reusable &= reusable;
        Ok((status, body))
    }
}

/// Reads one response from `io`: status, body, and whether the connection may be reused.
fn read_response(io: &mut impl BufRead) -> io::Result<(u16, Vec<u8>, bool)> {
    let status_line = line(io)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| bad_http(format!("bad status line {status_line:?}")))?;
    let (mut length, mut chunked, mut reusable) = (None, false, true);
    loop {
        let line = line(io)?;
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-length" => length = v.parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "connection" => reusable &= !v.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let body = if chunked {
        chunked_body(io)?
    } else if let Some(n) = length {
        let mut b = vec![0; n];
        io.read_exact(&mut b)?;
        b
    } else {
        reusable = false;
        let mut b = Vec::new();
        io.read_to_end(&mut b)?;
        b
    };
    Ok((status, body, reusable))
}

fn chunked_body(io: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size_line = line(io)?;
        let hex = size_line.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(hex, 16)
            .map_err(|_| bad_http(format!("bad chunk size {size_line:?}")))?;
        if n == 0 {
            // Trailers, then the empty line.
            while !line(io)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + n, 0);
        io.read_exact(&mut body[start..])?;
        line(io)?;
    }
}

fn line(io: &mut impl BufRead) -> io::Result<String> {
    let mut buf = Vec::new();
    let n = io.read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| bad_http("header is not UTF-8".into()))
}

fn bad_http(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:2379").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "127.0.0.1", 2379));
        let u = Url::parse("https://[::1]:2400/prefix/").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "::1", 2400));
        assert_eq!(u.base, "/prefix");
        assert_eq!(u.to_string(), "https://[::1]:2400/prefix");
        assert_eq!(Url::parse("etcd.local").unwrap().port, 2379);
        assert!(Url::parse("unix:///x").is_err());
        assert!(Url::parse("http://:1").is_err());
        assert!(Url::parse("http://h:x").is_err());
    }

    /// One chunked and one sized response read back to back from one stream.
    #[test]
    fn chunked_and_sized_responses() {
        let wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n2\r\n\":\r\n2\r\n1}\r\n0\r\n\r\n\
                    HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
        let mut io = std::io::Cursor::new(wire.as_bytes());
        assert_eq!(
            read_response(&mut io).unwrap(),
            (200, b"{\"a\":1}".to_vec(), true)
        );
        assert_eq!(
            read_response(&mut io).unwrap(),
            (503, b"{}".to_vec(), false)
        );
        assert!(read_response(&mut io).is_err(), "end of stream");
        let mut bad = std::io::Cursor::new(&b"HTTP/1.1 xx\r\n\r\n"[..]);
        assert!(read_response(&mut bad).is_err());
    }
}
