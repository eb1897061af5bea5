//! The small SQL dialect layer: one query text for three backends.
//!
//! Queries use PostgreSQL's numbered placeholders (`$1`, `$2`, ...), each number used once and in
//! increasing order, so that rewriting them to positional `?` keeps the binding order (MySQL
//! knows only `?`; SQLite binds `?` by position, and `$N` by a name lookup per parameter).
//! Everything else in a query must be portable SQL (see the storage ADR for the rules).
//! [`placeholders`] and [`value_rows`] number the placeholders of queries built at run time.

/// Rewrites `$N` placeholders to `?`, leaving quoted literals and identifiers untouched.
///
/// Placeholders must appear in increasing order, each once; a debug assertion checks this so a
/// query that would bind in the wrong order on MySQL fails loudly in tests on every backend.
pub fn to_positional(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut chars = query.chars().peekable();
    let mut quote: Option<char> = None;
    let mut expected = 1u32;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' || c == '`' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut number = 0u32;
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    number = number * 10 + d;
                    chars.next();
                }
                debug_assert_eq!(
                    number, expected,
                    "placeholders must be used once each, in order: {query}"
                );
                expected = number + 1;
                out.push('?');
            }
            None => out.push(c),
        }
    }
    out
}

/// `count` placeholders numbered from `first`, comma-separated (`$3, $4, $5`): an `IN (...)` list.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// The `VALUES` rows of a multi-row insert: `rows` groups of `columns` placeholders numbered from
/// `$1`, in order (`($1, $2), ($3, $4)`), so each value is bound row by row, column by column.
pub fn value_rows(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| format!("({})", placeholders(row * columns + 1, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `rows` split into chunks whose lengths are powers of two, largest first, none longer than
/// `max` (37 rows, at most 64: 32, 4 and 1), for multi-row statements.
///
/// A statement's text depends on its number of rows, and every connection prepares and keeps
/// each text it runs: with one text per row count, a pool of 16 SQLite connections kept
/// hundreds of large prepared statements. Powers of two keep it to `log2(max) + 1` texts, for at
/// most that many statements per call.
pub fn power_of_two_chunks<T>(rows: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let max = max.max(1);
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let fits = rest.len().min(max);
        let length = 1 << (usize::BITS - 1 - fits.leading_zeros());
        let (chunk, after) = rest.split_at(length);
        rest = after;
        Some(chunk)
    })
}

/// The length an `IN (...)` list of `count` values is padded to (by repeating a value, which
/// changes nothing): the next power of two, for the reason [`power_of_two_chunks`] gives.
pub fn padded_len(count: usize) -> usize {
    count.max(1).next_power_of_two()
}

/// The escape character used by [`like_contains`]; queries write `LIKE $1 ESCAPE '!'`.
///
/// `!` rather than a backslash because MySQL and PostgreSQL disagree on backslashes in literals.
pub const LIKE_ESCAPE: char = '!';

/// A case-insensitive "contains" pattern: lower-cased, with `%`, `_` and `!` escaped.
///
/// Compare it against `LOWER(column)` with `ESCAPE '!'`.
pub fn like_contains(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.to_lowercase().chars() {
        if matches!(c, '%' | '_' | LIKE_ESCAPE) {
            pattern.push(LIKE_ESCAPE);
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_into_power_of_two_chunks_largest_first() {
        let lengths = |count: usize, max| -> Vec<usize> {
            let rows: Vec<usize> = (0..count).collect();
            let chunks: Vec<&[usize]> = power_of_two_chunks(&rows, max).collect();
            assert_eq!(chunks.concat(), rows, "every row once, in order");
            chunks.iter().map(|chunk| chunk.len()).collect()
        };
        assert_eq!(lengths(0, 64), Vec::<usize>::new());
        assert_eq!(lengths(1, 64), vec![1]);
        assert_eq!(lengths(37, 64), vec![32, 4, 1]);
        assert_eq!(lengths(64, 64), vec![64]);
        assert_eq!(lengths(150, 64), vec![64, 64, 16, 4, 2]);
        // A bound that is not a power of two is rounded down.
        assert_eq!(lengths(100, 100), vec![64, 32, 4]);
        assert_eq!(lengths(3, 0), vec![1, 1, 1]);
    }

    #[test]
    fn in_lists_pad_to_the_next_power_of_two() {
        let padded: Vec<usize> = [0, 1, 2, 3, 5, 64, 65].into_iter().map(padded_len).collect();
        assert_eq!(padded, vec![1, 1, 2, 4, 8, 64, 128]);
    }

    #[test]
    fn placeholder_lists_and_value_rows_are_numbered_in_order() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(placeholders(1, 0), "");
        assert_eq!(value_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(value_rows(1, 1), "($1)");
        // In order and once each: the MySQL rewrite accepts them.
        assert_eq!(to_positional(&value_rows(2, 2)), "(?, ?), (?, ?)");
    }

    #[test]
    fn numbered_placeholders_become_positional() {
        assert_eq!(
            to_positional("SELECT a FROM t WHERE b = $1 AND c > $2 LIMIT $3"),
            "SELECT a FROM t WHERE b = ? AND c > ? LIMIT ?"
        );
    }

    #[test]
    fn dollars_inside_literals_are_left_alone() {
        assert_eq!(
            to_positional("SELECT '$1', \"$x\" FROM t WHERE a = $1"),
            "SELECT '$1', \"$x\" FROM t WHERE a = ?"
        );
    }

    #[test]
    fn two_digit_placeholders_are_rewritten_whole() {
        let columns: Vec<String> = (1..=12).map(|n| format!("${n}")).collect();
        let rewritten = to_positional(&format!("VALUES ({})", columns.join(", ")));
        assert_eq!(rewritten, format!("VALUES ({})", ["?"; 12].join(", ")));
    }

    #[test]
    #[should_panic(expected = "in order")]
    fn placeholders_out_of_order_are_refused() {
        to_positional("SELECT $2, $1");
    }

    #[test]
    fn like_patterns_escape_wildcards_and_fold_case() {
        assert_eq!(like_contains("Ab%_!c"), "%ab!%!_!!c%");
    }
}
