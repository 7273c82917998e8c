//! Which address is the client: the TCP peer, or, with
//! `--trust-forwarded` (behind a proxy), the address the proxy saw, from
//! `X-Forwarded-For`.
//!
//! The accept loop settles it once per request ([`ClientAddr`], a request
//! extension); whatever counts or names clients (`--rate-limit`) reads that.
//! The per-address connection cap cannot: it counts connections before any
//! request is read, so it counts TCP peers (behind a proxy, the proxy).

use std::net::{IpAddr, SocketAddr};

use axum::http::header::HeaderMap;

/// The client's address, as this node takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The client of a request from `peer` with these headers.
///
/// Without `trust_forwarded` the headers are not looked at: anyone can send
/// `X-Forwarded-For`, and a client that could name its own address could
/// dodge the rate limit with every request.
///
/// With it, the rightmost `X-Forwarded-For` entry that is an IP address
/// (with or without a port) is the client: a proxy appends the address it
/// saw, so that one is the proxy's word; the entries before it are what the
/// client itself claimed and may be forged. Several `X-Forwarded-For`
/// header lines read as one list, in order. No such entry: the peer.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trust_forwarded: bool) -> IpAddr {
    let forwarded = if trust_forwarded {
        rightmost_forwarded(headers)
    } else {
        None
    };
    // An IPv4 client on a dual-stack socket is one address, not two.
    forwarded.unwrap_or(peer).to_canonical()
}

fn rightmost_forwarded(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.rsplit(','))
        .find_map(parse_entry)
}

/// `192.0.2.7`, `2001:db8::7`, `192.0.2.7:4711` or `[2001:db8::7]:4711`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const PEER: &str = "198.51.100.1";

    /// The client of a request from `peer` carrying these `X-Forwarded-For`
    /// lines, with and without `--trust-forwarded`.
    fn check(lines: &[&[u8]], peer: &str, trusted: &str) {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(
                "x-forwarded-for",
                HeaderValue::from_bytes(line).expect("a header value"),
            );
        }
        let peer: IpAddr = peer.parse().unwrap();
        let trusted: IpAddr = trusted.parse().unwrap();
        assert_eq!(
            client_ip(&headers, peer, true),
            trusted,
            "trusted, {lines:?}"
        );
        assert_eq!(
            client_ip(&headers, peer, false),
            peer.to_canonical(),
            "not trusted, {lines:?}: the header is ignored"
        );
    }

    #[test]
    fn the_rightmost_address_in_x_forwarded_for_is_the_client_when_trusted() {
        for (lines, peer, expected) in [
            // No header, an empty one, garbage: the peer.
            (&[][..], PEER, PEER),
            (&[&b""[..]][..], PEER, PEER),
            (&[&b"unknown"[..]], PEER, PEER),
            (&[&b" , ,"[..]], PEER, PEER),
            (&[&b"\xff\xfe"[..]], PEER, PEER),
            // One entry.
            (&[&b"203.0.113.9"[..]], PEER, "203.0.113.9"),
            (&[&b" 203.0.113.9 "[..]], PEER, "203.0.113.9"),
            (&[&b"2001:db8::9"[..]], PEER, "2001:db8::9"),
            // The rightmost is the proxy's; the client's claims before it lose.
            (&[&b"10.0.0.1, 203.0.113.9"[..]], PEER, "203.0.113.9"),
            (&[&b"1.2.3.4,5.6.7.8,203.0.113.9"[..]], PEER, "203.0.113.9"),
            // Rightmost that parses: garbage after it is skipped.
            (&[&b"203.0.113.9, unknown"[..]], PEER, "203.0.113.9"),
            (&[&b"203.0.113.9, 999.1.1.1"[..]], PEER, "203.0.113.9"),
            // With a port, as some proxies write it.
            (&[&b"203.0.113.9:4711"[..]], PEER, "203.0.113.9"),
            (&[&b"[2001:db8::9]:443"[..]], PEER, "2001:db8::9"),
            // Several lines are one list: the last line's last entry wins.
            (
                &[&b"10.0.0.1"[..], &b"192.0.2.5, 203.0.113.9"[..]],
                PEER,
                "203.0.113.9",
            ),
            (&[&b"203.0.113.9"[..], &b"garbage"[..]], PEER, "203.0.113.9"),
            // An IPv4-mapped address is the IPv4 one, whichever it came from.
            (&[&b"::ffff:203.0.113.9"[..]], PEER, "203.0.113.9"),
            (&[][..], "::ffff:198.51.100.1", PEER),
        ] {
            check(lines, peer, expected);
        }
    }
}
