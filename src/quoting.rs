//! Quoting and splitting arguments: Python's `shlex` as firewalld uses it (`joinArgs`,
//! `splitArgs`), and Go's `%q` as kumactl quotes arguments for iptables-restore. Exact
//! re-implementations, corner cases included (`#` is not a comment, `''` is an empty
//! argument, a backslash inside double quotes only escapes `"` and `\`): the `shlex` crate
//! differs from Python's.

use std::fmt::Write as _;

/// Quotes an argument for iptables-restore's tokenizer the way kumactl does (Go's `%q`)
/// when it holds anything but plain characters.
pub fn restore_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\' | '#'));
    if plain {
        return arg.to_string();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
    split_args_into(text, false, &mut String::new(), |arg| {
        args.push(arg.to_owned())
    })?;
    Ok(args)
}

/// [`split_args`] handing each argument to `emit` (`token` is scratch space, so that a
/// caller splitting many texts need not allocate for each argument). With
/// `newlines_as_spaces`, every newline is a space first, as firewalld does with the text of
/// an element.
pub fn split_args_into(
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::direct::test_entries::strings;

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
    pub(crate) const QUOTE_CORPUS: &[(&str, &str)] = &[
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
    fn quoting_matches_go_percent_q_for_our_comments() {
        assert_eq!(restore_quote("RETURN"), "RETURN");
        assert_eq!(restore_quote("a b"), "\"a b\"");
        assert_eq!(restore_quote("envoy's port"), "\"envoy's port\"");
        assert_eq!(restore_quote("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(restore_quote(""), "\"\"");
    }
}
