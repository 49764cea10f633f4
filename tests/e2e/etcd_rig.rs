//! A real etcd cluster for the cluster-ipam tests: `n` members of Debian's etcd 3.4 on
//! 127.0.0.<i+1> inside one throwaway netns (lo up), so their ports never clash with anything
//! else; data dirs in a per-test temp dir; members can be stopped and restarted; drop kills
//! every member (and the netns holder kills anything left, also when a test panics).
//! `etcdctl` run inside the same netns is the oracle.

use crate::support::{TempDir, TestNs};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// TLS material made with the `openssl` CLI: a CA, a server certificate for 127.0.0.1-9 and a
/// client certificate.
pub struct Pki {
    /// CA certificate.
    pub ca: String,
    /// Server certificate and key.
    pub server: (String, String),
    /// Client certificate and key.
    pub client: (String, String),
}

impl Pki {
    /// Generates everything in `dir`.
    pub fn new(dir: &TempDir) -> Pki {
        let d = dir.path().display().to_string();
        let sans = (1..10)
            .map(|i| format!("IP:127.0.0.{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let script = format!(
            "set -e; cd {d}
             openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null
             for who in server client; do
               openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=$who -keyout $who.key -out $who.csr 2>/dev/null
             done
             printf 'subjectAltName={sans}\\nextendedKeyUsage=serverAuth,clientAuth\\n' > server.ext
             printf 'extendedKeyUsage=clientAuth\\n' > client.ext
             for who in server client; do
               openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile $who.ext -out $who.pem 2>/dev/null
             done"
        );
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let f = |n: &str| format!("{d}/{n}");
        Pki {
            ca: f("ca.pem"),
            server: (f("server.pem"), f("server.key")),
            client: (f("client.pem"), f("client.key")),
        }
    }
}

/// A running etcd cluster.
pub struct Etcd {
    /// The netns the members listen in; run plugins in it.
    pub ns: TestNs,
    dir: TempDir,
    members: Vec<Option<Child>>,
    tls: Option<(String, String, String)>,
}

impl Etcd {
    /// Starts `n` members (plain HTTP) and waits until the cluster answers.
    pub fn start(label: &str, n: usize) -> Etcd {
        Etcd::start_with(label, n, None)
    }

    /// Starts `n` members whose client URLs are https with client certificates required.
    pub fn start_tls(label: &str, n: usize, pki: &Pki) -> Etcd {
        let tls = (pki.ca.clone(), pki.server.0.clone(), pki.server.1.clone());
        Etcd::start_with(label, n, Some(tls))
    }

    fn start_with(label: &str, n: usize, tls: Option<(String, String, String)>) -> Etcd {
        let ns = TestNs::new(label);
        ns.ip(&["link", "set", "lo", "up"]);
        let mut e = Etcd {
            ns,
            dir: TempDir::new(label),
            members: (0..n).map(|_| None).collect(),
            tls,
        };
        for i in 0..n {
            e.start_member(i);
        }
        e.wait_ready();
        e
    }

    fn scheme(&self) -> &str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("{}://127.0.0.{}:2379", self.scheme(), i + 1)
    }

    /// Every client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// (Re)starts member `i` with its data dir.
    pub fn start_member(&mut self, i: usize) {
        let n = self.members.len();
        let cluster = (0..n)
            .map(|j| format!("m{j}=http://127.0.0.{}:2380", j + 1))
            .collect::<Vec<_>>()
            .join(",");
        let ip = format!("127.0.0.{}", i + 1);
        let client = self.endpoint(i);
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns.path().display()))
            .arg("--")
            .arg("etcd")
            .args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(self.dir.join(format!("m{i}")))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://{ip}:2380"),
            ])
            .args([
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                "new",
            ])
            .args(["--initial-cluster-token", "cni-multi-test"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(format!("m{i}.log"))).unwrap());
        if let Some((ca, cert, key)) = &self.tls {
            cmd.args([
                "--trusted-ca-file",
                ca,
                "--cert-file",
                cert,
                "--key-file",
                key,
            ]);
            cmd.arg("--client-cert-auth");
        }
        self.members[i] = Some(cmd.spawn().expect("spawn etcd (Debian etcd-server)"));
    }

    /// Kills member `i` (SIGKILL) and waits for it.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGKILL to member `i` without reaping it (usable while other threads hold `&self`);
    /// [`Etcd::kill_member`] reaps it later.
    pub fn sigkill_member(&self, i: usize) {
        if let Some(c) = &self.members[i] {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Kills every member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }

    /// Restarts every stopped member and waits until the cluster answers.
    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].is_none() {
                self.start_member(i);
            }
        }
        self.wait_ready();
    }

    /// Waits (up to 30 s) until a linearizable read succeeds.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.etcdctl_raw(&["get", "/ready-probe"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not come up: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn etcdctl_raw(&self, args: &[&str]) -> std::process::Output {
        let live: Vec<String> = (0..self.members.len())
            .filter(|&i| self.members[i].is_some())
            .map(|i| self.endpoint(i))
            .collect();
        let mut argv = vec![
            "env".to_string(),
            "ETCDCTL_API=3".into(),
            "etcdctl".into(),
            format!("--endpoints={}", live.join(",")),
            "--command-timeout=3s".into(),
        ];
        if let Some((ca, _, _)) = &self.tls {
            let dir = std::path::Path::new(ca)
                .parent()
                .unwrap()
                .display()
                .to_string();
            argv.push(format!("--cacert={ca}"));
            argv.push(format!("--cert={dir}/client.pem"));
            argv.push(format!("--key={dir}/client.key"));
        }
        argv.extend(args.iter().map(|s| s.to_string()));
        self.ns.exec(&argv)
    }

    /// `etcdctl ARGS` (API v3) against the running members; panics on failure.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = self.etcdctl_raw(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The index of the member that is the raft leader now.
    pub fn leader(&self) -> usize {
        let out = self.etcdctl_raw(&["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        for st in v.as_array().into_iter().flatten() {
            let s = &st["Status"];
            if !s["leader"].is_null() && s["header"]["member_id"] == s["leader"] {
                let ep = st["Endpoint"].as_str().unwrap_or("");
                if let Some(i) = self.endpoints().iter().position(|e| e == ep) {
                    return i;
                }
            }
        }
        panic!("no member says it is the leader: {v}");
    }

    /// The keys under `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut k: Vec<String> = self
            .etcdctl(&["get", "--prefix", "--keys-only", prefix])
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        k.sort();
        k
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill_all();
    }
}
