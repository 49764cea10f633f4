//! Spec versions: parsing, ordering and the list every applet supports by default.
//! Mirrors `pkg/version` (a missing version means 0.1.0; at most three numeric parts).

use crate::error::{CniError, code};
use std::fmt;

/// Every spec version this implementation speaks, oldest first (`version.All` in the reference).
pub const ALL: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest spec version; VERSION answers with it.
pub const CURRENT: &str = "1.1.0";

/// A parsed `major.minor.micro` version; compares numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// 0.4.0: CHECK and prevResult on DEL.
    pub const V0_4_0: Version = Version(0, 4, 0);
    /// 1.1.0: GC and STATUS.
    pub const V1_1_0: Version = Version(1, 1, 0);

    /// Parses `"1.0.0"`, `"0.4"` or `"1"`; the empty string is 0.1.0.
    pub fn parse(s: &str) -> Result<Version, CniError> {
        if s.is_empty() {
            return Ok(Version(0, 1, 0));
        }
        let bad = || CniError::new(code::DECODING_FAILURE, format!("invalid version {s:?}"));
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() > 3 {
            return Err(bad());
        }
        let mut n = [0u32; 3];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            n[i] = p.parse().map_err(|_| bad())?;
        }
        Ok(Version(n[0], n[1], n[2]))
    }

    /// Which result layout this version uses.
    pub fn family(self) -> Family {
        if self < Version(0, 3, 0) {
            Family::V02
        } else if self < Version(1, 0, 0) {
            Family::V04
        } else {
            Family::V1
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The three result layouts of the spec's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// 0.1.0 and 0.2.0: `ip4` / `ip6` / `dns`.
    V02,
    /// 0.3.0, 0.3.1, 0.4.0: interfaces / ips with `version` / routes / dns.
    V04,
    /// 1.0.0 and 1.1.0: no `version` in ips; 1.1 route and interface fields.
    V1,
}

/// True when `v` is one of the versions in [`ALL`] (exact string match, as the reference does).
pub fn is_known(v: &str) -> bool {
    ALL.contains(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        assert_eq!(Version::parse("").unwrap(), Version(0, 1, 0));
        assert_eq!(Version::parse("0.4").unwrap(), Version(0, 4, 0));
        assert!(Version::parse("1.1.0").unwrap() > Version::parse("1.0.0").unwrap());
        assert!(Version::parse("0.10.0").unwrap() > Version::parse("0.4.0").unwrap());
        for bad in ["a.b", "1.2.3.4", "1..0", "-1", "1.0.x"] {
            assert_eq!(Version::parse(bad).unwrap_err().code, 6, "{bad}");
        }
    }

    #[test]
    fn families() {
        assert_eq!(Version::parse("0.2.0").unwrap().family(), Family::V02);
        assert_eq!(Version::parse("0.3.0").unwrap().family(), Family::V04);
        assert_eq!(Version::parse("0.4.0").unwrap().family(), Family::V04);
        assert_eq!(Version::parse("1.1.0").unwrap().family(), Family::V1);
    }
}
