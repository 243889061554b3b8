//! firewalld's `direct.xml`: parsing it the way firewalld's loader does ([`parse`],
//! [`parse_lenient`]), rendering it the way firewalld's writer does ([`render`]), and
//! replacing only our entries in an existing file while every byte of foreign content stays
//! as it was ([`Document::with_owned`], in `edit`). Pure text in, text out: no file I/O here.
//!
//! firewalld reads the file with Python's SAX parser (expat) and splits the text of `<rule>`
//! and `<passthrough>` with `shlex.split` after turning every newline into a space; it writes
//! the arguments back with `" ".join(shlex.quote(a))` (see [`crate::quoting`]).

mod edit;
mod parse;
mod render;

pub use parse::is_xml_char;
use parse::{Keep, Parser, State};

pub use render::render;

use std::ops::Range;

use thiserror::Error;

use crate::direct::{DirectChain, DirectConfig, DirectRule, Passthrough};

/// What is wrong with a `direct.xml`, and where (1-based line and column; the column counts
/// characters, not bytes).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("line {line}, column {column}: {message}")]
pub struct DirectXmlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// One child element of `<direct>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    Chain(DirectChain),
    Rule(DirectRule),
    Passthrough(Passthrough),
}

impl Entry {
    pub fn is_owned(&self) -> bool {
        match self {
            Entry::Chain(chain) => chain.is_owned(),
            Entry::Rule(rule) => rule.is_owned(),
            Entry::Passthrough(passthrough) => passthrough.is_owned(),
        }
    }
}

/// Something found in a file, with where it starts (1-based line and character column of
/// its `<`) and the bytes it covers in the file's text (start tag to end tag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    pub line: usize,
    pub column: usize,
    pub span: Range<usize>,
    pub entry: T,
}

/// A parsed `direct.xml` that remembers its exact text.
///
/// Only our entries are kept as values; of the others only where they are. Editing the
/// file and planning our entries need no more, and a file may hold thousands of foreign
/// entries: [`Document::entries`] and [`Document::config`] read them again from the text.
#[derive(Clone, Debug)]
pub struct Document {
    text: String,
    root: Root,
    /// Every entry, in document order.
    places: Vec<Place>,
    /// The entries we own, in document order (repeats and entries without arguments
    /// included).
    owned: Vec<Located<Entry>>,
}

/// Where an entry is (its bytes, start tag to end tag) and whether it is ours.
#[derive(Clone, Debug)]
struct Place {
    span: Range<usize>,
    owned: bool,
}

#[derive(Clone, Debug)]
enum Root {
    /// `<direct/>`: the span of that tag.
    SelfClosing(Range<usize>),
    /// `<direct>...</direct>`: where `</direct>` starts.
    Open { end_tag: usize },
}

/// Parses `text` like firewalld's loader: root `<direct>` exactly once without attributes;
/// children `<chain>`, `<rule>`, `<passthrough>` with exactly their attributes; ipv and
/// table valid; priority an integer; balanced shell quoting in the arguments. Stricter than
/// firewalld where it would silently drop or misread content: a DOCTYPE (entity
/// definitions), text or nested elements where only children belong, an invalid table in a
/// rule without arguments, a priority outside i32, a non-UTF-8 encoding declaration with
/// non-ASCII content are refused too.
pub fn parse(text: &str) -> Result<Document, DirectXmlError> {
    let parser = Parser::new(text, false, Keep::Owned);
    let mut state = State::new();
    let root = parser.run(&mut state)?;
    Ok(Document {
        text: text.to_string(),
        root,
        places: state.places,
        owned: state.entries,
    })
}

/// What [`parse_lenient`] found in a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lenient {
    /// Every `<chain>`, `<rule>` and `<passthrough>` read without a problem, in document
    /// order (repeats and entries without arguments included, as in [`Document::entries`]).
    pub entries: Vec<Located<Entry>>,
    /// Every problem [`parse`] refuses, sorted by position.
    pub problems: Vec<DirectXmlError>,
    /// False when reading stopped at a problem nothing can be read after: the text is not
    /// well-formed XML, has no single `<direct>` root or declares a DOCTYPE. That problem is
    /// the last one, and entries after it were not read.
    pub complete: bool,
}

/// Like [`parse`], but goes on after a problem in an element's attributes or content (a
/// missing, unexpected or invalid attribute, an unknown element, unbalanced quoting in the
/// arguments, text where only elements belong): the element is left out, the problem
/// recorded and reading continues, so a file's problems are all reported at once. Only
/// problems that leave nothing sensible to read (XML that is not well-formed, a wrong or
/// second root element, a DOCTYPE, an unusable encoding) stop it. `parse(text)` succeeds
/// exactly when `parse_lenient(text).problems` is empty, with the same entries.
pub fn parse_lenient(text: &str) -> Lenient {
    let parser = Parser::new(text, true, Keep::All);
    let mut state = State::new();
    let outcome = parser.run(&mut state);
    let mut problems = parser.recorded.into_inner();
    let complete = match outcome {
        Ok(_) => true,
        Err(fatal) => {
            problems.push(fatal);
            false
        }
    };
    // Stable: problems at one place keep the order they were found in.
    problems.sort_by_key(|p| (p.line, p.column));
    Lenient {
        entries: state.entries,
        problems,
        complete,
    }
}

impl Document {
    /// The text the document was parsed from, byte for byte.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every `<chain>`, `<rule>` and `<passthrough>` in document order, including rules and
    /// passthroughs without arguments (which firewalld skips) and duplicates. Read
    /// again from the text, which costs about as much as parsing it.
    pub fn entries(&self) -> Vec<Located<Entry>> {
        let parser = Parser::new(&self.text, false, Keep::All);
        let mut state = State::new();
        parser
            .run(&mut state)
            .expect("the text parsed when the document was made");
        state.entries
    }

    /// What firewalld loads from this file: all effective entries in document order, each
    /// only once (firewalld ignores a repeated entry with a warning). Reads the entries
    /// again (see [`Document::entries`]).
    pub fn config(&self) -> DirectConfig {
        effective(self.entries())
    }

    /// Our part of [`Document::config`] (`config().owned()`), from the entries the document
    /// keeps: planning our entries needs no more.
    pub fn owned_config(&self) -> DirectConfig {
        effective(self.owned.clone())
    }
}

/// What firewalld loads from `entries` ([`DirectConfig::kept`]).
fn effective(entries: Vec<Located<Entry>>) -> DirectConfig {
    let mut config = DirectConfig::default();
    for located in entries {
        match located.entry {
            Entry::Chain(chain) => config.chains.push(chain),
            Entry::Rule(rule) => config.rules.push(rule),
            Entry::Passthrough(p) => config.passthroughs.push(p),
        }
    }
    config.kept()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::direct::test_entries::{chain, passthrough, rule, strings};

    /// Entries of ours: in KUMA_MESH_* chains or carrying our comment.
    fn owned() -> DirectConfig {
        DirectConfig {
            chains: vec![
                chain("ipv4", "nat", "KUMA_MESH_OUTBOUND"),
                chain("ipv6", "nat", "KUMA_MESH_OUTBOUND"),
            ],
            rules: vec![
                rule(
                    "ipv4",
                    "nat",
                    "OUTPUT",
                    0,
                    &[
                        "-p",
                        "tcp",
                        "-m",
                        "comment",
                        "--comment",
                        "kuma/mesh/transparent/proxy/out",
                        "-j",
                        "KUMA_MESH_OUTBOUND",
                    ],
                ),
                rule(
                    "ipv4",
                    "nat",
                    "KUMA_MESH_OUTBOUND",
                    1,
                    &[
                        "-m",
                        "comment",
                        "--comment",
                        "it's <ours> & \"x\"",
                        "-j",
                        "RETURN",
                    ],
                ),
                rule(
                    "ipv6",
                    "nat",
                    "KUMA_MESH_OUTBOUND",
                    -5,
                    &["-j", "REDIRECT", "--to-ports", "15001"],
                ),
            ],
            passthroughs: vec![passthrough(
                "ipv4",
                &[
                    "-t",
                    "raw",
                    "-A",
                    "OUTPUT",
                    "-m",
                    "comment",
                    "--comment",
                    "kuma/mesh/transparent/proxy/raw",
                    "-j",
                    "CT",
                    "--notrack",
                ],
            )],
        }
    }

    #[test]
    fn owned_fixture_is_owned() {
        let config = owned();
        assert_eq!(config.owned(), config);
    }

    #[test]
    fn args_survive_a_file_except_newlines() {
        let nasty: Vec<String> = crate::quoting::tests::QUOTE_CORPUS
            .iter()
            .map(|(a, _)| a.to_string())
            .filter(|a| !a.contains('\n'))
            .collect();
        let config = DirectConfig {
            chains: vec![chain("ipv4", "filter", "it's \"odd\" & <x>\t")],
            rules: vec![DirectRule {
                args: nasty.clone(),
                ..rule("ipv6", "mangle", "A\"B'C", i32::MIN, &[])
            }],
            passthroughs: vec![Passthrough {
                ipv: "eb".into(),
                args: nasty,
            }],
        };
        let text = render(&config);
        assert_eq!(parse(&text).unwrap().config(), config);
        // firewalld turns newlines in the content into spaces before splitting.
        let with_newline = DirectConfig {
            passthroughs: vec![passthrough("ipv4", &["a\nb", "c\r\nd"])],
            ..Default::default()
        };
        let text = render(&with_newline);
        assert_eq!(
            parse(&text).unwrap().config().passthroughs[0].args,
            strings(&["a b", "c d"])
        );
    }

    #[test]
    fn render_is_firewalld_byte_for_byte() {
        // The output of firewalld 1.3.3 recorded in notes/firewalld.md §1.4.
        let config = DirectConfig {
            chains: vec![
                chain("ipv4", "nat", "KUMA_MESH_OUTBOUND"),
                chain("ipv6", "nat", "KUMA_MESH_OUTBOUND"),
            ],
            rules: vec![
                rule(
                    "ipv4",
                    "nat",
                    "OUTPUT",
                    0,
                    &["-p", "tcp", "-j", "KUMA_MESH_OUTBOUND"],
                ),
                rule(
                    "ipv4",
                    "nat",
                    "KUMA_MESH_OUTBOUND",
                    1,
                    &[
                        "-m",
                        "comment",
                        "--comment",
                        "kuma & <mesh> \"x\"",
                        "-j",
                        "RETURN",
                    ],
                ),
            ],
            passthroughs: vec![passthrough(
                "ipv4",
                &["-t", "raw", "-A", "OUTPUT", "-j", "CT", "--notrack"],
            )],
        };
        let want = r#"<?xml version="1.0" encoding="utf-8"?>
<direct>
  <chain ipv="ipv4" table="nat" chain="KUMA_MESH_OUTBOUND"/>
  <chain ipv="ipv6" table="nat" chain="KUMA_MESH_OUTBOUND"/>
  <rule ipv="ipv4" table="nat" chain="OUTPUT" priority="0">-p tcp -j KUMA_MESH_OUTBOUND</rule>
  <rule ipv="ipv4" table="nat" chain="KUMA_MESH_OUTBOUND" priority="1">-m comment --comment 'kuma &amp; &lt;mesh&gt; "x"' -j RETURN</rule>
  <passthrough ipv="ipv4">-t raw -A OUTPUT -j CT --notrack</passthrough>
</direct>
"#;
        assert_eq!(render(&config), want);
        assert_eq!(parse(want).unwrap().config(), config);
    }

    #[test]
    fn render_of_nothing_is_an_open_and_a_close_tag() {
        // Direct.write(): startElement("direct") writes `<direct>` (no short empty
        // elements), then "\n", then `</direct>` and "\n".
        assert_eq!(
            render(&DirectConfig::default()),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n</direct>\n"
        );
    }

    #[test]
    fn render_groups_dedups_and_skips_like_firewalld() {
        let config = DirectConfig {
            chains: vec![
                chain("ipv4", "nat", "A"),
                chain("ipv6", "nat", "A"),
                chain("ipv4", "nat", "B"),
                chain("ipv4", "nat", "A"),
            ],
            rules: vec![
                rule("ipv4", "nat", "A", 0, &["-j", "X"]),
                rule("ipv4", "nat", "B", 0, &["-j", "Y"]),
                rule("ipv4", "nat", "A", 1, &["-j", "Z"]),
                rule("ipv4", "nat", "A", 0, &["-j", "X"]),
                rule("ipv4", "nat", "A", 2, &[]),
            ],
            passthroughs: vec![
                passthrough("ipv6", &["-t", "raw", "-L"]),
                passthrough("ipv4", &["-L"]),
                passthrough("ipv6", &[]),
                passthrough("ipv6", &["-S"]),
            ],
        };
        let want = r#"<?xml version="1.0" encoding="utf-8"?>
<direct>
  <chain ipv="ipv4" table="nat" chain="A"/>
  <chain ipv="ipv4" table="nat" chain="B"/>
  <chain ipv="ipv6" table="nat" chain="A"/>
  <rule ipv="ipv4" table="nat" chain="A" priority="0">-j X</rule>
  <rule ipv="ipv4" table="nat" chain="A" priority="1">-j Z</rule>
  <rule ipv="ipv4" table="nat" chain="B" priority="0">-j Y</rule>
  <passthrough ipv="ipv6">-t raw -L</passthrough>
  <passthrough ipv="ipv6">-S</passthrough>
  <passthrough ipv="ipv4">-L</passthrough>
</direct>
"#;
        assert_eq!(render(&config), want);
    }

    #[test]
    fn content_is_unescaped_and_split() {
        let text = "<?xml version=\"1.0\"?>\r\n<direct>\r\n  <rule ipv=\"ipv4\" table=\"nat\" chain=\"OUTPUT\" priority=\" -3 \">-m comment\n   --comment 'a &amp; b &#x3C;&#60;&gt;' <![CDATA[-j 'it'\"'\"'s <raw> &amp;']]>\r\n  -s\t1.2.3.4</rule>\r\n  <passthrough ipv='ipv6'>-A &quot;two words&quot; '#' x#y&apos;z&apos; ''</passthrough>\r\n</direct>\r\n";
        let config = parse(text).unwrap().config();
        assert_eq!(
            config.rules,
            vec![rule(
                "ipv4",
                "nat",
                "OUTPUT",
                -3,
                &[
                    "-m",
                    "comment",
                    "--comment",
                    "a & b <<>",
                    "-j",
                    "it's <raw> &amp;",
                    "-s",
                    "1.2.3.4"
                ]
            )]
        );
        assert_eq!(
            config.passthroughs,
            vec![passthrough("ipv6", &["-A", "two words", "#", "x#yz", ""])]
        );
    }

    #[test]
    fn attribute_values_are_normalized_like_expat() {
        let text = "<direct><chain ipv=\"ipv4\" table=\"filter\" chain=\"a\tb\nc&#9;d&#10;e&amp;&quot;\"/></direct>";
        let config = parse(text).unwrap().config();
        assert_eq!(config.chains[0].chain, "a b c\td\ne&\"");
    }

    #[test]
    fn config_skips_argumentless_entries_and_repeats() {
        let text = r#"<direct>
  <rule ipv="ipv4" table="nat" chain="OUTPUT" priority="0"></rule>
  <rule ipv="ipv4" table="nat" chain="OUTPUT" priority="0">   </rule>
  <rule ipv="ipv4" table="nat" chain="OUTPUT" priority="0"/>
  <passthrough ipv="eb"/>
  <chain ipv="eb" table="broute" chain="B"/>
  <rule ipv="ipv4" table="nat" chain="OUTPUT" priority="0">-j A</rule>
  <rule ipv="ipv4" table="nat" chain="OUTPUT" priority="1">-j A</rule>
  <rule ipv="ipv4" table="nat" chain="OUTPUT" priority="0">-j   A</rule>
  <chain ipv="eb" table="broute" chain="B"/>
  <chain ipv="ipv4" table="raw" chain="B"/>
</direct>
"#;
        let document = parse(text).unwrap();
        assert_eq!(document.entries().len(), 10);
        assert_eq!(
            document.config(),
            DirectConfig {
                chains: vec![chain("eb", "broute", "B"), chain("ipv4", "raw", "B")],
                rules: vec![
                    rule("ipv4", "nat", "OUTPUT", 0, &["-j", "A"]),
                    rule("ipv4", "nat", "OUTPUT", 1, &["-j", "A"]),
                ],
                passthroughs: vec![],
            }
        );
    }

    #[test]
    fn owned_config_is_our_part_of_config() {
        let text = r#"<direct>
  <chain ipv="ipv4" table="nat" chain="KUMA_MESH_X"/>
  <rule ipv="ipv4" table="nat" chain="KUMA_MESH_X" priority="0"></rule>
  <rule ipv="ipv4" table="nat" chain="OUTPUT" priority="0">-j RETURN</rule>
  <rule ipv="ipv4" table="nat" chain="KUMA_MESH_X" priority="0">-j RETURN</rule>
  <chain ipv="eb" table="nat" chain="KUMA_MESH_X"/>
  <rule ipv="ipv4" table="nat" chain="OUTPUT" priority="1">-j KUMA_MESH_X</rule>
  <rule ipv="ipv4" table="nat" chain="KUMA_MESH_X" priority="0">-j   RETURN</rule>
  <chain ipv="ipv4" table="nat" chain="KUMA_MESH_X"/>
</direct>
"#;
        let document = parse(text).unwrap();
        let owned = document.owned_config();
        assert_eq!(owned, document.config().owned());
        assert_eq!(
            owned,
            DirectConfig {
                chains: vec![chain("ipv4", "nat", "KUMA_MESH_X")],
                rules: vec![
                    rule("ipv4", "nat", "KUMA_MESH_X", 0, &["-j", "RETURN"]),
                    rule("ipv4", "nat", "OUTPUT", 1, &["-j", "KUMA_MESH_X"]),
                ],
                passthroughs: vec![],
            }
        );
    }

    #[test]
    fn check_successor_reads_a_text_turning_non_ascii_in_full() {
        // A non-UTF-8 declaration is fine while the file is ASCII.
        let old = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<direct>\n  \
                   <chain ipv=\"ipv4\" table=\"filter\" chain=\"A\"/>\n</direct>\n";
        let document = parse(old).unwrap();
        let added = |chain: &str| {
            old.replace(
                "</direct>",
                &format!("  <chain ipv=\"ipv4\" table=\"filter\" chain=\"{chain}\"/>\n</direct>"),
            )
        };
        assert_eq!(document.check_successor(&added("B")), Ok(()));
        let error = parse(&added("Ü")).unwrap_err();
        assert!(error.message.contains("encoding"), "{error}");
        assert_eq!(document.check_successor(&added("Ü")), Err(error));
    }

    #[test]
    fn entries_know_where_they_are() {
        let text = "<?xml version=\"1.0\"?>\n<direct>\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"C\"/>\n<!-- ü --> <rule ipv=\"ipv4\" table=\"nat\" chain=\"C\"\n  priority=\"7\">-j\nRETURN</rule>\n</direct>\n";
        let document = parse(text).unwrap();
        let entries = document.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].line, entries[0].column), (3, 3));
        assert_eq!(
            &text[entries[0].span.clone()],
            "<chain ipv=\"ipv4\" table=\"nat\" chain=\"C\"/>"
        );
        assert_eq!(entries[0].entry, Entry::Chain(chain("ipv4", "nat", "C")));
        // Columns count characters: `ü` is two bytes.
        assert_eq!((entries[1].line, entries[1].column), (4, 12));
        assert!(text[entries[1].span.clone()].starts_with("<rule "));
        assert!(text[entries[1].span.clone()].ends_with("RETURN</rule>"));
        assert!(matches!(entries[1].entry, Entry::Rule(_)));
        assert_eq!(
            entries[1].entry,
            Entry::Rule(rule("ipv4", "nat", "C", 7, &["-j", "RETURN"]))
        );
        assert_eq!(document.text(), text);
    }

    /// (what, text, line, column, part of the message)
    const ERRORS: &[(&str, &str, usize, usize, &str)] = &[
        ("empty file", "", 1, 1, "no <direct> element"),
        ("only a comment", "<!-- nothing -->\n", 2, 1, "no <direct> element"),
        ("mismatched tag", "<direct>\n  <rule ipv=\"ipv4\" table=\"nat\" chain=\"X\" priority=\"0\">-j X\n</direct>\n", 3, 1, "not well-formed XML"),
        ("truncated", "<direct>\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"X\"/>\n", 3, 1, "<direct> (line 1) is not closed"),
        ("truncated in a child", "<direct>\n  <rule ipv=\"ipv4\" table=\"nat\" chain=\"X\" priority=\"0\">-j X", 2, 59, "<rule> (line 2) is not closed"),
        ("truncated in a tag", "<direct>\n  <chain ipv=\"ipv4\"", 2, 3, "not well-formed XML"),
        ("wrong root", "<?xml version=\"1.0\"?>\n<firewall/>\n", 2, 1, "root element must be <direct>, not <firewall>"),
        ("root attribute", "<direct version=\"1\"/>", 1, 9, "direct: unexpected attribute version"),
        ("two roots", "<direct/>\n<direct/>\n", 2, 1, "second root element <direct>"),
        ("nested direct", "<direct>\n <direct/>\n</direct>", 2, 2, "more than one <direct>"),
        ("unknown element", "<direct>\n  <zone name=\"x\"/>\n</direct>", 2, 3, "unexpected element <zone>"),
        ("nested element", "<direct>\n  <rule ipv=\"ipv4\" table=\"nat\" chain=\"X\" priority=\"0\">-j <chain ipv=\"ipv4\" table=\"nat\" chain=\"Y\"/></rule>\n</direct>", 2, 58, "element <chain> is not allowed inside <rule>"),
        ("unknown attribute", "<direct>\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"X\" x=\"1\"/>\n</direct>", 2, 43, "chain: unexpected attribute x"),
        ("missing attribute", "<direct>\n  <rule ipv=\"ipv4\" table=\"nat\" chain=\"X\">-j X</rule>\n</direct>", 2, 3, "rule: missing attribute priority"),
        ("repeated attribute", "<direct>\n  <passthrough ipv=\"ipv4\" ipv=\"ipv6\">-L</passthrough>\n</direct>", 2, 27, "repeated attribute"),
        ("unquoted attribute", "<direct>\n  <passthrough ipv=ipv4>-L</passthrough>\n</direct>", 2, 20, "must be quoted"),
        ("bad ipv", "<direct>\n  <passthrough ipv=\"ipv7\">-L</passthrough>\n</direct>", 2, 21, "invalid ipv 'ipv7'"),
        ("bad table", "<direct>\n  <chain ipv=\"ipv4\" table=\"broute\" chain=\"X\"/>\n</direct>", 2, 28, "invalid table 'broute' for ipv4"),
        ("bad eb table", "<direct>\n  <chain ipv=\"eb\" table=\"raw\" chain=\"X\"/>\n</direct>", 2, 26, "invalid table 'raw' for eb"),
        ("bad table without args", "<direct>\n  <rule ipv=\"ipv4\" table=\"bogus\" chain=\"X\" priority=\"0\"/>\n</direct>", 2, 27, "invalid table 'bogus'"),
        ("bad priority", "<direct>\n  <rule ipv=\"ipv4\" table=\"nat\" chain=\"X\" priority=\"x\">-j X</rule>\n</direct>", 2, 52, "invalid priority 'x'"),
        ("priority too large", "<direct>\n  <rule ipv=\"ipv4\" table=\"nat\" chain=\"X\" priority=\"2147483648\">-j X</rule>\n</direct>", 2, 52, "invalid priority '2147483648'"),
        ("unbalanced quote", "<direct>\n  <rule ipv=\"ipv4\" table=\"nat\" chain=\"X\" priority=\"0\">-m comment\n --comment 'oops</rule>\n</direct>", 2, 3, "rule: cannot split the arguments: No closing quotation"),
        ("trailing backslash", "<direct>\n  <passthrough ipv=\"ipv4\">-L \\</passthrough>\n</direct>", 2, 3, "passthrough: cannot split the arguments: No escaped character"),
        ("doctype", "<?xml version=\"1.0\"?>\n<!DOCTYPE direct [\n <!ENTITY a \"aaaaaaaaaa\">\n <!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">\n]>\n<direct>&b;</direct>\n", 2, 1, "DOCTYPE is not allowed"),
        ("undefined entity", "<direct>\n  <passthrough ipv=\"ipv4\">-L &foo;</passthrough>\n</direct>", 2, 30, "undefined entity &foo;"),
        ("invalid character reference", "<direct>\n  <passthrough ipv=\"ipv4\">-L &#0;</passthrough>\n</direct>", 2, 30, "&#0; is not a valid character reference"),
        ("lone ampersand", "<direct>\n  <passthrough ipv=\"ipv4\">-L & x</passthrough>\n</direct>", 2, 30, "not well-formed XML"),
        ("control character", "<direct>\n  <passthrough ipv=\"ipv4\">-L \u{1}</passthrough>\n</direct>", 2, 30, "U+0001 is not allowed"),
        ("text in direct", "<direct>\n  -j ACCEPT\n</direct>", 2, 3, "text directly inside <direct>"),
        ("text in chain", "<direct>\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"X\"> x </chain>\n</direct>", 2, 44, "text inside <chain>"),
        ("text before the root", "junk\n<direct/>", 1, 1, "text before the <direct> element"),
        ("text after the root", "<direct/>\n junk\n", 2, 2, "text after the <direct> element"),
        ("late declaration", "\n<?xml version=\"1.0\"?>\n<direct/>", 2, 1, "XML declaration is only allowed at the very start"),
        ("double hyphen in comment", "<direct>\n  <!-- a -- b -->\n</direct>", 2, 10, "not well-formed XML"),
        ("less-than in attribute", "<direct>\n  <passthrough ipv=\"ip<v4\">-L</passthrough>\n</direct>", 2, 23, "`<` is not allowed"),
        ("latin-1 declared", "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<direct><passthrough ipv=\"ipv4\">-L é</passthrough></direct>", 1, 1, "encoding \"ISO-8859-1\""),
    ];

    #[test]
    fn errors_say_where() {
        let mut wrong = Vec::new();
        for (what, text, line, column, message) in ERRORS {
            let error = parse(text).expect_err(what);
            if (error.line, error.column) != (*line, *column) || !error.message.contains(message) {
                wrong.push(format!("{what}: got {error}"));
            }
            assert_eq!(
                error.to_string(),
                format!(
                    "line {}, column {}: {}",
                    error.line, error.column, error.message
                )
            );
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn lenient_parsing_reports_the_strict_error_first() {
        for (what, text, _, _, _) in ERRORS {
            let strict = parse(text).expect_err(what);
            let lenient = parse_lenient(text);
            assert_eq!(lenient.problems.first(), Some(&strict), "{what}");
        }
        for text in FOREIGN {
            let lenient = parse_lenient(text);
            assert!(
                lenient.problems.is_empty(),
                "{text:?}: {:?}",
                lenient.problems
            );
            assert!(lenient.complete);
            assert_eq!(lenient.entries, parse(text).unwrap().entries(), "{text:?}");
        }
    }

    #[test]
    fn lenient_parsing_reports_every_problem_and_keeps_the_rest() {
        let text = r#"<direct version="2">
  <chain ipv="ipv4" table="nat" chain="A"/>
  <rule ipv="ipv7" table="nat" chain="A" priority="x" family="f">-j X</rule>
  <rule ipv="ipv4" table="nat" chain="A" priority="1">-m comment --comment 'oops</rule>
  <zone name="z"><short>nested <b/> text</short></zone>
  junk
  <chain ipv="ipv4" table="broute" chain="B">text</chain>
  <rule ipv="ipv4" table="nat" chain="A" priority="2">-j <chain ipv="ipv4" table="nat" chain="C"/> Y</rule>
  <passthrough>-L</passthrough>
  <rule ipv="ipv6" table="raw" chain="OUTPUT" priority="-1">-j CT --notrack</rule>
</direct>
"#;
        let lenient = parse_lenient(text);
        assert!(lenient.complete);
        let got: Vec<String> = lenient.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            got,
            [
                "line 1, column 9: direct: unexpected attribute version",
                "line 3, column 14: rule: invalid ipv 'ipv7' (expected ipv4, ipv6 or eb)",
                "line 3, column 52: rule: invalid priority 'x' (expected a 32-bit integer)",
                "line 3, column 55: rule: unexpected attribute family",
                "line 4, column 3: rule: cannot split the arguments: No closing quotation",
                "line 5, column 3: unexpected element <zone>",
                "line 6, column 3: text directly inside <direct> is not allowed",
                "line 7, column 28: chain: invalid table 'broute' for ipv4 (expected one of security, raw, mangle, nat, filter)",
                "line 7, column 46: text inside <chain> is not allowed",
                "line 8, column 58: element <chain> is not allowed inside <rule>",
                "line 9, column 3: passthrough: missing attribute ipv",
            ]
        );
        let entries: Vec<(usize, &Entry)> = lenient
            .entries
            .iter()
            .map(|located| (located.line, &located.entry))
            .collect();
        assert_eq!(
            entries,
            [
                (2, &Entry::Chain(chain("ipv4", "nat", "A"))),
                (
                    10,
                    &Entry::Rule(rule(
                        "ipv6",
                        "raw",
                        "OUTPUT",
                        -1,
                        &["-j", "CT", "--notrack"]
                    ))
                ),
            ]
        );
        assert_eq!(parse(text).unwrap_err(), lenient.problems[0]);
    }

    #[test]
    fn lenient_parsing_stops_at_what_is_not_well_formed() {
        let text = "<direct>\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"A\"/>\n  <rule ipv=\"ipv4\" table=\"bad\" chain=\"A\" priority=\"0\">-j X</rule>\n  <rule ipv=\"ipv4\" table=\"nat\" chain=\"A\" priority=\"0\">-j X</passthrough>\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"B\"/>\n</direct>\n";
        let lenient = parse_lenient(text);
        assert!(!lenient.complete);
        let got: Vec<(usize, usize)> = lenient
            .problems
            .iter()
            .map(|p| (p.line, p.column))
            .collect();
        assert_eq!(got, [(3, 27), (4, 59)]);
        assert!(lenient.problems[1].message.contains("not well-formed"));
        assert_eq!(lenient.entries.len(), 1);
    }

    #[test]
    fn odd_but_valid_files_parse() {
        for text in [
            "<direct/>",
            "<direct />",
            "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?><direct></direct>",
            "<?xml version=\"1.0\" encoding=\"us-ascii\"?><direct/>",
            "<!-- c --><?pi x?>\n<direct><!-- -->\n<?x y?></direct>\n<!-- after -->\n",
            "<direct>&#32;&#x9;<![CDATA[ \n ]]></direct>",
        ] {
            let document = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(document.config().is_empty(), "{text:?}");
        }
    }

    /// Files without entries of ours.
    const FOREIGN: &[&str] = &[
        // As firewalld writes them.
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n</direct>\n",
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n  <chain ipv=\"ipv4\" table=\"filter\" chain=\"MINE\"/>\n  <rule ipv=\"ipv4\" table=\"filter\" chain=\"MINE\" priority=\"0\">-j ACCEPT</rule>\n  <passthrough ipv=\"eb\">-t nat -L</passthrough>\n</direct>\n",
        // Hand-written: comments, tabs, blank lines, odd quoting, no declaration, no final newline.
        "<!-- managed by hand -->\n<direct>\n\t<!-- mine -->\n\t<chain ipv='ipv6' table='raw' chain='X'  />\n\n\t<rule ipv=\"ipv6\" table=\"raw\" chain=\"X\" priority=\"-1\">\n\t\t-m comment --comment \"double\" 'it'\"'\"'s' &amp;\n\t</rule>\t\n</direct>",
        // `</direct>` indented, entries sharing lines.
        "<direct>\n    <chain ipv=\"eb\" table=\"nat\" chain=\"E\"/><chain ipv=\"eb\" table=\"nat\" chain=\"F\"/>\n    </direct>\n",
        // `</direct>` sharing a line with an entry, or with the start tag.
        "<direct><chain ipv=\"ipv4\" table=\"nat\" chain=\"Y\"/></direct>",
        "<direct>\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"Y\"/></direct>\n",
        "<direct></direct>",
        "<direct>  </direct>\n<!-- trailing -->\n",
        // Windows line endings.
        "<?xml version=\"1.0\"?>\r\n<direct>\r\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"W\"/>\r\n</direct>\r\n",
        "<?xml version=\"1.0\"?>\r\n<direct>\r\n</direct>",
        // A foreign rule in a built-in chain next to where ours go.
        "<direct>\n  <rule ipv=\"ipv4\" table=\"nat\" chain=\"OUTPUT\" priority=\"0\">-p udp --dport 53 -j ACCEPT</rule>\n  <!-- last -->\n</direct>\n",
    ];

    #[test]
    fn foreign_content_survives_byte_for_byte() {
        let desired = owned();
        for text in FOREIGN {
            let document = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(document.config().owned().is_empty(), "{text:?}");
            assert_eq!(document.with_owned(&DirectConfig::default()), *text);

            let with_ours = document.with_owned(&desired);
            let reparsed = parse(&with_ours).unwrap_or_else(|e| panic!("{with_ours:?}: {e}"));
            let mut want = document.config();
            want.chains.extend(desired.chains.iter().cloned());
            want.rules.extend(desired.rules.iter().cloned());
            want.passthroughs
                .extend(desired.passthroughs.iter().cloned());
            assert_eq!(reparsed.config(), want, "{with_ours}");
            assert_eq!(
                reparsed.with_owned(&DirectConfig::default()),
                *text,
                "{with_ours}"
            );
            // Writing the same entries again changes nothing.
            assert_eq!(reparsed.with_owned(&desired), with_ours);
            // Other entries of ours replace the previous ones.
            let fewer = DirectConfig {
                rules: desired.rules[1..2].to_vec(),
                ..Default::default()
            };
            let replaced = parse(&reparsed.with_owned(&fewer)).unwrap();
            assert_eq!(replaced.config().owned(), fewer);
            assert_eq!(replaced.with_owned(&DirectConfig::default()), *text);
        }
    }

    #[test]
    fn ours_go_on_their_own_lines_before_the_end_tag() {
        let text = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n  <chain ipv=\"ipv4\" table=\"filter\" chain=\"MINE\"/>\n</direct>\n";
        let desired = DirectConfig {
            chains: vec![chain("ipv4", "nat", "KUMA_MESH_OUTBOUND")],
            rules: vec![rule(
                "ipv4",
                "nat",
                "KUMA_MESH_OUTBOUND",
                1,
                &["-m", "comment", "--comment", "a & b", "-j", "RETURN"],
            )],
            passthroughs: vec![],
        };
        assert_eq!(
            parse(text).unwrap().with_owned(&desired),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n  <chain ipv=\"ipv4\" table=\"filter\" chain=\"MINE\"/>\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"KUMA_MESH_OUTBOUND\"/>\n  <rule ipv=\"ipv4\" table=\"nat\" chain=\"KUMA_MESH_OUTBOUND\" priority=\"1\">-m comment --comment 'a &amp; b' -j RETURN</rule>\n</direct>\n"
        );
        // The indentation of the foreign children is used.
        let tabs = "<direct>\n\t<chain ipv=\"eb\" table=\"nat\" chain=\"E\"/>\n</direct>\n";
        assert_eq!(
            parse(tabs).unwrap().with_owned(&desired).lines().nth(2),
            Some("\t<chain ipv=\"ipv4\" table=\"nat\" chain=\"KUMA_MESH_OUTBOUND\"/>")
        );
        // A file of ours only becomes firewalld's empty file.
        let ours = render(&owned());
        assert_eq!(
            parse(&ours).unwrap().with_owned(&DirectConfig::default()),
            render(&DirectConfig::default())
        );
    }

    #[test]
    fn ours_use_the_file_s_line_endings() {
        let text = "<?xml version=\"1.0\"?>\r\n<direct>\r\n</direct>\r\n";
        let desired = DirectConfig {
            chains: vec![chain("ipv4", "nat", "KUMA_MESH_OUTBOUND")],
            ..Default::default()
        };
        assert_eq!(
            parse(text).unwrap().with_owned(&desired),
            "<?xml version=\"1.0\"?>\r\n<direct>\r\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"KUMA_MESH_OUTBOUND\"/>\r\n</direct>\r\n"
        );
    }

    #[test]
    fn owned_entries_are_removed_wherever_they_are() {
        let text = "<direct>\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"KUMA_MESH_INBOUND\"/>\n  <!-- keep -->\n  <rule ipv=\"ipv4\" table=\"nat\" chain=\"KUMA_MESH_INBOUND\" priority=\"0\"></rule>\n  <chain ipv=\"eb\" table=\"nat\" chain=\"KUMA_MESH_INBOUND\"/><chain ipv=\"ipv4\" table=\"nat\" chain=\"KUMA_MESH_X\"/>\n  <passthrough ipv=\"ipv6\">-m comment --comment kuma/mesh/transparent/proxy/x -j RETURN</passthrough>\n</direct>\n";
        assert_eq!(
            parse(text).unwrap().with_owned(&DirectConfig::default()),
            "<direct>\n  <!-- keep -->\n  <chain ipv=\"eb\" table=\"nat\" chain=\"KUMA_MESH_INBOUND\"/>\n</direct>\n"
        );
    }

    #[test]
    fn a_self_closing_root_is_expanded_only_when_needed() {
        let text = "<?xml version=\"1.0\"?>\n<direct/>\n";
        let document = parse(text).unwrap();
        assert_eq!(document.with_owned(&DirectConfig::default()), text);
        let desired = DirectConfig {
            chains: vec![chain("ipv4", "nat", "KUMA_MESH_OUTBOUND")],
            ..Default::default()
        };
        let expanded = document.with_owned(&desired);
        assert_eq!(
            expanded,
            "<?xml version=\"1.0\"?>\n<direct>\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"KUMA_MESH_OUTBOUND\"/>\n</direct>\n"
        );
        // The one exception to the round trip: `<direct/>` stays expanded.
        assert_eq!(
            parse(&expanded)
                .unwrap()
                .with_owned(&DirectConfig::default()),
            "<?xml version=\"1.0\"?>\n<direct>\n</direct>\n"
        );
    }
}
