//! Names and comments that tie netfilter state to a network and a container, computed exactly
//! as the reference's `pkg/utils` (`FormatChainName`, `MustFormatChainNameWithPrefix`,
//! `MustFormatHashWithPrefix`, `FormatComment`) so chains made by either implementation are
//! found and removed by the other.

use sha2::{Digest, Sha512};

/// Length of every per-container iptables chain name (`maxChainLength` in the reference).
pub const MAX_CHAIN_LEN: usize = 28;
/// Prefix of every per-container iptables chain name.
pub const CHAIN_PREFIX: &str = "CNI-";
/// Hex digits of a SHA-512 digest: the longest hash `hash_with_prefix` can return.
pub const MAX_HASH_LEN: usize = 128;

/// `prefix` followed by the lowercase hex SHA-512 of `to_hash`, cut to `len` characters
/// (`MustFormatHashWithPrefix`). Panics, like the reference, when `prefix` leaves no room for
/// the hash or `len` is longer than a digest: both are programming errors.
pub fn hash_with_prefix(len: usize, prefix: &str, to_hash: &str) -> String {
    assert!(
        prefix.len() < len && len <= MAX_HASH_LEN,
        "invalid hash length {len} for prefix {prefix:?}"
    );
    let mut out = String::with_capacity(prefix.len() + MAX_HASH_LEN);
    out.push_str(prefix);
    for byte in Sha512::digest(to_hash.as_bytes()) {
        out.push_str(&format!("{byte:02x}"));
    }
    out.truncate(len);
    out
}

/// The per-container chain `CNI-<24 hex>` of SHA-512(`name` + `id`) (`FormatChainName`).
pub fn chain_name(name: &str, id: &str) -> String {
    chain_name_with_prefix(name, id, "")
}

/// `CNI-<prefix><hex>` of SHA-512(`name` + `id`), 28 characters in all
/// (`MustFormatChainNameWithPrefix`; portmap uses `DN-` and `SN-`).
pub fn chain_name_with_prefix(name: &str, id: &str, prefix: &str) -> String {
    hash_with_prefix(
        MAX_CHAIN_LEN,
        &format!("{CHAIN_PREFIX}{prefix}"),
        &format!("{name}{id}"),
    )
}

/// `name: "<name>" id: "<id>"` with Go `%q` quoting (`FormatComment`).
pub fn comment(name: &str, id: &str) -> String {
    format!("name: {} id: {}", go_quote(name), go_quote(id))
}

/// Go's `%q` (`strconv.Quote`) for the strings CNI names and ids can hold: `"` and `\` are
/// escaped, control characters use `\a \b \f \n \r \t \v` or `\xNN`, printable Unicode is
/// kept as is (Go checks `unicode.IsPrint`; non-ASCII control and format characters,
/// which runtimes never put in ids, are written as `\u`/`\U` escapes here as well).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() && (c as u32) < 0x10000 => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values are the reference's own (pkg/utils/utils_test.go,
    // pkg/ip/ipmasq_nftables_linux_test.go).
    #[test]
    fn chain_name_matches_reference() {
        assert_eq!(chain_name("test", "1234"), "CNI-2bbe0c48b91a7d1b8a6753a8");
        assert_eq!(
            chain_name("testalongnamethatdoesnotmakesense", "1234"),
            "CNI-374f33fe84ab0ed84dcdebe3"
        );
        assert_ne!(
            chain_name("testalongnamethatdoesnotmakesense", "1235"),
            chain_name("testalongnamethatdoesnotmakesense", "1234")
        );
        assert_eq!(chain_name("a", "b").len(), MAX_CHAIN_LEN);
    }

    #[test]
    fn chain_name_with_prefix_matches_reference() {
        assert_eq!(
            chain_name_with_prefix("test", "1234", "PREFIX-"),
            "CNI-PREFIX-2bbe0c48b91a7d1b8"
        );
        assert_eq!(
            chain_name_with_prefix("testalongnamethatdoesnotmakesense", "1234", "PREFIX-"),
            "CNI-PREFIX-374f33fe84ab0ed84"
        );
    }

    #[test]
    #[should_panic(expected = "invalid hash length")]
    fn too_long_prefix_panics() {
        chain_name_with_prefix("test", "1234", &"PREFIX-".repeat(4));
    }

    #[test]
    fn hash_with_prefix_is_sha512_hex() {
        // sha512("") starts with cf83e1357eefb8bd.
        assert_eq!(hash_with_prefix(16, "", ""), "cf83e1357eefb8bd");
        assert_eq!(hash_with_prefix(10, "AAA", "some string").len(), 10);
        assert!(hash_with_prefix(10, "AAA", "some string").starts_with("AAA"));
        assert_eq!(hash_with_prefix(MAX_HASH_LEN, "", "x").len(), MAX_HASH_LEN);
        // The nftables masquerade hashes of the reference's unit test.
        assert_eq!(hash_with_prefix(16, "", "unit-test"), "6fd94d501e58f0aa");
        assert_eq!(hash_with_prefix(16, "", "eth0:one"), "287fc69eff0574a2");
        assert_eq!(hash_with_prefix(16, "", "alternate"), "82783ef24bdc7036");
    }

    #[test]
    fn comment_uses_go_quoting() {
        assert_eq!(comment("mynet", "abc123"), r#"name: "mynet" id: "abc123""#);
        assert_eq!(comment("a\"b", "c\\d"), r#"name: "a\"b" id: "c\\d""#);
        assert_eq!(go_quote("t\tn\n\u{1}é"), "\"t\\tn\\n\\x01é\"");
    }
}
