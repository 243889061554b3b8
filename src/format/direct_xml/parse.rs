//! The parser: firewalld's loader (expat, then `shlex.split` of each element's text), with
//! every place an entry came from remembered.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};

use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::{DirectXmlError, Entry, Located, Place, Root};
use crate::direct::{DirectChain, DirectRule, Passthrough};
use crate::quoting::split_args_into;
use crate::tables::tables_of;

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
pub(super) enum Keep {
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

pub(super) struct State<'t> {
    stage: Stage,
    root: Option<Root>,
    root_start: usize,
    /// Every entry read.
    pub(super) places: Vec<Place>,
    /// The entries kept (see [`Keep`]).
    pub(super) entries: Vec<Located<Entry>>,
    scratch: Scratch<'t>,
}

/// Buffers reused from one element to the next, so that reading an entry allocates
/// nothing unless it is kept (a 10,000-rule file would otherwise spend most of its time in
/// malloc).
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
    pub(super) fn new() -> Self {
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
pub(super) struct Parser<'t> {
    text: &'t str,
    /// Length of a leading byte order mark, which the XML reader does not see.
    bom: usize,
    /// Where each line starts, made when a position is first needed (most parses need none).
    lines: OnceCell<Vec<usize>>,
    /// Whether problems that leave the rest readable are recorded instead of returned.
    lenient: bool,
    keep: Keep,
    /// The problems recorded so far (lenient parsing only).
    pub(super) recorded: RefCell<Vec<DirectXmlError>>,
}

impl<'t> Parser<'t> {
    pub(super) fn new(text: &'t str, lenient: bool, keep: Keep) -> Self {
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
    pub(super) fn run(&self, state: &mut State<'t>) -> Result<Root, DirectXmlError> {
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
            let split = split_args_into(&scratch.text, true, &mut scratch.token, |arg| {
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

/// XML 1.0's `Char` production: what a direct.xml can hold.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}
