//! Turning raw console bytes into text fit for an error message.

/// Removes ANSI/VT100 escape sequences (CSI `ESC [ … final`, OSC
/// `ESC ] … BEL|ST`, DCS/PM/APC strings, two-byte escapes), carriage
/// returns and other C0 control characters except `\n` and `\t`.
///
/// ```
/// assert_eq!(xlfs_boot::strip_ansi("\x1b[2J\x1b[0mSeaBIOS\r\nok\x07"), "SeaBIOS\nok");
/// ```
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    // Parameters and intermediates, then one final byte.
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') | Some('P') | Some('X') | Some('^') | Some('_') => {
                    // A string terminated by BEL or ST (ESC \).
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            if chars.peek() == Some(&'\\') {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                Some(c) if ('\x20'..='\x2f').contains(&c) => {
                    // ESC, intermediates, final (e.g. `ESC ( B`).
                    for c in chars.by_ref() {
                        if !('\x20'..='\x2f').contains(&c) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The last `n` lines of `bytes` (lossily decoded, cleaned with
/// [`strip_ansi`]), joined with `\n`. A trailing unterminated line (a prompt)
/// counts as a line; trailing blank lines are dropped.
pub fn tail_lines(bytes: &[u8], n: usize) -> String {
    // Only the end of the buffer matters; 256 bytes a line is plenty.
    let window = n.saturating_mul(256).max(4096);
    let start = bytes.len().saturating_sub(window);
    let text = strip_ansi(&String::from_utf8_lossy(&bytes[start..]));
    let lines: Vec<&str> = text.trim_end_matches(['\n', ' ', '\t']).lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_escapes_and_cr() {
        assert_eq!(
            strip_ansi("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (v1)\r\nBooting..XLFS\r\n> "),
            "SeaBIOS (v1)\nBooting..XLFS\n> "
        );
        assert_eq!(strip_ansi("a\x1b]0;title\x07b\x1b]2;t\x1b\\c"), "abc");
        assert_eq!(strip_ansi("x\x1b(By\x1b7z\x08\x00"), "xyz");
        assert_eq!(strip_ansi("tab\there ünïcode"), "tab\there ünïcode");
        assert_eq!(strip_ansi("\x1b[1;32mgreen\x1b[m"), "green");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut b = Vec::new();
        for i in 0..100 {
            b.extend_from_slice(format!("line {i}\r\n").as_bytes());
        }
        b.extend_from_slice(b"login: ");
        let t = tail_lines(&b, 3);
        assert_eq!(t, "line 98\nline 99\nlogin:");
        assert_eq!(tail_lines(b"", 30), "");
        assert_eq!(tail_lines(b"one\n\n\n", 30), "one");
    }
}
