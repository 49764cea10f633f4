//! `tc -j` as an oracle: qdiscs and filters as the kernel reports them, parsed.

use super::TestNs;
use serde_json::Value;

/// `tc -j ARGS...` inside `ns`, parsed; empty output is an empty array.
pub fn tc_json(ns: &TestNs, args: &[&str]) -> Value {
    let out = ns.run(["tc", "-j"].iter().chain(args));
    serde_json::from_str(&out).unwrap_or(Value::Array(vec![]))
}

/// The root qdisc `tc -j` shows on `dev` (`Null` when there is none).
pub fn root_qdisc(ns: &TestNs, dev: &str) -> Value {
    let all = tc_json(ns, &["qdisc", "show", "dev", dev]);
    let mut roots = all.as_array().unwrap().iter().filter(|q| q["root"] == true);
    roots.next().cloned().unwrap_or(Value::Null)
}

/// Every qdisc in `ns` as `<dev> <kind>` (e.g. `eth0 tbf`), in `tc` order.
pub fn qdiscs(ns: &TestNs) -> Vec<String> {
    tc_json(ns, &["qdisc", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|q| {
            let dev = q["dev"].as_str().unwrap_or("?");
            format!("{dev} {}", q["kind"].as_str().unwrap_or("?"))
        })
        .collect()
}
