//! The one nf_tables netlink exchange we make: asking the kernel whether a chain exists.
//! iptables-nft keeps each family's tables in nf_tables under the same names (table `nat`
//! of family `ip` or `ip6`), so the answer is what `iptables-save` would show, without
//! starting it. Messages are in the host's byte order, as netlink wants.

use crate::ruleset::Family;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const ENOENT: i32 = 2;

/// A request for chain `chain` of table `table` in `family`.
pub fn get_chain_request(family: Family, table: &str, chain: &str) -> Vec<u8> {
    let mut body = vec![
        match family {
            Family::V4 => NFPROTO_IPV4,
            Family::V6 => NFPROTO_IPV6,
        },
        0, // NFNETLINK_V0
        0, // resource id (big-endian 0)
        0,
    ];
    push_string_attribute(&mut body, NFTA_CHAIN_TABLE, table);
    push_string_attribute(&mut body, NFTA_CHAIN_NAME, chain);
    let mut message = Vec::with_capacity(16 + body.len());
    message.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
    message.extend_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETCHAIN).to_ne_bytes());
    message.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    message.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel fills it in
    message.extend_from_slice(&body);
    message
}

/// A NUL-terminated string attribute, padded to four bytes.
fn push_string_attribute(body: &mut Vec<u8>, kind: u16, value: &str) {
    let length = 4 + value.len() + 1;
    body.extend_from_slice(&(length as u16).to_ne_bytes());
    body.extend_from_slice(&kind.to_ne_bytes());
    body.extend_from_slice(value.as_bytes());
    body.push(0);
    body.resize(body.len() + (4 - length % 4) % 4, 0);
}

/// The kernel's answer to [`get_chain_request`]: the chain, or an error that says whether it
/// is missing. None for any other answer (no permission, no nf_tables).
pub fn chain_found(reply: &[u8]) -> Option<bool> {
    let kind = u16::from_ne_bytes(reply.get(4..6)?.try_into().ok()?);
    if kind == NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWCHAIN {
        return Some(true);
    }
    if kind == NLMSG_ERROR {
        let error = i32::from_ne_bytes(reply.get(16..20)?.try_into().ok()?);
        return (error == -ENOENT).then_some(false);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_family_table_and_chain() {
        let request = get_chain_request(Family::V6, "nat", "DOCKER_OUTPUT");
        assert_eq!(request.len(), 16 + 4 + 8 + 20);
        assert_eq!(&request[0..4], &(48u32).to_ne_bytes());
        assert_eq!(&request[4..6], &0x0a04u16.to_ne_bytes());
        assert_eq!(request[16], NFPROTO_IPV6);
        assert_eq!(&request[20..22], &8u16.to_ne_bytes());
        assert_eq!(&request[24..28], b"nat\0");
        assert_eq!(&request[28..30], &18u16.to_ne_bytes());
        assert_eq!(&request[32..46], b"DOCKER_OUTPUT\0");
        assert_eq!(&request[46..48], [0, 0]);
    }

    #[test]
    fn a_chain_a_missing_one_and_anything_else() {
        let header = |kind: u16| {
            let mut m = vec![0; 16];
            m[4..6].copy_from_slice(&kind.to_ne_bytes());
            m
        };
        assert_eq!(chain_found(&header(0x0a03)), Some(true));
        let error = |code: i32| {
            let mut m = header(NLMSG_ERROR);
            m.extend_from_slice(&code.to_ne_bytes());
            m
        };
        assert_eq!(chain_found(&error(-ENOENT)), Some(false));
        assert_eq!(chain_found(&error(-1)), None);
        assert_eq!(chain_found(&header(0x0a01)), None);
        assert_eq!(chain_found(&[1, 2, 3]), None);
    }
}
