//! Replacing our entries in an existing file, every other byte kept.

use std::ops::Range;

use super::render::desired_elements;
use super::{parse, DirectXmlError, Document, Root};
use crate::direct::DirectConfig;

impl Document {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
