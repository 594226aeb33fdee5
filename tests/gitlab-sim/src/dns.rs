//! A tiny UDP DNS server that answers A and AAAA queries from a fixed table, so tests can point
//! a resolver at it and control what a host name resolves to (rebinding, private addresses…).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const RCODE_FORMERR: u16 = 1;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_NOTIMP: u16 = 4;
const TTL_SECONDS: u32 = 60;
/// Classic UDP limit; bigger answers are sent truncated so the client retries over TCP.
const MAX_UDP: usize = 512;

/// A running stub DNS server; it stops when dropped or on [`RunningDns::shutdown`].
#[derive(Debug)]
pub struct RunningDns {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RunningDns {
    pub fn shutdown(self) {
        // Drop does the work.
    }
}

impl Drop for RunningDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `records` on UDP `bind` (for example `127.0.0.1:0`). Names match case-insensitively,
/// with or without a trailing dot.
pub async fn start_dns(records: HashMap<String, Vec<IpAddr>>, bind: SocketAddr) -> io::Result<RunningDns> {
    let records: Arc<HashMap<String, Vec<IpAddr>>> =
        Arc::new(records.into_iter().map(|(name, ips)| (normalise(&name), ips)).collect());
    let socket = UdpSocket::bind(bind).await?;
    let addr = socket.local_addr()?;
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            if let Some(reply) = answer(&buf[..len], &records) {
                let _ = socket.send_to(&reply, peer).await;
            }
        }
    });
    Ok(RunningDns { addr, task })
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]))
}

/// Reads an uncompressed name starting at `at`; returns it and the offset after it.
fn read_name(buf: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut total = 0usize;
    loop {
        let len = usize::from(*buf.get(at)?);
        at += 1;
        if len == 0 {
            return Some((labels.join("."), at));
        }
        // Queries never need compression pointers (0xC0) or the reserved label types.
        if len > 63 {
            return None;
        }
        total += len + 1;
        if total > 255 {
            return None;
        }
        let label = buf.get(at..at + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += len;
    }
}

fn header(id: u16, query_flags: u16, rcode: u16, qdcount: u16, ancount: u16) -> Vec<u8> {
    let opcode = query_flags & 0x7800;
    let recursion_desired = query_flags & 0x0100;
    // QR, authoritative, recursion available.
    let flags = 0x8000 | opcode | 0x0400 | recursion_desired | 0x0080 | rcode;
    let mut out = Vec::with_capacity(MAX_UDP);
    for word in [id, flags, qdcount, ancount, 0, 0] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out
}

/// Builds the reply to one query packet, or `None` when the packet should be ignored.
pub(crate) fn answer(query: &[u8], records: &HashMap<String, Vec<IpAddr>>) -> Option<Vec<u8>> {
    let id = read_u16(query, 0)?;
    let flags = read_u16(query, 2)?;
    if query.len() < 12 || flags & 0x8000 != 0 {
        // Too short to be a query, or a response: never answer those.
        return None;
    }
    if flags & 0x7800 != 0 {
        return Some(header(id, flags, RCODE_NOTIMP, 0, 0));
    }
    if read_u16(query, 4)? != 1 {
        return Some(header(id, flags, RCODE_FORMERR, 0, 0));
    }
    let Some((name, after_name)) = read_name(query, 12) else {
        return Some(header(id, flags, RCODE_FORMERR, 0, 0));
    };
    let (Some(qtype), Some(qclass)) = (read_u16(query, after_name), read_u16(query, after_name + 2)) else {
        return Some(header(id, flags, RCODE_FORMERR, 0, 0));
    };
    let question = &query[12..after_name + 4];

    let Some(addresses) = records.get(&name) else {
        let mut reply = header(id, flags, RCODE_NXDOMAIN, 1, 0);
        reply.extend_from_slice(question);
        return Some(reply);
    };
    let matching: Vec<&IpAddr> = addresses
        .iter()
        .filter(|_| qclass == CLASS_IN)
        .filter(|ip| match ip {
            IpAddr::V4(_) => qtype == TYPE_A || qtype == TYPE_ANY,
            IpAddr::V6(_) => qtype == TYPE_AAAA || qtype == TYPE_ANY,
        })
        .collect();

    let count = u16::try_from(matching.len()).unwrap_or(u16::MAX);
    let mut reply = header(id, flags, 0, 1, count);
    reply.extend_from_slice(question);
    for ip in matching {
        // 0xC00C points back at the question's name, which always starts at offset 12.
        reply.extend_from_slice(&[0xC0, 0x0C]);
        let (rtype, rdata): (u16, Vec<u8>) = match ip {
            IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
        };
        reply.extend_from_slice(&rtype.to_be_bytes());
        reply.extend_from_slice(&CLASS_IN.to_be_bytes());
        reply.extend_from_slice(&TTL_SECONDS.to_be_bytes());
        reply.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(0).to_be_bytes());
        reply.extend_from_slice(&rdata);
    }
    if reply.len() > MAX_UDP {
        let mut truncated = header(id, flags, 0, 1, 0);
        // TC bit.
        truncated[2] |= 0x02;
        truncated.extend_from_slice(question);
        return Some(truncated);
    }
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = Vec::new();
        for word in [id, 0x0100, 1, 0, 0, 0] {
            q.extend_from_slice(&word.to_be_bytes());
        }
        for label in name.trim_end_matches('.').split('.') {
            q.push(u8::try_from(label.len()).expect("short label"));
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    #[derive(Debug)]
    struct Parsed {
        id: u16,
        rcode: u16,
        authoritative: bool,
        truncated: bool,
        name: String,
        ips: Vec<IpAddr>,
    }

    /// An independent reader of the reply, following compression pointers as a client would.
    fn parse(reply: &[u8]) -> Parsed {
        let word = |at: usize| u16::from_be_bytes([reply[at], reply[at + 1]]);
        let flags = word(2);
        assert_ne!(flags & 0x8000, 0, "QR bit set");
        assert_eq!(word(4), 1, "one question");
        let (name, mut at) = read_name(reply, 12).expect("question name");
        at += 4;
        let mut ips = Vec::new();
        for _ in 0..word(6) {
            let owner = if reply[at] & 0xC0 == 0xC0 {
                let target = usize::from(word(at) & 0x3FFF);
                at += 2;
                read_name(reply, target).expect("pointed-to name").0
            } else {
                let (n, next) = read_name(reply, at).expect("owner name");
                at = next;
                n
            };
            assert_eq!(owner, name);
            let (rtype, class, len) = (word(at), word(at + 2), usize::from(word(at + 8)));
            assert_eq!(class, CLASS_IN);
            let data = &reply[at + 10..at + 10 + len];
            ips.push(match (rtype, len) {
                (TYPE_A, 4) => IpAddr::from(<[u8; 4]>::try_from(data).expect("4 bytes")),
                (TYPE_AAAA, 16) => IpAddr::from(<[u8; 16]>::try_from(data).expect("16 bytes")),
                other => panic!("unexpected record {other:?}"),
            });
            at += 10 + len;
        }
        assert_eq!(at, reply.len(), "no trailing bytes");
        Parsed {
            id: word(0),
            rcode: flags & 0x000F,
            authoritative: flags & 0x0400 != 0,
            truncated: flags & 0x0200 != 0,
            name,
            ips,
        }
    }

    fn table() -> HashMap<String, Vec<IpAddr>> {
        let mut records = HashMap::new();
        records.insert(
            "GitLab.Example.TEST.".to_string(),
            vec![
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
        );
        records.insert("v4only.test".to_string(), vec![IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))]);
        records.into_iter().map(|(k, v)| (normalise(&k), v)).collect()
    }

    #[test]
    fn answers_a_records() {
        let reply = answer(&query(7, "gitlab.example.test", TYPE_A), &table()).expect("reply");
        let parsed = parse(&reply);
        assert_eq!(parsed.id, 7);
        assert_eq!(parsed.rcode, 0);
        assert!(parsed.authoritative);
        assert_eq!(parsed.name, "gitlab.example.test");
        assert_eq!(parsed.ips, vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))]);
    }

    #[test]
    fn answers_aaaa_case_insensitively_with_trailing_dot() {
        let reply = answer(&query(9, "GITLAB.example.Test.", TYPE_AAAA), &table()).expect("reply");
        let parsed = parse(&reply);
        assert_eq!(parsed.rcode, 0);
        assert_eq!(parsed.ips, vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]);
    }

    #[test]
    fn other_type_is_empty_noerror() {
        let reply = answer(&query(1, "v4only.test", TYPE_AAAA), &table()).expect("reply");
        let parsed = parse(&reply);
        assert_eq!(parsed.rcode, 0);
        assert!(parsed.ips.is_empty());
        let mx = parse(&answer(&query(2, "v4only.test", 15), &table()).expect("reply"));
        assert_eq!(mx.rcode, 0);
        assert!(mx.ips.is_empty());
    }

    #[test]
    fn unknown_name_is_nxdomain() {
        let reply = answer(&query(3, "nope.test", TYPE_A), &table()).expect("reply");
        let parsed = parse(&reply);
        assert_eq!(parsed.rcode, RCODE_NXDOMAIN);
        assert!(parsed.ips.is_empty());
    }

    #[test]
    fn malformed_and_non_queries() {
        assert!(answer(&[0, 1, 0], &table()).is_none());
        let mut response = query(4, "v4only.test", TYPE_A);
        response[2] |= 0x80;
        assert!(answer(&response, &table()).is_none());
        let mut cut = query(5, "v4only.test", TYPE_A);
        cut.truncate(cut.len() - 3);
        let reply = answer(&cut, &table()).expect("reply");
        assert_eq!(reply[3] & 0x0F, RCODE_FORMERR as u8);
        let mut notify = query(6, "v4only.test", TYPE_A);
        notify[2] |= 4 << 3;
        let reply = answer(&notify, &table()).expect("reply");
        assert_eq!(reply[3] & 0x0F, RCODE_NOTIMP as u8);
    }

    #[test]
    fn big_answers_are_truncated() {
        let mut records = HashMap::new();
        records.insert("many.test".to_string(), (0..40u8).map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))).collect());
        let parsed = parse(&answer(&query(8, "many.test", TYPE_A), &records).expect("reply"));
        assert!(parsed.truncated);
        assert!(parsed.ips.is_empty());
    }

    #[tokio::test]
    async fn serves_over_udp() {
        let dns = start_dns(table(), "127.0.0.1:0".parse().expect("addr")).await.expect("start");
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        socket.send_to(&query(42, "gitlab.example.test", TYPE_A), dns.addr).await.expect("send");
        let mut buf = [0u8; 512];
        let (len, _) = tokio::time::timeout(std::time::Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("in time")
            .expect("recv");
        let parsed = parse(&buf[..len]);
        assert_eq!(parsed.id, 42);
        assert_eq!(parsed.ips.len(), 2);
        dns.shutdown();
    }
}
