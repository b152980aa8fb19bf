//! XCLIENT: a trusted proxy tells the server who the real client is.
use crate::xtext;

/// The `XCLIENT` line (without CRLF) carrying those of `attributes` the
/// server offered (`offered`: the names it listed, any case); values are
/// xtext-encoded. None when it offered none of them.
pub fn line(offered: &[&str], attributes: &[(&str, &str)]) -> Option<String> {
    let mut line = String::from("XCLIENT");
    for (name, value) in attributes {
        if offered.iter().any(|o| o.eq_ignore_ascii_case(name)) {
            line.push_str(&format!(" {name}={}", xtext::encode(value)));
        }
    }
    (line.len() > "XCLIENT".len()).then_some(line)
}

/// What a server takes from XCLIENT's attributes: the client address
/// (canonical, IPv4-mapped IPv6 as IPv4) and the HELO name.
/// (`[UNAVAILABLE]` and `[TEMPUNAVAIL]` leave a value as it was.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    pub addr: Option<String>,
    pub helo: Option<String>,
}

/// Parses the attributes after `XCLIENT`; None when malformed, when a
/// decoded value holds a control character (it would end up in a header),
/// or when there are none.
pub fn parse(rest: &str) -> Option<Forwarded> {
    let mut out = Forwarded::default();
    let mut any = false;
    for attr in rest.split_whitespace() {
        let (name, value) = attr.split_once('=')?;
        let value = xtext::decode(value).filter(|v| !v.contains(|c: char| c.is_control()))?;
        any = true;
        if value.starts_with('[') {
            continue;
        }
        match name.to_ascii_uppercase().as_str() {
            "ADDR" => {
                let plain = value
                    .strip_prefix("IPV6:")
                    .or_else(|| value.strip_prefix("ipv6:"))
                    .unwrap_or(&value);
                let ip: std::net::IpAddr = plain.parse().ok()?;
                out.addr = Some(ip.to_canonical().to_string());
            }
            "HELO" => out.helo = Some(value),
            _ => {}
        }
    }
    any.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(addr: Option<&str>, helo: Option<&str>) -> Option<Forwarded> {
        Some(Forwarded {
            addr: addr.map(String::from),
            helo: helo.map(String::from),
        })
    }

    #[test]
    fn xclient_attributes() {
        assert_eq!(
            parse("ADDR=198.18.0.9 PORT=4000 HELO=client.test LOGIN=[UNAVAILABLE]"),
            both(Some("198.18.0.9"), Some("client.test"))
        );
        assert_eq!(
            parse("ADDR=IPV6:2001:db8::9"),
            both(Some("2001:db8::9"), None)
        );
        assert_eq!(
            parse("ADDR=::ffff:198.18.0.9"),
            both(Some("198.18.0.9"), None)
        );
        assert_eq!(parse("ADDR=[UNAVAILABLE]"), both(None, None));
        assert_eq!(parse("ADDR=not-an-address"), None);
        assert_eq!(parse("ADDR"), None);
        assert_eq!(parse("HELO=a+0D+0AX-Evil:+201"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn the_line_carries_only_what_was_offered_and_reads_back() {
        let attrs = [("ADDR", "198.18.0.9"), ("HELO", "a b"), ("TTL", "4")];
        let line = line(&["addr", "HELO"], &attrs).unwrap();
        assert_eq!(line, "XCLIENT ADDR=198.18.0.9 HELO=a+20b");
        assert_eq!(
            parse(line.strip_prefix("XCLIENT ").unwrap()),
            both(Some("198.18.0.9"), Some("a b"))
        );
        assert_eq!(super::line(&["NAME"], &attrs), None);
    }
}
