//! An etcd v3 client over etcd's JSON gRPC gateway (`POST /v3/kv/range`, `/v3/kv/txn`; keys
//! and values base64, 64-bit numbers as strings; served by etcd 3.4 and later), on the small
//! blocking HTTP/1.1 client in [`http`]. Several endpoints: a request goes to the endpoint in
//! use and fails over to the next on a transport error or an etcd "unavailable" answer (no
//! leader, leader changed, timeout), a few rounds in all. Each request is one round trip; a
//! [`Client`] holds at most one connection and no thread.
//!
//! Why not gRPC: a gRPC client (the `etcd-client` crate: tonic, tokio, prost, hyper) brings an
//! async runtime with worker threads into a process that makes two requests and exits; the
//! gateway needs only what is here plus rustls for TLS.

pub mod http;

use crate::error::{CniError, code};
use anyhow::Context;
use http::{Conn, TransportError, Url};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to reach the cluster.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Endpoint URLs, tried in order.
    pub endpoints: Vec<String>,
    /// CA bundle (PEM) for `https` endpoints.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    pub key: Option<PathBuf>,
    /// Per-connection connect and read timeout.
    pub timeout: Option<Duration>,
}

/// One key-value pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// What a compare-and-create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The key did not exist and now holds our value.
    Yes,
    /// The key existed, holding this value.
    Exists(Vec<u8>),
}

/// An etcd client: endpoints, TLS, and the one open connection.
pub struct Client {
    urls: Vec<Url>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    conn: Option<Conn>,
    /// The endpoint to try first.
    next: usize,
}

/// Rounds over all endpoints before giving up.
const ROUNDS: usize = 3;

impl Client {
    /// Checks the configuration; connects lazily.
    pub fn new(cfg: &Config) -> anyhow::Result<Client> {
        if cfg.endpoints.is_empty() {
            return Err(CniError::new(code::INVALID_CONFIG, "etcdEndpoints: no endpoint").into());
        }
        let urls = cfg
            .endpoints
            .iter()
            .map(|e| Url::parse(e))
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| CniError::new(code::INVALID_CONFIG, format!("etcdEndpoints: {e:#}")))?;
        let tls = if urls.iter().any(|u| u.tls) || cfg.cert.is_some() {
            let c = http::tls_config(cfg.ca.as_deref(), cfg.cert.as_deref(), cfg.key.as_deref())
                .map_err(|e| CniError::new(code::INVALID_CONFIG, format!("etcd TLS: {e:#}")))?;
            Some(c)
        } else {
            None
        };
        Ok(Client {
            urls,
            tls,
            timeout: cfg.timeout.unwrap_or(Duration::from_secs(5)),
            conn: None,
            next: 0,
        })
    }

    /// Every key starting with `prefix` (linearizable: needs a quorum).
    pub fn range_prefix(&mut self, prefix: &[u8]) -> anyhow::Result<Vec<Kv>> {
        let body = json!({ "key": b64(prefix), "range_end": b64(&prefix_end(prefix)) });
        let resp = self.call("/v3/kv/range", &body)?;
        kvs(&resp)
    }

    /// One transaction: if `key` does not exist (create revision 0), put it with `value` and
    /// put every pair of `also`; else read it. Retrying it is safe: the caller sees its own
    /// value back.
    pub fn create(
        &mut self,
        key: &[u8],
        value: &[u8],
        also: &[(&[u8], &[u8])],
    ) -> anyhow::Result<Created> {
        let mut puts = vec![json!({"request_put": {"key": b64(key), "value": b64(value)}})];
        for (k, v) in also {
            puts.push(json!({"request_put": {"key": b64(k), "value": b64(v)}}));
        }
        let body = json!({
            "compare": [{"key": b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
            "success": puts,
            "failure": [{"request_range": {"key": b64(key)}}],
        });
        let resp = self.call("/v3/kv/txn", &body)?;
        if resp["succeeded"] == true {
            return Ok(Created::Yes);
        }
        let found = kvs(&resp["responses"][0]["response_range"])?;
        Ok(Created::Exists(
            found
                .into_iter()
                .next()
                .map(|kv| kv.value)
                .unwrap_or_default(),
        ))
    }

    /// One transaction: deletes `key` only if it holds exactly `value`. True when deleted.
    pub fn delete_if(&mut self, key: &[u8], value: &[u8]) -> anyhow::Result<bool> {
        let body = json!({
            "compare": [{"key": b64(key), "result": "EQUAL", "target": "VALUE", "value": b64(value)}],
            "success": [{"request_delete_range": {"key": b64(key)}}],
        });
        let resp = self.call("/v3/kv/txn", &body)?;
        Ok(resp["succeeded"] == true)
    }

    /// Sends one request, failing over between endpoints. A transport failure or an
    /// "unavailable" answer tries the next endpoint; any other etcd error is returned.
    fn call(&mut self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let bytes = serde_json::to_vec(body)?;
        let mut failures = Vec::new();
        for round in 0..ROUNDS {
            if round > 0 {
                std::thread::sleep(Duration::from_millis(200 * round as u64));
            }
            for _ in 0..self.urls.len() {
                match self.try_once(path, &bytes) {
                    Ok(Ok(v)) => return Ok(v),
                    Ok(Err(fatal)) => return Err(fatal),
                    Err(retry) => {
                        let why = format!("{retry:#}");
                        if !failures.contains(&why) {
                            failures.push(why);
                        }
                        self.conn = None;
                        self.next = (self.next + 1) % self.urls.len();
                    }
                }
            }
        }
        Err(CniError::new(
            code::TRY_AGAIN_LATER,
            format!("etcd unavailable: {}", failures.join("; ")),
        )
        .into())
    }

    /// `Err` = try another endpoint; `Ok(Err)` = a definite answer that is an error.
    fn try_once(
        &mut self,
        path: &str,
        body: &[u8],
    ) -> Result<anyhow::Result<Value>, anyhow::Error> {
        if self.conn.as_ref().is_none_or(|c| !c.reusable()) {
            let url = &self.urls[self.next];
            self.conn = Some(Conn::open(url, self.tls.as_ref(), self.timeout)?);
        }
        let conn = self.conn.as_mut().expect("opened above");
        let (status, resp) = conn.post(path, body)?;
        let url = conn.url().to_string();
        let v: Value = serde_json::from_slice(&resp)
            .map_err(|e| TransportError(format!("{url}: answer is not JSON ({e})")))?;
        if status == 200 {
            return Ok(Ok(v));
        }
        let msg = v["message"]
            .as_str()
            .or(v["error"].as_str())
            .unwrap_or("no message")
            .to_string();
        // gRPC codes 14 (unavailable) and 4 (deadline exceeded): no leader, leader changed,
        // request timed out - another member may do better.
        let grpc = v["code"].as_u64().unwrap_or(0);
        if grpc == 14 || grpc == 4 || status == 503 {
            return Err(TransportError(format!("{url}: {msg}")).into());
        }
        Ok(Err(anyhow::anyhow!("{url}{path}: HTTP {status}: {msg}")))
    }
}

/// The end of the range holding every key with `prefix`: the prefix with its last byte
/// incremented (trailing 0xff dropped); `[0]` (every key) for an empty or all-0xff prefix.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn kvs(resp: &Value) -> anyhow::Result<Vec<Kv>> {
    let Some(list) = resp["kvs"].as_array() else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|kv| {
            let field = |k: &str| unb64(kv[k].as_str().unwrap_or(""));
            Ok(Kv {
                key: field("key")?,
                value: field("value")?,
            })
        })
        .collect::<anyhow::Result<_>>()
        .context("etcd answer")
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (what the gateway expects for `bytes` fields).
pub fn b64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional).
pub fn unb64(s: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = B64
            .iter()
            .position(|&x| x == c)
            .with_context(|| format!("bad base64 {s:?}"))? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("/p/a", "L3AvYQ=="),
        ] {
            assert_eq!(b64(plain.as_bytes()), enc);
            assert_eq!(unb64(enc).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unb64(&b64(&all)).unwrap(), all);
        assert!(unb64("a*b").is_err());
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
        assert_eq!(prefix_end(&[0xff]), [0]);
    }

    #[test]
    fn no_endpoint_is_code_7() {
        let err = Client::new(&Config::default()).err().unwrap();
        assert_eq!(
            err.downcast_ref::<CniError>().unwrap().code,
            code::INVALID_CONFIG
        );
    }

    /// Nothing listens on port 1 of 127.0.0.1: every round fails over, then code 11 naming
    /// both endpoints.
    #[test]
    fn unreachable_endpoints_are_try_again_later() {
        let cfg = Config {
            endpoints: vec!["http://127.0.0.1:1".into(), "127.0.0.1:2".into()],
            timeout: Some(Duration::from_millis(200)),
            ..Default::default()
        };
        let mut c = Client::new(&cfg).unwrap();
        let err = c.range_prefix(b"/x/").unwrap_err();
        let cni = err.downcast_ref::<CniError>().unwrap();
        assert_eq!(cni.code, code::TRY_AGAIN_LATER);
        assert!(
            cni.msg.contains("127.0.0.1:1") && cni.msg.contains("127.0.0.1:2"),
            "{}",
            cni.msg
        );
    }
}
