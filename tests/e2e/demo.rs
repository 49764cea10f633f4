//! `make demo` keeps working: demo/run.sh, pointed at the test farm as its `CNI_PATH` and run
//! inside a throwaway netns, joins the bundled default network, pings the gateway, leaves,
//! and finds nothing left behind (it fails otherwise).

use crate::support::{Farm, TestNs, require_root};

#[test]
fn demo_script_joins_pings_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let ns = TestNs::new("demo");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/demo/run.sh");
    let farm = Farm::shared().dir().display().to_string();
    let out = ns.exec(["env", &format!("CNI_PATH={farm}"), "bash", script]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("\"address\": \"10.88.77.2/24\""), "{text}");
    assert!(text.contains("2 received"), "{text}");
    assert!(text.contains("nothing: no veth, no address"), "{text}");
}
