//! The nf_tables netlink messages we exchange: asking whether a chain exists, and dumping the
//! chains and rules of a family's tables. iptables-nft keeps each family's tables in
//! nf_tables under the same names (table `nat` of family `ip` or `ip6`), so these show what
//! `iptables-save` would, without starting it. Rules stay in nf_tables' form (expressions);
//! only what verifying needs is read out of them: the chain a rule jumps to and the text it
//! carries. Messages are in the host's byte order, as netlink wants; attribute values the
//! kernel sends big-endian stay raw bytes here.

use crate::family::Family;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_DUMP: u16 = 0x300;
/// Attribute types carry two flag bits (nested, network byte order) above the type.
const NLA_TYPE_MASK: u16 = 0x3fff;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_COMPAT: u16 = 5;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFTA_GEN_ID: u16 = 1;
const NFPROTO_UNSPEC: u8 = 0;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const ENOENT: i32 = 2;

/// What to ask nf_tables.
#[derive(Clone, Copy, Debug)]
pub enum Request<'a> {
    /// One chain of a table; answered by a [`Part::Chain`] or [`Part::Failed`].
    Chain {
        family: Family,
        table: &'a str,
        chain: &'a str,
    },
    /// The ruleset's generation, which every committed change moves on.
    Generation,
    /// Every chain of every table of a family, ending with [`Part::Done`].
    Chains(Family),
    /// Every rule of one table of a family, in order, ending with [`Part::Done`].
    Rules { family: Family, table: &'a str },
}

impl Request<'_> {
    /// The message, numbered `sequence` (the answers carry the number back).
    pub fn message(self, sequence: u32) -> Vec<u8> {
        let (kind, flags, family) = match self {
            Request::Chain { family, .. } => (NFT_MSG_GETCHAIN, 0, Some(family)),
            Request::Generation => (NFT_MSG_GETGEN, 0, None),
            Request::Chains(family) => (NFT_MSG_GETCHAIN, NLM_F_DUMP, Some(family)),
            Request::Rules { family, .. } => (NFT_MSG_GETRULE, NLM_F_DUMP, Some(family)),
        };
        let mut body = vec![
            match family {
                Some(Family::V4) => NFPROTO_IPV4,
                Some(Family::V6) => NFPROTO_IPV6,
                None => NFPROTO_UNSPEC,
            },
            0, // NFNETLINK_V0
            0, // resource id (big-endian 0)
            0,
        ];
        match self {
            Request::Chain { table, chain, .. } => {
                push_string_attribute(&mut body, NFTA_CHAIN_TABLE, table);
                push_string_attribute(&mut body, NFTA_CHAIN_NAME, chain);
            }
            // Older kernels dump every table's rules; `Part::Rule` names its table.
            Request::Rules { table, .. } => {
                push_string_attribute(&mut body, NFTA_RULE_TABLE, table)
            }
            Request::Generation | Request::Chains(_) => {}
        }
        let mut message = Vec::with_capacity(16 + body.len());
        message.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
        message.extend_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | kind).to_ne_bytes());
        message.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        message.extend_from_slice(&sequence.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel fills it in
        message.extend_from_slice(&body);
        message
    }
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

/// One message of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub sequence: u32,
    /// The ruleset changed while it was dumped: the dump may be inconsistent.
    pub interrupted: bool,
    pub part: Part,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Chain(Chain),
    Rule(Rule),
    Generation(u32),
    /// The end of a dump.
    Done,
    /// An error number from the kernel (positive: `ENOENT` is 2).
    Failed(i32),
    /// A message of another kind.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub table: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub table: String,
    pub chain: String,
    pub expressions: Vec<Expression>,
    /// iptables' protocol and inversion flags for the compat matches, raw.
    pub compat: Vec<u8>,
    /// Where iptables-nft keeps a rule's `-m comment`, raw.
    pub userdata: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expression {
    pub name: String,
    /// The expression's attributes, raw.
    pub data: Vec<u8>,
}

/// The kernel sent something that is not a well-formed netlink message.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed nf_tables netlink answer")]
pub struct Malformed;

/// The messages of one datagram from the kernel, in order.
pub fn answers(datagram: &[u8]) -> Result<Vec<Answer>, Malformed> {
    let mut answers = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let header = rest.get(..16).ok_or(Malformed)?;
        let length = u32::from_ne_bytes(header[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(header[4..6].try_into().unwrap());
        let flags = u16::from_ne_bytes(header[6..8].try_into().unwrap());
        let sequence = u32::from_ne_bytes(header[8..12].try_into().unwrap());
        let body = rest.get(16..length).ok_or(Malformed)?;
        let part = match kind {
            NLMSG_DONE => Part::Done,
            NLMSG_ERROR => {
                let error = i32::from_ne_bytes(body.get(..4).ok_or(Malformed)?.try_into().unwrap());
                Part::Failed(-error)
            }
            _ if kind == NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWCHAIN => {
                let attributes = attributes(body.get(4..).ok_or(Malformed)?)?;
                Part::Chain(Chain {
                    table: string(find(&attributes, NFTA_CHAIN_TABLE)?),
                    name: string(find(&attributes, NFTA_CHAIN_NAME)?),
                })
            }
            _ if kind == NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWRULE => {
                Part::Rule(rule(body.get(4..).ok_or(Malformed)?)?)
            }
            _ if kind == NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN => {
                let attributes = attributes(body.get(4..).ok_or(Malformed)?)?;
                let id = find(&attributes, NFTA_GEN_ID)?;
                Part::Generation(u32::from_be_bytes(id.try_into().map_err(|_| Malformed)?))
            }
            _ => Part::Other,
        };
        answers.push(Answer {
            sequence,
            interrupted: flags & NLM_F_DUMP_INTR != 0,
            part,
        });
        rest = rest.get(length.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(answers)
}

fn rule(body: &[u8]) -> Result<Rule, Malformed> {
    let fields = attributes(body)?;
    let optional = |kind| {
        fields
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or_else(Vec::new, |(_, v)| v.to_vec())
    };
    let mut expressions = Vec::new();
    if let Ok(list) = find(&fields, NFTA_RULE_EXPRESSIONS) {
        for (kind, element) in attributes(list)? {
            if kind != NFTA_LIST_ELEM {
                continue;
            }
            let element = attributes(element)?;
            expressions.push(Expression {
                name: string(find(&element, NFTA_EXPR_NAME)?),
                data: find(&element, NFTA_EXPR_DATA).unwrap_or_default().to_vec(),
            });
        }
    }
    Ok(Rule {
        table: string(find(&fields, NFTA_RULE_TABLE)?),
        chain: string(find(&fields, NFTA_RULE_CHAIN)?),
        expressions,
        compat: optional(NFTA_RULE_COMPAT),
        userdata: optional(NFTA_RULE_USERDATA),
    })
}

impl Rule {
    /// The chains the rule jumps or goes to (`-j CHAIN`, `-g CHAIN`).
    pub fn verdict_chains(&self) -> impl Iterator<Item = String> + '_ {
        self.expressions
            .iter()
            .filter(|e| e.name == "immediate")
            .filter_map(|e| {
                let data = attributes(&e.data).ok()?;
                let data = attributes(find(&data, NFTA_IMMEDIATE_DATA).ok()?).ok()?;
                let verdict = attributes(find(&data, NFTA_DATA_VERDICT).ok()?).ok()?;
                Some(string(find(&verdict, NFTA_VERDICT_CHAIN).ok()?))
            })
    }

    /// Whether `text` appears in the rule: in its comment, or in any expression's data (a
    /// LOG prefix, or a comment kept as a match by another iptables version).
    pub fn mentions(&self, text: &str) -> bool {
        let text = text.as_bytes();
        let holds = |bytes: &[u8]| bytes.windows(text.len()).any(|w| w == text);
        holds(&self.userdata) || self.expressions.iter().any(|e| holds(&e.data))
    }

    /// The whole rule as one line of text, except its counter's values, which move with
    /// traffic: two rules with the same fingerprint match and act alike.
    pub fn fingerprint(&self) -> String {
        let mut line = String::new();
        for expression in &self.expressions {
            line.push_str(&expression.name);
            if expression.name != "counter" {
                line.push(':');
                push_hex(&mut line, &expression.data);
            }
            line.push(' ');
        }
        line.push_str("compat:");
        push_hex(&mut line, &self.compat);
        line.push_str(" userdata:");
        push_hex(&mut line, &self.userdata);
        line
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 15)] as char);
    }
}

/// The attributes in `bytes`, as (type without flags, value).
fn attributes(mut bytes: &[u8]) -> Result<Vec<(u16, &[u8])>, Malformed> {
    let mut found = Vec::new();
    while bytes.len() >= 4 {
        let length = usize::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & NLA_TYPE_MASK;
        found.push((kind, bytes.get(4..length).ok_or(Malformed)?));
        bytes = bytes.get(length.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(found)
}

fn find<'a>(attributes: &[(u16, &'a [u8])], kind: u16) -> Result<&'a [u8], Malformed> {
    attributes
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| *v)
        .ok_or(Malformed)
}

fn string(value: &[u8]) -> String {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// The kernel's answer to a [`Request::Chain`]: whether the chain exists; None for any
/// other answer (no permission, no nf_tables).
pub fn chain_found(answer: &[Part]) -> Option<bool> {
    match answer.first()? {
        Part::Chain(_) => Some(true),
        Part::Failed(ENOENT) => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(4 + value.len() as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        attribute(kind | 0x8000, &parts.concat())
    }

    fn message(kind: u16, flags: u16, sequence: u32, attributes: &[Vec<u8>]) -> Vec<u8> {
        let body = [vec![NFPROTO_IPV4, 0, 0, 0], attributes.concat()].concat();
        let mut out = Vec::new();
        out.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&sequence.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn expression(name: &str, data: &[Vec<u8>]) -> Vec<u8> {
        nested(
            NFTA_LIST_ELEM,
            &[
                attribute(NFTA_EXPR_NAME, format!("{name}\0").as_bytes()),
                nested(NFTA_EXPR_DATA, data),
            ],
        )
    }

    fn counter(packets: u64) -> Vec<u8> {
        expression(
            "counter",
            &[attribute(1, &packets.to_be_bytes()), attribute(2, &[0; 8])],
        )
    }

    fn jump(chain: &str) -> Vec<u8> {
        let verdict = nested(
            NFTA_DATA_VERDICT,
            &[
                attribute(1, &(-3i32).to_be_bytes()),
                attribute(NFTA_VERDICT_CHAIN, format!("{chain}\0").as_bytes()),
            ],
        );
        expression(
            "immediate",
            &[
                attribute(1, &0u32.to_be_bytes()),
                nested(NFTA_IMMEDIATE_DATA, &[verdict]),
            ],
        )
    }

    fn rule_message(packets: u64, comment: &str) -> Vec<u8> {
        message(
            0x0a06,
            2, // NLM_F_MULTI
            7,
            &[
                attribute(NFTA_RULE_TABLE, b"nat\0"),
                attribute(NFTA_RULE_CHAIN, b"OUTPUT\0"),
                attribute(3, &9u64.to_be_bytes()),
                nested(
                    NFTA_RULE_EXPRESSIONS,
                    &[counter(packets), jump("KUMA_MESH_OUTBOUND")],
                ),
                attribute(
                    NFTA_RULE_USERDATA,
                    &[&[0, comment.len() as u8], comment.as_bytes()].concat(),
                ),
            ],
        )
    }

    #[test]
    fn the_chain_request_names_family_table_and_chain() {
        let request = Request::Chain {
            family: Family::V6,
            table: "nat",
            chain: "DOCKER_OUTPUT",
        }
        .message(1);
        assert_eq!(request.len(), 16 + 4 + 8 + 20);
        assert_eq!(&request[0..4], &(48u32).to_ne_bytes());
        assert_eq!(&request[4..6], &0x0a04u16.to_ne_bytes());
        assert_eq!(&request[6..8], &1u16.to_ne_bytes());
        assert_eq!(request[16], NFPROTO_IPV6);
        assert_eq!(&request[20..22], &8u16.to_ne_bytes());
        assert_eq!(&request[24..28], b"nat\0");
        assert_eq!(&request[28..30], &18u16.to_ne_bytes());
        assert_eq!(&request[32..46], b"DOCKER_OUTPUT\0");
        assert_eq!(&request[46..48], [0, 0]);
    }

    #[test]
    fn dumps_are_asked_for_with_the_dump_flags() {
        let rules = Request::Rules {
            family: Family::V4,
            table: "raw",
        }
        .message(5);
        assert_eq!(&rules[4..6], &0x0a07u16.to_ne_bytes());
        assert_eq!(&rules[6..8], &0x301u16.to_ne_bytes());
        assert_eq!(&rules[8..12], &5u32.to_ne_bytes());
        assert_eq!(&rules[24..28], b"raw\0");
        let chains = Request::Chains(Family::V4).message(6);
        assert_eq!(chains.len(), 20);
        assert_eq!(&chains[4..6], &0x0a04u16.to_ne_bytes());
        assert_eq!(&chains[6..8], &0x301u16.to_ne_bytes());
        let generation = Request::Generation.message(7);
        assert_eq!(&generation[4..6], &0x0a10u16.to_ne_bytes());
        assert_eq!(generation[16], NFPROTO_UNSPEC);
    }

    #[test]
    fn a_dumped_rule_shows_its_jump_its_comment_and_a_fingerprint_without_counters() {
        let datagram = [
            rule_message(0, "kuma/mesh/transparent/proxy/x"),
            message(NLMSG_DONE, NLM_F_DUMP_INTR, 7, &[]),
        ]
        .concat();
        let answers = answers(&datagram).unwrap();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[1].part, Part::Done);
        assert!(answers[1].interrupted && !answers[0].interrupted);
        assert_eq!(answers[0].sequence, 7);
        let Part::Rule(rule) = &answers[0].part else {
            panic!("{:?}", answers[0]);
        };
        assert_eq!(
            (rule.table.as_str(), rule.chain.as_str()),
            ("nat", "OUTPUT")
        );
        assert_eq!(
            rule.verdict_chains().collect::<Vec<_>>(),
            ["KUMA_MESH_OUTBOUND"]
        );
        assert!(rule.mentions("kuma/mesh/transparent/proxy/"));
        assert!(rule.mentions("KUMA_MESH_OUTBOUND"));
        assert!(!rule.mentions("DOCKER"));

        let part = |bytes: &[u8]| answers_of(bytes).remove(0).part;
        let Part::Rule(busier) = part(&rule_message(1234, "kuma/mesh/transparent/proxy/x")) else {
            panic!()
        };
        assert_eq!(busier.fingerprint(), rule.fingerprint());
        let Part::Rule(other) = part(&rule_message(0, "kuma/mesh/transparent/proxy/y")) else {
            panic!()
        };
        assert_ne!(other.fingerprint(), rule.fingerprint());
        assert!(
            rule.fingerprint().starts_with("counter immediate:"),
            "{}",
            rule.fingerprint()
        );
    }

    fn answers_of(bytes: &[u8]) -> Vec<Answer> {
        answers(bytes).unwrap()
    }

    #[test]
    fn chains_generations_and_errors() {
        let chain = message(
            0x0a03,
            0,
            1,
            &[
                attribute(NFTA_CHAIN_TABLE, b"nat\0"),
                attribute(2, &1u64.to_be_bytes()),
                attribute(NFTA_CHAIN_NAME, b"DOCKER_OUTPUT\0"),
            ],
        );
        let found: Vec<Part> = answers_of(&chain).into_iter().map(|a| a.part).collect();
        assert_eq!(
            found[0],
            Part::Chain(Chain {
                table: "nat".into(),
                name: "DOCKER_OUTPUT".into()
            })
        );
        assert_eq!(chain_found(&found), Some(true));
        let error = |code: i32| {
            let mut m = message(NLMSG_ERROR, 0, 1, &[]);
            m.truncate(16);
            m.extend_from_slice(&code.to_ne_bytes());
            m.extend_from_slice(&[0; 16]);
            let length = m.len() as u32;
            m[0..4].copy_from_slice(&length.to_ne_bytes());
            vec![answers_of(&m).remove(0).part]
        };
        assert_eq!(chain_found(&error(-ENOENT)), Some(false));
        assert_eq!(chain_found(&error(-1)), None);
        assert_eq!(chain_found(&[]), None);
        let generation = message(
            0x0a0f,
            0,
            2,
            &[attribute(NFTA_GEN_ID, &42u32.to_be_bytes())],
        );
        assert_eq!(answers_of(&generation)[0].part, Part::Generation(42));
        assert_eq!(answers_of(&message(0x0a01, 0, 2, &[]))[0].part, Part::Other);
    }

    #[test]
    fn a_truncated_answer_is_malformed() {
        let rule = rule_message(0, "c");
        for cut in [3, 17, rule.len() - 2] {
            assert_eq!(answers(&rule[..cut]), Err(Malformed), "cut at {cut}");
        }
    }
}
