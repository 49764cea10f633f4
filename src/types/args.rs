//! `CNI_ARGS` parsing: `K1=V1;K2=V2`. Unlike the reference (`types.LoadArgs`), unknown keys
//! such as `K8S_POD_NAME` never fail a call (USER-ASKS row 17); applets look up the keys they
//! know. A pair without exactly one `=` is still an error, as in the reference.

use crate::error::{CniError, code};

/// Parsed `CNI_ARGS`, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs(pub Vec<(String, String)>);

impl CniArgs {
    /// Parses the raw environment value; empty means no pairs.
    pub fn parse(raw: &str) -> Result<CniArgs, CniError> {
        let mut pairs = Vec::new();
        for item in raw.split(';').filter(|s| !s.is_empty()) {
            let mut kv = item.splitn(3, '=');
            match (kv.next(), kv.next(), kv.next()) {
                (Some(k), Some(v), None) if !k.is_empty() => {
                    pairs.push((k.to_string(), v.to_string()))
                }
                _ => {
                    return Err(CniError::new(
                        code::INVALID_ENV,
                        format!("CNI_ARGS: invalid pair {item:?} (want KEY=VALUE)"),
                    ));
                }
            }
        }
        Ok(CniArgs(pairs))
    }

    /// The last value given for `key` (case-sensitive, as the reference), if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Back to the `K=V;K=V` wire form.
    pub fn to_env(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_args_are_accepted() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;IP=10.1.2.3",
        )
        .unwrap();
        assert_eq!(a.get("IP"), Some("10.1.2.3"));
        assert_eq!(a.get("K8S_POD_NAME"), Some("web-0"));
        assert_eq!(a.get("ip"), None);
        assert_eq!(a.0.len(), 5);
    }

    #[test]
    fn empty_and_trailing_separator() {
        assert!(CniArgs::parse("").unwrap().0.is_empty());
        assert_eq!(CniArgs::parse("A=1;").unwrap().0.len(), 1);
        assert_eq!(CniArgs::parse("A=").unwrap().get("A"), Some(""));
    }

    #[test]
    fn malformed_pairs_rejected() {
        for bad in ["A", "=1", "A=1=2", "A=1;B"] {
            let e = CniArgs::parse(bad).unwrap_err();
            assert_eq!(e.code, 4, "{bad}");
            assert!(e.msg.contains("CNI_ARGS"), "{bad}");
        }
    }

    #[test]
    fn last_value_wins_and_round_trips() {
        let a = CniArgs::parse("MAC=a;MAC=b").unwrap();
        assert_eq!(a.get("MAC"), Some("b"));
        assert_eq!(a.to_env(), "MAC=a;MAC=b");
    }
}
