//! firewalld's `direct.xml`: parsing it the way firewalld's loader does, rendering it the way
//! firewalld's writer does, and replacing only our entries in an existing file while every
//! byte of foreign content stays as it was. Pure text in, text out: no file I/O here.
//!
//! firewalld reads the file with Python's SAX parser (expat) and splits the text of `<rule>`
//! and `<passthrough>` with `shlex.split` after turning every newline into a space; it writes
//! the arguments back with `" ".join(shlex.quote(a))`. [`split_args`] and [`join_args`] are
//! exact re-implementations of those two, including their corner cases (`#` is not a
//! comment, `''` is an empty argument, a backslash inside double quotes only escapes `"`
//! and `\`).

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::ops::Range;

use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use thiserror::Error;

use crate::direct::{tables_of, DirectChain, DirectConfig, DirectRule, Passthrough};

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
    /// The element name: `chain`, `rule` or `passthrough`.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::Chain(_) => "chain",
            Entry::Rule(_) => "rule",
            Entry::Passthrough(_) => "passthrough",
        }
    }

    pub fn is_owned(&self) -> bool {
        match self {
            Entry::Chain(chain) => chain.is_owned(),
            Entry::Rule(rule) => rule.is_owned(),
            Entry::Passthrough(passthrough) => passthrough.is_owned(),
        }
    }

    /// False for a `<rule>` or `<passthrough>` without arguments: firewalld logs
    /// "does not have any arguments, ignoring" and never applies or writes it.
    pub fn is_effective(&self) -> bool {
        match self {
            Entry::Chain(_) => true,
            Entry::Rule(rule) => !rule.args.is_empty(),
            Entry::Passthrough(passthrough) => !passthrough.args.is_empty(),
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
    /// passthroughs without arguments (see [`Entry::is_effective`]) and duplicates. Read
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

    /// Ok exactly when [`parse`] accepts `text` (with its error otherwise), for any text;
    /// fast when `text` is a new version of this document's text changed near its end (as
    /// [`Document::with_owned`] changes it): only what follows the last child of `<direct>`
    /// that starts before the first changed byte is read.
    pub fn check_successor(&self, text: &str) -> Result<(), DirectXmlError> {
        let same = common_prefix(self.text.as_bytes(), text.as_bytes());
        let resume = self
            .places
            .partition_point(|place| place.span.start <= same)
            .checked_sub(1)
            .map(|i| self.places[i].span.start);
        // The parser reads left to right, and `text` up to `resume` is what this document
        // was read from: there, at the start of a child of `<direct>`, it was between
        // children with only blanks in the text since the last markup. `<direct>` and the
        // rest of `text` from there go through the same checks as the rest of `text` would
        // after that prefix; only the encoding declaration is checked on the whole text,
        // and a non-UTF-8 one is accepted only for ASCII text, so that an ASCII document
        // turning non-ASCII is read in full. So is a text the shortcut refuses: the error
        // is the one the whole text gives, with its true position.
        let encoding_unchanged = text.is_ascii() || !self.text.is_ascii();
        if let Some(rest) = resume.and_then(|at| text.get(at..)) {
            if encoding_unchanged && parse(&format!("<direct>{rest}")).is_ok() {
                return Ok(());
            }
        }
        parse(text).map(|_| ())
    }

    /// The file's new text with `desired` as our entries: every owned element is removed
    /// (with its line when it stands alone on it), everything else keeps its bytes, and the
    /// desired entries (chains, rules, passthroughs, in the given order; rules and
    /// passthroughs without arguments are skipped like firewalld's writer does) go just
    /// before `</direct>`, one per line, indented like the existing foreign children. When
    /// `</direct>` shares its line with other content, it stays right after the last new
    /// entry so that removing ours again restores the file exactly.
    ///
    /// For a file `F` without owned entries, `parse(F).with_owned(&empty) == F` and
    /// `parse(&parse(F).with_owned(d)).with_owned(&empty) == F`, except when `F`'s root is
    /// the self-closing `<direct/>`: that one is expanded to `<direct>`…`</direct>` and stays
    /// expanded.
    pub fn with_owned(&self, desired: &DirectConfig) -> String {
        let text = self.text.as_str();
        let newline = newline_style(text);
        let end_tag = match self.root {
            Root::Open { end_tag } => Some(end_tag),
            Root::SelfClosing(_) => None,
        };

        let removals: Vec<Range<usize>> = self
            .places
            .iter()
            .filter(|place| place.owned)
            .map(|place| removal_range(text, &place.span, end_tag, newline))
            .collect();

        let indent = self.child_indent();
        let mut block = String::new();
        for element in desired_elements(desired) {
            block.push_str(newline);
            block.push_str(indent);
            block.push_str(&element);
        }

        // Where the block goes, and what replaces the bytes at that place.
        let (insert_at, replaced, insertion) = match &self.root {
            Root::Open { end_tag } => {
                let line_start = line_start(text, *end_tag);
                let only_blanks_before = is_blank(&text[line_start..*end_tag]);
                if only_blanks_before && line_start > 0 {
                    // `</direct>` starts its own line: the new lines go before the newline
                    // that ends the line above.
                    let at = newline_start(text, line_start, newline);
                    (at, at..at, block)
                } else {
                    (*end_tag, *end_tag..*end_tag, block)
                }
            }
            Root::SelfClosing(span) => {
                if block.is_empty() {
                    (span.start, span.start..span.start, String::new())
                } else {
                    let expanded = format!("<direct>{block}{newline}</direct>");
                    (span.start, span.clone(), expanded)
                }
            }
        };

        let mut out = String::with_capacity(text.len() + insertion.len());
        let mut cursor = 0;
        let mut inserted = false;
        for removal in &removals {
            if !inserted && insert_at <= removal.start {
                out.push_str(&text[cursor..insert_at]);
                out.push_str(&insertion);
                cursor = replaced.end;
                inserted = true;
            }
            out.push_str(&text[cursor..removal.start]);
            cursor = removal.end;
        }
        if !inserted {
            out.push_str(&text[cursor..insert_at]);
            out.push_str(&insertion);
            cursor = replaced.end;
        }
        out.push_str(&text[cursor..]);
        out
    }

    /// The indentation of the first foreign child that starts its line (after blanks); two
    /// spaces when there is none. Only foreign children count, so that writing
    /// our entries again does not change where they go.
    fn child_indent(&self) -> &str {
        let text = self.text.as_str();
        for place in &self.places {
            if place.owned {
                continue;
            }
            let start = line_start(text, place.span.start);
            let prefix = &text[start..place.span.start];
            if start > 0 && is_blank(prefix) {
                return prefix;
            }
        }
        "  "
    }
}

/// The length of the longest common prefix of `a` and `b`: compared a block at a time
/// (memcmp) up to the first block that differs, then byte by byte.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 4096;
    let same_blocks = a
        .chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .take_while(|(a, b)| a == b)
        .count();
    // The last block may be short.
    let start = (same_blocks * BLOCK).min(a.len()).min(b.len());
    start
        + a[start..]
            .iter()
            .zip(&b[start..])
            .take_while(|(a, b)| a == b)
            .count()
}

/// The effective entries of `entries`, in order, each only once.
fn effective(entries: Vec<Located<Entry>>) -> DirectConfig {
    let first: Vec<bool> = {
        // Sized up front: growing the set would hash every entry again.
        let mut seen = HashSet::with_capacity(entries.len());
        entries
            .iter()
            .map(|located| located.entry.is_effective() && seen.insert(&located.entry))
            .collect()
    };
    let mut config = DirectConfig::default();
    for (located, first) in entries.into_iter().zip(first) {
        if !first {
            continue;
        }
        match located.entry {
            Entry::Chain(chain) => config.chains.push(chain),
            Entry::Rule(rule) => config.rules.push(rule),
            Entry::Passthrough(p) => config.passthroughs.push(p),
        }
    }
    config
}

/// `\r\n` when the file's first line ends that way, else `\n`.
fn newline_style(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

fn is_blank(s: &str) -> bool {
    s.bytes().all(|b| b == b' ' || b == b'\t')
}

/// The offset just after the last `\n` before `offset`, or 0.
fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map_or(0, |i| i + 1)
}

/// Where the newline ending the line before `line_start` (> 0) begins.
fn newline_start(text: &str, line_start: usize, newline: &str) -> usize {
    let bytes = text.as_bytes();
    if newline == "\r\n" && line_start >= 2 && bytes[line_start - 2] == b'\r' {
        line_start - 2
    } else {
        line_start - 1
    }
}

/// The bytes removed with an owned element: the element alone when it shares its line with
/// other content, else the newline before it, its indentation, the element and blanks after
/// it (so the line disappears and the next newline stays).
fn removal_range(
    text: &str,
    span: &Range<usize>,
    end_tag: Option<usize>,
    newline: &str,
) -> Range<usize> {
    let bytes = text.as_bytes();
    let start = line_start(text, span.start);
    let mut end = span.end;
    while end < bytes.len() && (bytes[end] == b' ' || bytes[end] == b'\t') {
        end += 1;
    }
    let ends_line = bytes.get(end) == Some(&b'\n')
        || (bytes.get(end) == Some(&b'\r') && bytes.get(end + 1) == Some(&b'\n'));
    let before_end_tag = end_tag == Some(end);
    if start > 0 && is_blank(&text[start..span.start]) && (ends_line || before_end_tag) {
        newline_start(text, start, newline)..end
    } else {
        span.clone()
    }
}

/// The desired entries as firewalld would write each element, in the given order.
fn desired_elements(desired: &DirectConfig) -> Vec<String> {
    let mut elements = Vec::new();
    for chain in &desired.chains {
        elements.push(chain_element(chain));
    }
    for rule in desired.rules.iter().filter(|r| !r.args.is_empty()) {
        elements.push(rule_element(rule));
    }
    for passthrough in desired.passthroughs.iter().filter(|p| !p.args.is_empty()) {
        elements.push(passthrough_element(passthrough));
    }
    elements
}

fn chain_element(chain: &DirectChain) -> String {
    format!(
        "<chain ipv={} table={} chain={}/>",
        quote_attr(&chain.ipv),
        quote_attr(&chain.table),
        quote_attr(&chain.chain)
    )
}

fn rule_element(rule: &DirectRule) -> String {
    format!(
        "<rule ipv={} table={} chain={} priority=\"{}\">{}</rule>",
        quote_attr(&rule.ipv),
        quote_attr(&rule.table),
        quote_attr(&rule.chain),
        rule.priority,
        escape_text(&join_args(&rule.args))
    )
}

fn passthrough_element(passthrough: &Passthrough) -> String {
    format!(
        "<passthrough ipv={}>{}</passthrough>",
        quote_attr(&passthrough.ipv),
        escape_text(&join_args(&passthrough.args))
    )
}

/// A new file exactly as firewalld 1.3's `Direct.write()` writes `config`: firewalld keeps
/// chains grouped by (ipv, table), rules by (ipv, table, chain) and passthroughs by ipv, each
/// group in order of first appearance, drops repeated entries and skips rules and
/// passthroughs without arguments. An empty config gives `<direct>\n</direct>\n`.
pub fn render(config: &DirectConfig) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n");

    let mut chains: Groups<(&str, &str), &DirectChain> = Vec::new();
    for chain in &config.chains {
        let key = (chain.ipv.as_str(), chain.table.as_str());
        let group = group_of(&mut chains, key);
        if !group.contains(&chain) {
            group.push(chain);
        }
    }
    let mut rules: Groups<(&str, &str, &str), &DirectRule> = Vec::new();
    for rule in &config.rules {
        let key = (rule.ipv.as_str(), rule.table.as_str(), rule.chain.as_str());
        let group = group_of(&mut rules, key);
        if !group.contains(&rule) {
            group.push(rule);
        }
    }
    let mut passthroughs: Groups<&str, &Passthrough> = Vec::new();
    for passthrough in &config.passthroughs {
        let group = group_of(&mut passthroughs, passthrough.ipv.as_str());
        if !group.contains(&passthrough) {
            group.push(passthrough);
        }
    }

    for chain in chains.iter().flat_map(|(_, group)| group) {
        let _ = writeln!(out, "  {}", chain_element(chain));
    }
    for rule in rules.iter().flat_map(|(_, group)| group) {
        if !rule.args.is_empty() {
            let _ = writeln!(out, "  {}", rule_element(rule));
        }
    }
    for passthrough in passthroughs.iter().flat_map(|(_, group)| group) {
        if !passthrough.args.is_empty() {
            let _ = writeln!(out, "  {}", passthrough_element(passthrough));
        }
    }
    out.push_str("</direct>\n");
    out
}

/// Entries grouped by a key, groups in order of first appearance.
type Groups<K, V> = Vec<(K, Vec<V>)>;

fn group_of<K: PartialEq, V>(groups: &mut Groups<K, V>, key: K) -> &mut Vec<V> {
    let index = match groups.iter().position(|(k, _)| *k == key) {
        Some(index) => index,
        None => {
            groups.push((key, Vec::new()));
            groups.len() - 1
        }
    };
    &mut groups[index].1
}

/// `xml.sax.saxutils.escape`: `&`, `<` and `>`.
fn escape_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('>', "&gt;")
        .replace('<', "&lt;")
}

/// `xml.sax.saxutils.quoteattr`: escapes like [`escape_text`] plus newline, carriage return
/// and tab as character references, then quotes with `"` unless the value contains `"` and
/// no `'` (then `'`); with both, `"` becomes `&quot;`.
fn quote_attr(s: &str) -> String {
    let escaped = escape_text(s)
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;");
    if escaped.contains('"') {
        if escaped.contains('\'') {
            format!("\"{}\"", escaped.replace('"', "&quot;"))
        } else {
            format!("'{escaped}'")
        }
    } else {
        format!("\"{escaped}\"")
    }
}

/// Python's `" ".join(shlex.quote(a) for a in args)` (firewalld's `joinArgs`).
pub fn join_args(args: &[String]) -> String {
    let quoted: Vec<String> = args.iter().map(|arg| shell_quote(arg)).collect();
    quoted.join(" ")
}

/// Python's `shlex.quote`.
fn shell_quote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if arg.is_empty() {
        "''".to_string()
    } else if arg.chars().all(safe) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\"'\"'"))
    }
}

/// Python's `shlex.split(text)` (firewalld's `splitArgs`): POSIX mode, no comments. The
/// errors are Python's messages: `No closing quotation`, `No escaped character`.
pub fn split_args(text: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    split_into(text, false, &mut String::new(), |arg| {
        args.push(arg.to_owned())
    })?;
    Ok(args)
}

/// [`split_args`] handing each argument to `emit` (`token` is scratch space, so that a
/// caller splitting many texts need not allocate for each argument). With
/// `newlines_as_spaces`, every newline is a space first, as firewalld does with the text of
/// an element.
fn split_into(
    text: &str,
    newlines_as_spaces: bool,
    token: &mut String,
    mut emit: impl FnMut(&str),
) -> Result<(), &'static str> {
    #[derive(Clone, Copy)]
    enum State {
        Blank,
        Word,
        Quoted(char),
        /// After a backslash, in a word or inside double quotes.
        Escaped {
            in_quotes: bool,
        },
    }
    let is_blank = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');

    // Without quotes and backslashes (most rules) the arguments are the runs of non-blank
    // characters, newlines outside quotes being blanks anyway: they are cut out of the
    // text instead of being copied one character at a time. The blanks are ASCII, so
    // bytes will do.
    if !text.bytes().any(|b| matches!(b, b'\'' | b'"' | b'\\')) {
        let mut start = 0;
        for (i, b) in text.bytes().enumerate() {
            if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                if start < i {
                    emit(&text[start..i]);
                }
                start = i + 1;
            }
        }
        if start < text.len() {
            emit(&text[start..]);
        }
        return Ok(());
    }
    let chars = text.chars().map(|c| {
        if newlines_as_spaces && c == '\n' {
            ' '
        } else {
            c
        }
    });
    token.clear();
    // Whether the current token had quotes: `''` is an argument, nothing is none.
    let mut quoted = false;
    let mut state = State::Blank;
    for c in chars {
        state = match state {
            State::Blank | State::Word if is_blank(c) => {
                if !token.is_empty() || quoted {
                    emit(token);
                    token.clear();
                    quoted = false;
                }
                State::Blank
            }
            State::Blank | State::Word => match c {
                '\\' => State::Escaped { in_quotes: false },
                '\'' | '"' => State::Quoted(c),
                _ => {
                    token.push(c);
                    State::Word
                }
            },
            State::Quoted(quote) => {
                quoted = true;
                if c == quote {
                    State::Word
                } else if c == '\\' && quote == '"' {
                    State::Escaped { in_quotes: true }
                } else {
                    token.push(c);
                    State::Quoted(quote)
                }
            }
            State::Escaped { in_quotes } => {
                // Inside double quotes only `"` and `\` can be escaped; anything else keeps
                // its backslash.
                if in_quotes && c != '\\' && c != '"' {
                    token.push('\\');
                }
                token.push(c);
                if in_quotes {
                    State::Quoted('"')
                } else {
                    State::Word
                }
            }
        };
    }
    match state {
        State::Quoted(_) => Err("No closing quotation"),
        State::Escaped { .. } => Err("No escaped character"),
        State::Blank | State::Word => {
            if !token.is_empty() || quoted {
                emit(token);
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------
// Parser

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chain,
    Rule,
    Passthrough,
}

impl Kind {
    fn of(name: &str) -> Option<Kind> {
        match name {
            "chain" => Some(Kind::Chain),
            "rule" => Some(Kind::Rule),
            "passthrough" => Some(Kind::Passthrough),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Chain => "chain",
            Kind::Rule => "rule",
            Kind::Passthrough => "passthrough",
        }
    }

    /// firewalld's `PARSER_REQUIRED_ELEMENT_ATTRS` (there are no optional ones).
    fn attributes(self) -> &'static [&'static str] {
        match self {
            Kind::Chain => &["ipv", "table", "chain"],
            Kind::Rule => &["ipv", "table", "chain", "priority"],
            Kind::Passthrough => &["ipv"],
        }
    }
}

/// Which entries the parser keeps as values; it records where every entry is either way.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    All,
    Owned,
}

/// An element of `<direct>` whose end tag has not been seen yet. Its attributes are in
/// the scratch entry of its kind, its text in the scratch text.
struct Open {
    kind: Kind,
    start: usize,
    /// False when the element has a problem (lenient parsing only), so that it is read to
    /// its end and left out.
    valid: bool,
}

struct State<'t> {
    stage: Stage,
    root: Option<Root>,
    root_start: usize,
    /// Every entry read.
    places: Vec<Place>,
    /// The entries kept (see [`Keep`]).
    entries: Vec<Located<Entry>>,
    scratch: Scratch<'t>,
}

/// Buffers reused from one element to the next, so that reading an entry allocates
/// nothing unless it is kept (a 10,000-rule file used to spend most of its time in malloc).
#[derive(Default)]
struct Scratch<'t> {
    /// The open child's text content, unescaped, with XML's end-of-line handling (only one
    /// child of `<direct>` is open at a time: deeper elements are refused or skipped).
    text: String,
    token: String,
    /// The element being read, filled in place; a kept entry is a copy.
    chain: DirectChain,
    rule: DirectRule,
    passthrough: Passthrough,
    /// Strings of earlier arguments, to be filled again.
    spare: Vec<String>,
    attributes: Vec<RawAttribute<'t>>,
}

impl State<'_> {
    fn new() -> Self {
        State {
            stage: Stage::Prolog,
            root: None,
            root_start: 0,
            places: Vec::new(),
            entries: Vec::new(),
            scratch: Scratch::default(),
        }
    }
}

enum Stage {
    /// Before the root element.
    Prolog,
    /// Inside `<direct>`, between children.
    Root,
    Child(Open),
    /// Inside an element that is left out (lenient parsing only), `depth` elements deep;
    /// `parent` is where reading resumes after its end tag.
    Skip {
        depth: usize,
        parent: Box<Stage>,
    },
    /// After the root element.
    Epilog,
}

/// One attribute as written: its name, raw value and their offsets in the text.
struct RawAttribute<'t> {
    key: &'t str,
    key_at: usize,
    value: &'t str,
    value_at: usize,
}

/// The loader behind [`parse`], on quick-xml's event reader.
struct Parser<'t> {
    text: &'t str,
    /// Length of a leading byte order mark, which the XML reader does not see.
    bom: usize,
    /// Where each line starts, made when a position is first needed (most parses need none).
    lines: OnceCell<Vec<usize>>,
    /// Whether problems that leave the rest readable are recorded instead of returned.
    lenient: bool,
    keep: Keep,
    /// The problems recorded so far (lenient parsing only).
    recorded: RefCell<Vec<DirectXmlError>>,
}

impl<'t> Parser<'t> {
    fn new(text: &'t str, lenient: bool, keep: Keep) -> Self {
        let bom = if text.starts_with('\u{feff}') { 3 } else { 0 };
        Parser {
            text,
            bom,
            lines: OnceCell::new(),
            lenient,
            keep,
            recorded: RefCell::new(Vec::new()),
        }
    }

    /// A problem reading can go on after: recorded when lenient, else returned.
    fn soft(&self, error: DirectXmlError) -> Result<(), DirectXmlError> {
        if self.lenient {
            self.recorded.borrow_mut().push(error);
            Ok(())
        } else {
            Err(error)
        }
    }

    fn recorded_count(&self) -> usize {
        self.recorded.borrow().len()
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> DirectXmlError {
        let offset = offset.min(self.text.len());
        let lines = self.lines.get_or_init(|| {
            let mut lines = vec![0];
            lines.extend(self.text.match_indices('\n').map(|(i, _)| i + 1));
            lines
        });
        let line = lines.partition_point(|&start| start <= offset);
        let start = lines[line - 1];
        // The offset may point into a multi-byte character: count the characters before it.
        let column = self.text.as_bytes()[start..offset]
            .iter()
            .filter(|&&b| (b & 0xC0) != 0x80)
            .count()
            + 1;
        DirectXmlError {
            line,
            column,
            message: message.into(),
        }
    }

    /// The offset in the text of `part`, a slice borrowed from it by the XML reader.
    fn offset_of(&self, part: &str, fallback: usize) -> usize {
        let base = self.text.as_ptr() as usize;
        let at = part.as_ptr() as usize;
        if at >= base && at + part.len() <= base + self.text.len() {
            at - base
        } else {
            fallback
        }
    }

    /// Reads the whole text into `state`; the root element when it is a `<direct>`.
    fn run(&self, state: &mut State<'t>) -> Result<Root, DirectXmlError> {
        let body = &self.text[self.bom..];
        let mut reader = Reader::from_str(body);
        let config = reader.config_mut();
        config.check_comments = true;
        config.check_end_names = true;
        config.expand_empty_elements = false;

        loop {
            let at = self.bom + reader.buffer_position() as usize;
            let event = reader.read_event().map_err(|e| {
                let position = self.bom + reader.error_position() as usize;
                self.error(position, format!("not well-formed XML: {e}"))
            })?;
            let end = self.bom + reader.buffer_position() as usize;
            match event {
                Event::Decl(decl) => {
                    if at != self.bom {
                        return Err(self.error(
                            at,
                            "the XML declaration is only allowed at the very start of the file",
                        ));
                    }
                    if let Some(Ok(encoding)) = decl.encoding() {
                        let utf8 = encoding.eq_ignore_ascii_case("utf-8")
                            || encoding.eq_ignore_ascii_case("utf8");
                        if !utf8 && !self.text.is_ascii() {
                            return Err(self.error(
                                at,
                                format!(
                                    "the file declares encoding \"{encoding}\" but is read as \
                                     UTF-8 and has non-ASCII characters"
                                ),
                            ));
                        }
                    }
                }
                Event::DocType(_) => {
                    return Err(self.error(
                        at,
                        "a DOCTYPE is not allowed in direct.xml (its entity definitions \
                         could expand without bound)",
                    ));
                }
                Event::PI(pi) => {
                    if pi.target().eq_ignore_ascii_case("xml") {
                        return Err(self.error(
                            at,
                            "the XML declaration is only allowed at the very start of the file",
                        ));
                    }
                }
                Event::Comment(comment) => {
                    let raw = comment.into_inner();
                    self.check_chars(&raw, self.offset_of(&raw, at))?;
                }
                Event::Text(text) => {
                    let raw = text.into_inner();
                    let raw_at = self.offset_of(&raw, at);
                    self.check_chars(&raw, raw_at)?;
                    // A byte search for `]` first: most texts have none, and setting up the
                    // substring search costs more than that.
                    if raw.contains(']') {
                        if let Some(i) = raw.find("]]>") {
                            return Err(self.error(raw_at + i, "`]]>` is not allowed in text"));
                        }
                    }
                    self.text_content(state, &raw, raw_at, true)?;
                }
                Event::CData(cdata) => {
                    let raw = cdata.into_inner();
                    let raw_at = self.offset_of(&raw, at);
                    self.check_chars(&raw, raw_at)?;
                    if matches!(state.stage, Stage::Prolog | Stage::Epilog) {
                        return Err(self.error(at, "CDATA outside the <direct> element"));
                    }
                    self.text_content(state, &raw, raw_at, true)?;
                }
                Event::GeneralRef(reference) => {
                    let name = reference.into_inner();
                    if matches!(state.stage, Stage::Prolog | Stage::Epilog) {
                        return Err(self.error(at, "a reference outside the <direct> element"));
                    }
                    let c = self.resolve_reference(&name, at)?;
                    self.text_content(state, c.encode_utf8(&mut [0; 4]), at, false)?;
                }
                Event::Start(start) => self.start_tag(state, &start, false, at, end)?,
                Event::Empty(start) => self.start_tag(state, &start, true, at, end)?,
                Event::End(_) => match std::mem::replace(&mut state.stage, Stage::Epilog) {
                    Stage::Child(open) => {
                        self.finish(open, end, state)?;
                        state.stage = Stage::Root;
                    }
                    Stage::Skip { depth, parent } => {
                        state.stage = if depth > 1 {
                            Stage::Skip {
                                depth: depth - 1,
                                parent,
                            }
                        } else {
                            *parent
                        };
                    }
                    Stage::Root => state.root = Some(Root::Open { end_tag: at }),
                    // The reader already refuses an end tag without its start tag.
                    Stage::Prolog | Stage::Epilog => {
                        return Err(self.error(at, "an end tag without a start tag"));
                    }
                },
                Event::Eof => return self.end_of_file(state, at),
            }
        }
    }

    fn start_tag(
        &self,
        state: &mut State<'t>,
        start: &BytesStart<'_>,
        empty: bool,
        at: usize,
        end: usize,
    ) -> Result<(), DirectXmlError> {
        let name = start.name();
        let name: &str = name.as_ref();
        match &mut state.stage {
            Stage::Prolog => {
                if name != "direct" {
                    return Err(self.error(
                        at,
                        format!("the root element must be <direct>, not <{name}>"),
                    ));
                }
                let attributes = &mut state.scratch.attributes;
                self.attributes(start, at, attributes)?;
                for attribute in attributes.iter() {
                    self.soft(self.error(
                        attribute.key_at,
                        format!("direct: unexpected attribute {}", attribute.key),
                    ))?;
                }
                state.root_start = at;
                if empty {
                    state.root = Some(Root::SelfClosing(at..end));
                    state.stage = Stage::Epilog;
                } else {
                    state.stage = Stage::Root;
                }
            }
            Stage::Root => {
                let Some(kind) = Kind::of(name) else {
                    let message = if name == "direct" {
                        "more than one <direct> element".to_string()
                    } else {
                        format!("unexpected element <{name}>")
                    };
                    self.soft(self.error(at, message))?;
                    // Lenient: the element and everything in it are left out.
                    self.attributes(start, at, &mut state.scratch.attributes)?;
                    if !empty {
                        state.stage = Stage::Skip {
                            depth: 1,
                            parent: Box::new(Stage::Root),
                        };
                    }
                    return Ok(());
                };
                let open = Open {
                    kind,
                    start: at,
                    valid: self.start_entry(kind, start, at, &mut state.scratch)?,
                };
                state.scratch.text.clear();
                if empty {
                    self.finish(open, end, state)?;
                } else {
                    state.stage = Stage::Child(open);
                }
            }
            Stage::Child(open) => {
                self.soft(self.error(
                    at,
                    format!(
                        "element <{name}> is not allowed inside <{}>",
                        open.kind.name()
                    ),
                ))?;
                // Lenient: the enclosing element is left out too, its content being unclear.
                self.attributes(start, at, &mut state.scratch.attributes)?;
                open.valid = false;
                if !empty {
                    let parent = std::mem::replace(&mut state.stage, Stage::Epilog);
                    state.stage = Stage::Skip {
                        depth: 1,
                        parent: Box::new(parent),
                    };
                }
            }
            Stage::Skip { depth, .. } => {
                self.attributes(start, at, &mut state.scratch.attributes)?;
                if !empty {
                    *depth += 1;
                }
            }
            Stage::Epilog => {
                return Err(self.error(
                    at,
                    format!("a second root element <{name}> after the <direct> element"),
                ));
            }
        }
        Ok(())
    }

    fn end_of_file(&self, state: &mut State<'t>, at: usize) -> Result<Root, DirectXmlError> {
        let mut stage = &state.stage;
        while let Stage::Skip { parent, .. } = stage {
            stage = parent;
        }
        match (stage, state.root.take()) {
            (Stage::Epilog, Some(root)) => Ok(root),
            (Stage::Prolog, _) => Err(self.error(
                at,
                "no <direct> element found (the file is empty or has no element)",
            )),
            (Stage::Child(open), _) => Err(self.error(
                at,
                format!(
                    "unexpected end of file: <{}> (line {}) is not closed",
                    open.kind.name(),
                    self.error(open.start, "").line
                ),
            )),
            _ => Err(self.error(
                at,
                format!(
                    "unexpected end of file: <direct> (line {}) is not closed",
                    self.error(state.root_start, "").line
                ),
            )),
        }
    }

    /// Characters XML 1.0 does not allow anywhere in a document.
    fn check_chars(&self, raw: &str, at: usize) -> Result<(), DirectXmlError> {
        // ASCII needs no decoding: only control characters other than tab, newline and
        // carriage return are refused there.
        let allowed = |b: u8| (b' '..0x80).contains(&b) || matches!(b, b'\t' | b'\n' | b'\r');
        if raw.bytes().all(allowed) {
            return Ok(());
        }
        match raw.char_indices().find(|&(_, c)| !is_xml_char(c)) {
            Some((i, c)) => Err(self.error(
                at + i,
                format!("character U+{:04X} is not allowed in XML", c as u32),
            )),
            None => Ok(()),
        }
    }

    /// Text (raw or from a reference) at the current place: kept inside `<rule>` and
    /// `<passthrough>`, refused elsewhere unless it is blank.
    fn text_content(
        &self,
        state: &mut State<'t>,
        content: &str,
        at: usize,
        normalize_newlines: bool,
    ) -> Result<(), DirectXmlError> {
        let blank = |s: &str| s.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
        let first_non_blank = |s: &str| {
            s.char_indices()
                .find(|&(_, c)| !matches!(c, ' ' | '\t' | '\r' | '\n'))
                .map_or(0, |(i, _)| i)
        };
        match &state.stage {
            Stage::Child(open) if open.kind != Kind::Chain => {
                let text = &mut state.scratch.text;
                if normalize_newlines && content.contains('\r') {
                    // XML end-of-line handling: \r\n and a lone \r both become \n.
                    text.push_str(&content.replace("\r\n", "\n").replace('\r', "\n"));
                } else {
                    text.push_str(content);
                }
                Ok(())
            }
            _ if blank(content) => Ok(()),
            Stage::Skip { .. } => Ok(()),
            Stage::Child(_) => self.soft(self.error(
                at + first_non_blank(content),
                "text inside <chain> is not allowed",
            )),
            Stage::Root => self.soft(self.error(
                at + first_non_blank(content),
                "text directly inside <direct> is not allowed",
            )),
            Stage::Prolog => Err(self.error(
                at + first_non_blank(content),
                "text before the <direct> element",
            )),
            Stage::Epilog => Err(self.error(
                at + first_non_blank(content),
                "text after the <direct> element",
            )),
        }
    }

    /// `&name;` (at `at`): one of XML's five entities or a character reference.
    fn resolve_reference(&self, name: &str, at: usize) -> Result<char, DirectXmlError> {
        let c = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => {
                let number = if let Some(hex) = name.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok().filter(|_| is_hex(hex))
                } else if let Some(decimal) = name.strip_prefix('#') {
                    decimal
                        .parse::<u32>()
                        .ok()
                        .filter(|_| decimal.bytes().all(|b| b.is_ascii_digit()))
                } else {
                    return Err(self.error(at, format!("undefined entity &{name};")));
                };
                match number.and_then(char::from_u32).filter(|&c| is_xml_char(c)) {
                    Some(c) => Some(c),
                    None => {
                        return Err(
                            self.error(at, format!("&{name}; is not a valid character reference"))
                        )
                    }
                }
            }
        };
        Ok(c.expect("every branch gives a character"))
    }

    /// The attributes as written, into `attributes` (cleared first); malformed or repeated
    /// ones are refused.
    fn attributes(
        &self,
        start: &BytesStart<'_>,
        at: usize,
        attributes: &mut Vec<RawAttribute<'t>>,
    ) -> Result<(), DirectXmlError> {
        attributes.clear();
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| {
                // Positions in attribute errors count from just after `<`.
                let (position, message) = match e {
                    AttrError::ExpectedEq(p) => (p, "an attribute name must be followed by `=`"),
                    AttrError::ExpectedValue(p) => (p, "`=` must be followed by a value"),
                    AttrError::UnquotedValue(p) => (p, "an attribute value must be quoted"),
                    AttrError::ExpectedQuote(p, _) => (p, "an attribute value is not closed"),
                    AttrError::Duplicated(p, _) => (p, "a repeated attribute"),
                };
                self.error(at + 1 + position, format!("not well-formed XML: {message}"))
            })?;
            let key: &str = attribute.key.as_ref();
            let key_at = self.offset_of(key, at);
            let value: &str = &attribute.value;
            let value_at = self.offset_of(value, at);
            // The reader borrows from our text; re-slice it so the lifetime is ours.
            let key = &self.text[key_at..key_at + key.len()];
            let value = &self.text[value_at..value_at + value.len()];
            if key_at == at || (value_at == at && !value.is_empty()) {
                return Err(self.error(at, "internal error: attribute not borrowed from the text"));
            }
            attributes.push(RawAttribute {
                key,
                key_at,
                value,
                value_at,
            });
        }
        Ok(())
    }

    /// An attribute value as expat reports it: references resolved, newlines, carriage
    /// returns and tabs written literally turned into spaces, `<` refused.
    fn attribute_value(&self, raw: &'t str, at: usize) -> Result<Cow<'t, str>, DirectXmlError> {
        // Printable ASCII without `&` and `<` (almost every value) is the value as written.
        if raw
            .bytes()
            .all(|b| (b' '..0x80).contains(&b) && b != b'&' && b != b'<')
        {
            return Ok(Cow::Borrowed(raw));
        }
        let mut value = String::with_capacity(raw.len());
        let mut rest = raw.char_indices().peekable();
        while let Some((i, c)) = rest.next() {
            match c {
                '&' => {
                    let Some(length) = raw[i..].find(';') else {
                        return Err(self.error(at + i, "not well-formed XML: `&` without `;`"));
                    };
                    let name = &raw[i + 1..i + length];
                    value.push(self.resolve_reference(name, at + i)?);
                    while rest.peek().is_some_and(|&(j, _)| j <= i + length) {
                        rest.next();
                    }
                }
                '<' => {
                    return Err(self.error(
                        at + i,
                        "not well-formed XML: `<` is not allowed in an attribute value",
                    ))
                }
                '\r' => {
                    if rest.peek().is_some_and(|&(_, next)| next == '\n') {
                        rest.next();
                    }
                    value.push(' ');
                }
                '\n' | '\t' => value.push(' '),
                c if !is_xml_char(c) => {
                    return Err(self.error(
                        at + i,
                        format!("character U+{:04X} is not allowed in XML", c as u32),
                    ))
                }
                c => value.push(c),
            }
        }
        Ok(Cow::Owned(value))
    }

    /// Reads the attributes of a `<chain>`, `<rule>` or `<passthrough>` start tag into the
    /// scratch entry of its kind (args untouched). False when lenient and the tag has a
    /// problem (each one is recorded).
    fn start_entry(
        &self,
        kind: Kind,
        start: &BytesStart<'_>,
        at: usize,
        scratch: &mut Scratch<'t>,
    ) -> Result<bool, DirectXmlError> {
        self.attributes(start, at, &mut scratch.attributes)?;
        let attributes = &scratch.attributes;
        let element = kind.name();
        let names = kind.attributes();
        let before = self.recorded_count();
        // Each attribute firewalld requires as written (in the order of `names`, None when
        // missing), in one pass; and whether there are others (the reader refuses repeats).
        let mut found = [None; 4];
        let mut unexpected = false;
        for attribute in attributes {
            match names.iter().position(|&name| name == attribute.key) {
                Some(i) => found[i] = Some(attribute),
                None => unexpected = true,
            }
        }
        // The value and its offset of each of them.
        let mut values: [Option<(Cow<'t, str>, usize)>; 4] = Default::default();
        for ((slot, attribute), &name) in values.iter_mut().zip(found).zip(names) {
            match attribute {
                Some(attribute) => {
                    let value = self.attribute_value(attribute.value, attribute.value_at)?;
                    *slot = Some((value, attribute.value_at));
                }
                None => {
                    self.soft(self.error(at, format!("{element}: missing attribute {name}")))?
                }
            }
        }
        if unexpected {
            for extra in attributes.iter().filter(|a| !names.contains(&a.key)) {
                self.soft(self.error(
                    extra.key_at,
                    format!("{element}: unexpected attribute {}", extra.key),
                ))?;
            }
        }

        // The tables of a valid ipv.
        let mut tables = None;
        if let Some((value, value_at)) = &values[0] {
            match tables_of(value) {
                Some(valid) => tables = Some(valid),
                None => self.soft(self.error(
                    *value_at,
                    format!("{element}: invalid ipv '{value}' (expected ipv4, ipv6 or eb)"),
                ))?,
            }
        }
        if kind != Kind::Passthrough {
            if let (Some(tables), Some((ipv, _)), Some((value, value_at))) =
                (tables, &values[0], &values[1])
            {
                if !tables.contains(&value.as_ref()) {
                    self.soft(self.error(
                        *value_at,
                        format!(
                            "{element}: invalid table '{value}' for {ipv} (expected one of {})",
                            tables.join(", ")
                        ),
                    ))?;
                }
            }
        }
        let mut priority = None;
        if kind == Kind::Rule {
            if let Some((value, value_at)) = &values[3] {
                match value.trim().parse::<i32>() {
                    Ok(number) => priority = Some(number),
                    Err(_) => self.soft(self.error(
                        *value_at,
                        format!(
                            "{element}: invalid priority '{value}' (expected a 32-bit integer)"
                        ),
                    ))?,
                }
            }
        }
        if self.recorded_count() > before {
            return Ok(false);
        }

        // No problem recorded: every attribute is there and valid.
        let value = |i: usize| -> &str {
            values[i]
                .as_ref()
                .map(|(value, _)| value.as_ref())
                .expect("no problem recorded: every attribute is there")
        };
        match kind {
            Kind::Chain => {
                let chain = &mut scratch.chain;
                fill(&mut chain.ipv, value(0));
                fill(&mut chain.table, value(1));
                fill(&mut chain.chain, value(2));
            }
            Kind::Rule => {
                let rule = &mut scratch.rule;
                fill(&mut rule.ipv, value(0));
                fill(&mut rule.table, value(1));
                fill(&mut rule.chain, value(2));
                rule.priority = priority.expect("no problem recorded: the priority is valid");
            }
            Kind::Passthrough => fill(&mut scratch.passthrough.ipv, value(0)),
        }
        Ok(true)
    }

    /// Completes an element whose end is at `end`: its text (in the scratch text) is split
    /// into the args, its place recorded, and the entry kept when [`Keep`] says so. Nothing
    /// when the element was left out or (lenient) its arguments cannot be split.
    fn finish(&self, open: Open, end: usize, state: &mut State<'t>) -> Result<(), DirectXmlError> {
        if !open.valid {
            return Ok(());
        }
        let scratch = &mut state.scratch;
        let args = match open.kind {
            Kind::Chain => None,
            Kind::Rule => Some(&mut scratch.rule.args),
            Kind::Passthrough => Some(&mut scratch.passthrough.args),
        };
        if let Some(args) = args {
            // The previous element's argument strings are filled again.
            scratch.spare.append(args);
            let spare = &mut scratch.spare;
            // firewalld turns every newline of the content into a space before splitting.
            let split = split_into(&scratch.text, true, &mut scratch.token, |arg| {
                let mut string = spare.pop().unwrap_or_default();
                fill(&mut string, arg);
                args.push(string);
            });
            if let Err(message) = split {
                return self.soft(self.error(
                    open.start,
                    format!(
                        "{}: cannot split the arguments: {message}",
                        open.kind.name()
                    ),
                ));
            }
        }
        let owned = match open.kind {
            Kind::Chain => scratch.chain.is_owned(),
            Kind::Rule => scratch.rule.is_owned(),
            Kind::Passthrough => scratch.passthrough.is_owned(),
        };
        let span = open.start..end;
        state.places.push(Place {
            span: span.clone(),
            owned,
        });
        if owned || self.keep == Keep::All {
            let entry = match open.kind {
                Kind::Chain => Entry::Chain(scratch.chain.clone()),
                Kind::Rule => Entry::Rule(scratch.rule.clone()),
                Kind::Passthrough => Entry::Passthrough(scratch.passthrough.clone()),
            };
            let position = self.error(open.start, "");
            state.entries.push(Located {
                line: position.line,
                column: position.column,
                span,
                entry,
            });
        }
        Ok(())
    }
}

/// Sets `string` to `value`, reusing its buffer.
fn fill(string: &mut String, value: &str) {
    string.clear();
    string.push_str(value);
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// XML 1.0's `Char` production.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPLIT_CORPUS: &[(&str, Result<&[&str], &str>)] = &[
        ("", Ok(&[])),
        (" ", Ok(&[])),
        ("\t\n", Ok(&[])),
        ("a", Ok(&["a"])),
        ("a b  c", Ok(&["a", "b", "c"])),
        (
            "-p tcp -j KUMA_MESH_OUTBOUND",
            Ok(&["-p", "tcp", "-j", "KUMA_MESH_OUTBOUND"]),
        ),
        ("''", Ok(&[""])),
        ("a ''", Ok(&["a", ""])),
        ("'' b", Ok(&["", "b"])),
        ("a''b", Ok(&["ab"])),
        ("\"\"", Ok(&[""])),
        ("a\"\"", Ok(&["a"])),
        ("'a b'", Ok(&["a b"])),
        ("\"a b\"", Ok(&["a b"])),
        ("'it'\"'\"'s'", Ok(&["it's"])),
        ("it\\'s", Ok(&["it's"])),
        ("\"say \\\"hi\\\"\"", Ok(&["say \"hi\""])),
        ("\"a\\\\b\"", Ok(&["a\\b"])),
        ("\"a\\b\"", Ok(&["a\\b"])),
        ("\"\\$HOME\"", Ok(&["\\$HOME"])),
        ("'a\\b'", Ok(&["a\\b"])),
        ("'a\\'", Ok(&["a\\"])),
        ("a\\ b", Ok(&["a b"])),
        ("a\\\\b", Ok(&["a\\b"])),
        ("\\a", Ok(&["a"])),
        ("\\\\", Ok(&["\\"])),
        ("# not a comment", Ok(&["#", "not", "a", "comment"])),
        ("a#b", Ok(&["a#b"])),
        ("a #b", Ok(&["a", "#b"])),
        ("x'#'y", Ok(&["x#y"])),
        ("tab\there", Ok(&["tab", "here"])),
        ("a\tb\rc\nd", Ok(&["a", "b", "c", "d"])),
        ("ünïcödé 'ä b' \"ß\"", Ok(&["ünïcödé", "ä b", "ß"])),
        ("日本 語", Ok(&["日本", "語"])),
        ("emoji 🎉'🎉 x'", Ok(&["emoji", "🎉🎉 x"])),
        (
            "-m comment --comment 'kuma & <mesh> \"x\"'",
            Ok(&["-m", "comment", "--comment", "kuma & <mesh> \"x\""]),
        ),
        ("a\"b\"c'd'e", Ok(&["abcde"])),
        ("\"'\"", Ok(&["'"])),
        ("'\"'", Ok(&["\""])),
        ("\"\\'\"", Ok(&["\\'"])),
        ("a\\\"b", Ok(&["a\"b"])),
        ("\\'", Ok(&["'"])),
        ("'unbalanced", Err("No closing quotation")),
        ("\"unbalanced", Err("No closing quotation")),
        ("trailing\\", Err("No escaped character")),
        ("\"esc at end\\", Err("No escaped character")),
        ("a 'b''c' d", Ok(&["a", "bc", "d"])),
        ("''''", Ok(&[""])),
        ("\"\"\"\"", Ok(&[""])),
        ("\\ ", Ok(&[" "])),
        ("\\\t", Ok(&["\t"])),
        (" \\  ", Ok(&[" "])),
        (
            "--to-ports 15001 -j REDIRECT",
            Ok(&["--to-ports", "15001", "-j", "REDIRECT"]),
        ),
        ("a\u{a0}b", Ok(&["a\u{a0}b"])),
        ("a\u{b}b\u{c}c", Ok(&["a\u{b}b\u{c}c"])),
        ("$(x) `y` ${z}", Ok(&["$(x)", "`y`", "${z}"])),
        ("a;b|c&d", Ok(&["a;b|c&d"])),
        ("~/x *.y ?z [a]", Ok(&["~/x", "*.y", "?z", "[a]"])),
    ];
    const QUOTE_CORPUS: &[(&str, &str)] = &[
        ("", "''"),
        ("a", "a"),
        ("it's", "'it'\"'\"'s'"),
        ("'", "''\"'\"''"),
        ("''", "''\"'\"''\"'\"''"),
        ("\"double\"", "'\"double\"'"),
        ("a b", "'a b'"),
        ("&<>", "'&<>'"),
        ("kuma & <mesh> \"x\"", "'kuma & <mesh> \"x\"'"),
        ("ünï", "'ünï'"),
        ("日本", "'日本'"),
        ("tab\there", "'tab\there'"),
        ("back\\slash", "'back\\slash'"),
        ("#", "'#'"),
        ("a#b", "'a#b'"),
        ("$HOME", "'$HOME'"),
        ("-p", "-p"),
        ("--comment=x,y:z/w@%+.", "--comment=x,y:z/w@%+."),
        ("~x", "'~x'"),
        ("a\nb", "'a\nb'"),
        ("\\", "'\\'"),
        ("'\"'\"'", "''\"'\"'\"'\"'\"'\"'\"'\"''"),
        (" ", "' '"),
        ("*", "'*'"),
    ];

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
    fn split_matches_python_shlex() {
        for (text, want) in SPLIT_CORPUS {
            let got = split_args(text);
            let want = want.map(strings).map_err(|e| e.to_string());
            assert_eq!(got, want, "shlex.split({text:?})");
        }
    }

    #[test]
    fn quote_and_join_match_python_shlex() {
        for (arg, want) in QUOTE_CORPUS {
            assert_eq!(shell_quote(arg), *want, "shlex.quote({arg:?})");
        }
        let args: Vec<String> = QUOTE_CORPUS.iter().map(|(a, _)| a.to_string()).collect();
        let quoted: Vec<&str> = QUOTE_CORPUS.iter().map(|(_, q)| *q).collect();
        assert_eq!(join_args(&args), quoted.join(" "));
        assert_eq!(join_args(&[]), "");
    }

    #[test]
    fn args_survive_join_then_split() {
        let nasty: Vec<String> = QUOTE_CORPUS.iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(split_args(&join_args(&nasty)).unwrap(), nasty);
        for arg in &nasty {
            let one = vec![arg.clone()];
            assert_eq!(split_args(&join_args(&one)).unwrap(), one, "{arg:?}");
        }
    }

    #[test]
    fn args_survive_a_file_except_newlines() {
        let nasty: Vec<String> = QUOTE_CORPUS
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
    fn attributes_are_quoted_like_saxutils_quoteattr() {
        // Values from Python's xml.sax.saxutils.quoteattr.
        assert_eq!(quote_attr("KUMA"), "\"KUMA\"");
        assert_eq!(quote_attr("a\"b"), "'a\"b'");
        assert_eq!(quote_attr("a\"b'c"), "\"a&quot;b'c\"");
        assert_eq!(quote_attr("it's"), "\"it's\"");
        assert_eq!(quote_attr("x&y<z>"), "\"x&amp;y&lt;z&gt;\"");
        assert_eq!(quote_attr("a\tb\nc\rd"), "\"a&#9;b&#10;c&#13;d\"");
        assert_eq!(escape_text("a&b<c>d\"e'"), "a&amp;b&lt;c&gt;d\"e'");
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
        assert!(!document.entries()[1].entry.is_effective());
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
    fn common_prefix_is_found_across_blocks() {
        let a = "x".repeat(10_000);
        for (b, want) in [
            (a.clone(), 10_000),
            (format!("{a}y"), 10_000),
            (a[..4096].to_string(), 4096),
            (format!("{}y{}", &a[..4096], &a[4097..]), 4096),
            (format!("{}y", &a[..9000]), 9000),
            (String::new(), 0),
        ] {
            assert_eq!(common_prefix(a.as_bytes(), b.as_bytes()), want);
            assert_eq!(common_prefix(b.as_bytes(), a.as_bytes()), want);
        }
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
        assert_eq!(entries[1].entry.kind(), "rule");
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
