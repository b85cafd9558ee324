//! The subset of CometBFT's (v0.38, `libs/pubsub/query`) event query language that Weft
//! answers: WebSocket `subscribe` filters and the `query` of `tx_search` / `block_search`.
//!
//! # Grammar
//! ```text
//! query     = condition { "AND" condition }
//! condition = tag op operand | tag "EXISTS"
//! tag       = 1*( ALPHA | DIGIT | "." | "_" | "-" )      e.g. tm.event, tx.height
//! op        = "=" | "<" | "<=" | ">" | ">=" | "CONTAINS"
//! operand   = 'string' | "string" | number | "DATE" YYYY-MM-DD | "TIME" RFC-3339
//! number    = [ "-" ] digits [ "." digits ]                 e.g. 5, -1, 5.5
//! ```
//! Whitespace may separate any two tokens; keywords (`AND`, `CONTAINS`, `EXISTS`, `DATE`,
//! `TIME`) are upper case, as in CometBFT. Strings have no escapes: a string runs to the next
//! quote of the kind that opened it. `OR`, `NOT` and parentheses are not part of the language.
//! A query is at most [`MAX_QUERY_LEN`] bytes and [`MAX_CONDITIONS`] conditions, and is not
//! empty.
//!
//! # Semantics
//! An event is a map from composite keys (`tm.event`, `tx.hash`, `tx.height`, …) to values. A
//! condition holds when ANY value under its tag satisfies it (`EXISTS`: when the tag is a key
//! of the map), and the query matches when every condition holds; two conditions on one tag
//! may be satisfied by different values of it.
//! - A string operand: `=` is exact equality, `CONTAINS` a substring test; `<`, `<=`, `>` and
//!   `>=` never hold (CometBFT orders only numbers, dates and times).
//! - A number operand compares numerically, exactly (no floating point, any size), against
//!   each value read as a number in the same syntax; a value that is not one never matches.
//! - A `TIME` operand compares chronologically against values read as RFC 3339 times (any
//!   offset). A `DATE` operand compares against the calendar date written in a value that is an
//!   RFC 3339 time or a bare `YYYY-MM-DD`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The longest query text accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 512;

/// The most conditions one query may join with `AND`.
pub const MAX_CONDITIONS: usize = 16;

/// Words that are keywords and so cannot be tags.
const KEYWORDS: [&str; 5] = ["AND", "CONTAINS", "EXISTS", "DATE", "TIME"];

/// A parsed event query: conditions joined by `AND` (see the module docs for the language).
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    text: String,
    conditions: Vec<Condition>,
}

/// Why a query text is not a query. Offsets are bytes into the text as given.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum QueryError {
    /// The text is empty or only whitespace.
    #[error("empty query: give at least one condition, such as tm.event='NewBlock'")]
    Empty,
    /// The text is longer than [`MAX_QUERY_LEN`].
    #[error("query is {len} bytes, over the limit of {max} bytes")]
    TooLong {
        /// The text's length in bytes.
        len: usize,
        /// The limit, [`MAX_QUERY_LEN`].
        max: usize,
    },
    /// The query has more than [`MAX_CONDITIONS`] conditions.
    #[error("too many conditions: the one at byte {at} is over the limit of {max} conditions")]
    TooManyConditions {
        /// Where the first condition over the limit starts.
        at: usize,
        /// The limit, [`MAX_CONDITIONS`].
        max: usize,
    },
    /// A condition does not start with a tag.
    #[error("expected a tag (such as tm.event) at byte {at}, found {found}")]
    ExpectedTag {
        /// Where the tag should be.
        at: usize,
        /// What is there instead.
        found: String,
    },
    /// A tag is not followed by an operator.
    #[error(
        "expected an operator (=, <, <=, >, >=, CONTAINS or EXISTS) at byte {at}, found {found}"
    )]
    ExpectedOperator {
        /// Where the operator should be.
        at: usize,
        /// What is there instead.
        found: String,
    },
    /// An operator the language does not have, such as `!=`, `==` or `LIKE`.
    #[error(
        "unknown operator {found} at byte {at}: the operators are =, <, <=, >, >=, CONTAINS and EXISTS"
    )]
    UnknownOperator {
        /// Where the operator starts.
        at: usize,
        /// The operator as written.
        found: String,
    },
    /// An operator is not followed by an operand.
    #[error(
        "expected an operand after {op} at byte {at} (a quoted string, a number, \
         DATE YYYY-MM-DD or TIME followed by an RFC 3339 time), found {found}"
    )]
    ExpectedOperand {
        /// Where the operand should be.
        at: usize,
        /// The operator before it.
        op: String,
        /// What is there instead.
        found: String,
    },
    /// A string's opening quote has no closing quote.
    #[error("unterminated string: the quote at byte {at} is never closed")]
    UnterminatedString {
        /// Where the opening quote is.
        at: usize,
    },
    /// A number operand that is not `[-]digits[.digits]`.
    #[error("bad number {found} at byte {at}: expected digits with an optional - and .")]
    BadNumber {
        /// Where the number starts.
        at: usize,
        /// The number as written.
        found: String,
    },
    /// `DATE` is not followed by a valid `YYYY-MM-DD` date.
    #[error("bad date at byte {at}: expected YYYY-MM-DD after DATE, found {found}")]
    BadDate {
        /// Where the date should be.
        at: usize,
        /// What is there instead.
        found: String,
    },
    /// `TIME` is not followed by a valid RFC 3339 time.
    #[error(
        "bad time at byte {at}: expected an RFC 3339 time such as 2006-01-02T15:04:05Z after \
         TIME, found {found}"
    )]
    BadTime {
        /// Where the time should be.
        at: usize,
        /// What is there instead.
        found: String,
    },
    /// `CONTAINS` with an operand that is not a string.
    #[error("CONTAINS at byte {at} needs a quoted string operand")]
    ContainsNeedsString {
        /// Where `CONTAINS` is.
        at: usize,
    },
    /// `OR`, which CometBFT's language does not have.
    #[error("OR at byte {at} is not supported: conditions can only be joined with AND")]
    OrUnsupported {
        /// Where `OR` is.
        at: usize,
    },
    /// `NOT` or parentheses, which CometBFT's language does not have.
    #[error("unsupported {what} at byte {at}: a query is conditions joined with AND")]
    Unsupported {
        /// Where it is.
        at: usize,
        /// What it is: `NOT` or `parentheses`.
        what: &'static str,
    },
    /// The query ends with `AND`.
    #[error("the AND at byte {at} is not followed by a condition")]
    TrailingAnd {
        /// Where the `AND` is.
        at: usize,
    },
    /// Something other than `AND` follows a condition.
    #[error("expected AND or the end of the query at byte {at}, found {found}")]
    ExpectedAnd {
        /// Where `AND` should be.
        at: usize,
        /// What is there instead.
        found: String,
    },
    /// A keyword written in the wrong case, such as `and` or `contains`.
    #[error("{found} at byte {at}: keywords are upper case, write {keyword}")]
    KeywordCase {
        /// Where the word is.
        at: usize,
        /// The word as written.
        found: String,
        /// The keyword it resembles.
        keyword: &'static str,
    },
}

impl Query {
    /// Parses `text`, which must be at most [`MAX_QUERY_LEN`] bytes long and hold between one
    /// and [`MAX_CONDITIONS`] conditions.
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        if text.len() > MAX_QUERY_LEN {
            return Err(QueryError::TooLong {
                len: text.len(),
                max: MAX_QUERY_LEN,
            });
        }
        if text.trim().is_empty() {
            return Err(QueryError::Empty);
        }
        let mut parser = Parser { text, pos: 0 };
        let mut conditions = Vec::new();
        loop {
            parser.skip_ws();
            if conditions.len() == MAX_CONDITIONS {
                return Err(QueryError::TooManyConditions {
                    at: parser.pos,
                    max: MAX_CONDITIONS,
                });
            }
            conditions.push(parser.condition()?);
            parser.skip_ws();
            if parser.at_end() {
                break;
            }
            let at = parser.pos;
            let word = parser.word(is_tag_byte);
            if word == "AND" {
                parser.skip_ws();
                if parser.at_end() {
                    return Err(QueryError::TrailingAnd { at });
                }
            } else if word.eq_ignore_ascii_case("OR") {
                return Err(QueryError::OrUnsupported { at });
            } else if word.eq_ignore_ascii_case("AND") {
                return Err(parser.keyword_case(at, word, "AND"));
            } else {
                return Err(QueryError::ExpectedAnd {
                    at,
                    found: parser.found(at),
                });
            }
        }
        Ok(Query {
            text: text.to_owned(),
            conditions,
        })
    }

    /// The text as given to [`Query::parse`] (to echo the query back to subscribers).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether every condition holds for `events`, a map of composite keys (`tm.event`,
    /// `tx.height`, …) to their values; a condition holds when any value under its tag
    /// satisfies it.
    pub fn matches(&self, events: &BTreeMap<String, Vec<String>>) -> bool {
        self.conditions.iter().all(|c| c.matches(events))
    }

    /// The inclusive range of integer values that every condition on `tag` allows (for
    /// `tx.height>=5 AND tx.height<10`: 5..=9; `=` pins both ends); None when no condition names
    /// `tag` with a number; an empty range (lo > hi) when they contradict. Bounds from
    /// non-integers round inward. Saturates at 0 and `u64::MAX`.
    pub fn range(&self, tag: &str) -> Option<(u64, u64)> {
        let mut lo: i128 = 0;
        let mut hi: i128 = i128::from(u64::MAX);
        let mut named = false;
        for condition in self.conditions.iter().filter(|c| c.tag == tag) {
            let Test::Compare(cmp, Operand::Num(n)) = &condition.test else {
                continue;
            };
            named = true;
            match cmp {
                Cmp::Eq => {
                    lo = lo.max(n.ceil());
                    hi = hi.min(n.floor());
                }
                Cmp::Ge => lo = lo.max(n.ceil()),
                Cmp::Gt => lo = lo.max(n.floor() + 1),
                Cmp::Le => hi = hi.min(n.floor()),
                Cmp::Lt => hi = hi.min(n.ceil() - 1),
            }
        }
        if !named {
            return None;
        }
        let clamp = |v: i128| u64::try_from(v).unwrap_or(if v < 0 { 0 } else { u64::MAX });
        let (lo_sat, hi_sat) = (clamp(lo), clamp(hi));
        if lo > hi && lo_sat <= hi_sat {
            // Saturating would make a contradiction look satisfiable (`< 0`, `> u64::MAX`).
            return Some((1, 0));
        }
        Some((lo_sat, hi_sat))
    }

    /// The operand of the first `tag = 'string'` condition (for `tx.hash='AB…'`).
    pub fn equals(&self, tag: &str) -> Option<&str> {
        self.conditions
            .iter()
            .filter(|c| c.tag == tag)
            .find_map(|c| match &c.test {
                Test::Compare(Cmp::Eq, Operand::Str(s)) => Some(s.as_str()),
                _ => None,
            })
    }

    /// Every tag the query names, each once, in the order they first appear (to refuse tags
    /// a search cannot answer).
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.conditions
            .iter()
            .enumerate()
            .filter(|(i, c)| !self.conditions[..*i].iter().any(|p| p.tag == c.tag))
            .map(|(_, c)| c.tag.as_str())
    }
}

impl fmt::Display for Query {
    /// Writes the text as given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Query {
    type Err = QueryError;

    fn from_str(text: &str) -> Result<Query, QueryError> {
        Query::parse(text)
    }
}

/// One `tag op operand` or `tag EXISTS`.
#[derive(Clone, Debug, PartialEq)]
struct Condition {
    tag: String,
    test: Test,
}

/// What a condition asks of the values under its tag.
#[derive(Clone, Debug, PartialEq)]
enum Test {
    Exists,
    Contains(String),
    Compare(Cmp, Operand),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    /// Whether `value op operand` holds, given how `value` orders against `operand`.
    fn holds(self, order: Ordering) -> bool {
        match self {
            Cmp::Eq => order == Ordering::Equal,
            Cmp::Lt => order == Ordering::Less,
            Cmp::Le => order != Ordering::Greater,
            Cmp::Gt => order == Ordering::Greater,
            Cmp::Ge => order != Ordering::Less,
        }
    }
}

/// The right-hand side of a comparison.
#[derive(Clone, Debug, PartialEq)]
enum Operand {
    Str(String),
    Num(Decimal),
    Date(Date),
    Time(Timestamp),
}

impl Operand {
    /// How `value` orders against this operand, or None when it is not of the operand's kind.
    fn order(&self, value: &str) -> Option<Ordering> {
        match self {
            Operand::Str(s) => (value == s).then_some(Ordering::Equal),
            Operand::Num(n) => Decimal::parse(value).map(|v| v.cmp(n)),
            Operand::Date(d) => parse_date(value)
                .or_else(|| parse_time(value).map(|(date, _)| date))
                .map(|v| v.cmp(d)),
            Operand::Time(t) => parse_time(value).map(|(_, v)| v.cmp(t)),
        }
    }
}

impl Condition {
    fn matches(&self, events: &BTreeMap<String, Vec<String>>) -> bool {
        let Some(values) = events.get(&self.tag) else {
            return false;
        };
        match &self.test {
            Test::Exists => true,
            Test::Contains(s) => values.iter().any(|v| v.contains(s.as_str())),
            // CometBFT orders only numbers, dates and times.
            Test::Compare(cmp, Operand::Str(_)) if *cmp != Cmp::Eq => false,
            Test::Compare(cmp, operand) => values
                .iter()
                .any(|v| operand.order(v).is_some_and(|o| cmp.holds(o))),
        }
    }
}

/// An exact decimal number: sign, integer digits without leading zeros, fraction digits
/// without trailing zeros (zero is `("", "")` and never negative).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    int: String,
    frac: String,
}

/// One past `u64::MAX`: where [`Decimal::floor`] and [`Decimal::ceil`] saturate above.
const OVER_U64: i128 = u64::MAX as i128 + 1;

impl Decimal {
    /// Reads `[-]digits[.digits]`; either side of the point may be empty, not both.
    fn parse(s: &str) -> Option<Decimal> {
        let (negative, rest) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
        let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        Some(Decimal {
            negative: negative && !(int.is_empty() && frac.is_empty()),
            int: int.to_owned(),
            frac: frac.to_owned(),
        })
    }

    /// The integer part's magnitude, saturated at [`OVER_U64`].
    fn int_magnitude(&self) -> i128 {
        if self.int.is_empty() {
            0
        } else if self.int.len() > 20 {
            OVER_U64
        } else {
            self.int
                .parse::<i128>()
                .map_or(OVER_U64, |v| v.min(OVER_U64))
        }
    }

    /// The greatest integer at most this number, clamped to `-1..=OVER_U64`.
    fn floor(&self) -> i128 {
        let m = self.int_magnitude();
        let v = if self.negative {
            -(m + i128::from(!self.frac.is_empty()))
        } else {
            m
        };
        v.clamp(-1, OVER_U64)
    }

    /// The least integer at least this number, clamped to `-1..=OVER_U64`.
    fn ceil(&self) -> i128 {
        let m = self.int_magnitude();
        let v = if self.negative {
            -m
        } else {
            m + i128::from(!self.frac.is_empty())
        };
        v.clamp(-1, OVER_U64)
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(&other.int))
            .then_with(|| self.frac.cmp(&other.frac))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A calendar date; the field order makes the derived order chronological.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Date {
    year: u32,
    month: u32,
    day: u32,
}

/// An instant: seconds since the Unix epoch (UTC) and nanoseconds within the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timestamp {
    secs: i64,
    nanos: u32,
}

/// Reads `b` (non-empty, all ASCII digits) as a number.
fn digits(b: Option<&[u8]>) -> Option<u32> {
    let b = b?;
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

/// Reads exactly `YYYY-MM-DD`, a real calendar date.
fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let year = digits(b.get(0..4))?;
    let month = digits(b.get(5..7))?;
    let day = digits(b.get(8..10))?;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=month_days)
        .contains(&day)
        .then_some(Date { year, month, day })
}

/// Days from 1970-01-01 to `date` (proleptic Gregorian).
fn days_from_civil(date: Date) -> i64 {
    let (m, d) = (i64::from(date.month), i64::from(date.day));
    let y = i64::from(date.year) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Reads an RFC 3339 time, `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, into the date as written
/// and the instant. Fraction digits past nanoseconds are dropped.
fn parse_time(s: &str) -> Option<(Date, Timestamp)> {
    let b = s.as_bytes();
    let date = parse_date(s.get(0..10)?)?;
    if !matches!(b.get(10), Some(b'T' | b't'))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let hour = digits(b.get(11..13))?;
    let minute = digits(b.get(14..16))?;
    let second = digits(b.get(17..19))?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(d - b'0');
            }
            i += 1;
        }
        let kept = (i - start).min(9);
        if kept == 0 {
            return None;
        }
        nanos *= 10u32.pow(u32::try_from(9 - kept).ok()?);
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            let oh = digits(b.get(i + 1..i + 3))?;
            let om = digits(b.get(i + 4..i + 6))?;
            if b.get(i + 3) != Some(&b':') || oh > 23 || om > 59 {
                return None;
            }
            i += 6;
            let secs = i64::from(oh * 3600 + om * 60);
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    if i != b.len() {
        return None;
    }
    let secs =
        days_from_civil(date) * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset;
    Some((date, Timestamp { secs, nanos }))
}

/// Bytes a tag (and so a keyword) is made of.
fn is_tag_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Bytes an operator made of symbols is made of (so that `!=`, `==`, `=>` read as one).
fn is_op_byte(b: u8) -> bool {
    matches!(b, b'=' | b'<' | b'>' | b'!' | b'~')
}

/// A recursive-descent parser over the query text. `pos` is always on a char boundary: it
/// only stops before ASCII bytes or at the end.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// Takes the longest run of bytes that satisfy `class` (all ASCII) from here.
    fn word(&mut self, class: fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(class) {
            self.pos += 1;
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    /// Describes what is at byte `at`, for a message: the next few characters up to
    /// whitespace in backticks, or "the end of the query".
    fn found(&self, at: usize) -> String {
        let rest = self.text.get(at..).unwrap_or("");
        if rest.is_empty() {
            return "the end of the query".to_owned();
        }
        let snippet: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take(24)
            .collect();
        format!("`{snippet}`")
    }

    fn keyword_case(&self, at: usize, word: &str, keyword: &'static str) -> QueryError {
        QueryError::KeywordCase {
            at,
            found: format!("`{word}`"),
            keyword,
        }
    }

    /// `tag op operand` or `tag EXISTS`, starting at a non-space byte.
    fn condition(&mut self) -> Result<Condition, QueryError> {
        let at = self.pos;
        if matches!(self.peek(), Some(b'(' | b')')) {
            return Err(QueryError::Unsupported {
                at,
                what: "parentheses",
            });
        }
        let tag = self.word(is_tag_byte);
        if tag.is_empty() || KEYWORDS.contains(&tag) {
            return Err(QueryError::ExpectedTag {
                at,
                found: self.found(at),
            });
        }
        self.skip_ws();
        let op_at = self.pos;
        // `NOT` reads as a tag; when no operator follows, it was surely meant as negation.
        let no_operator = |found| {
            if tag == "NOT" {
                QueryError::Unsupported { at, what: "NOT" }
            } else {
                found
            }
        };
        let cmp = match self.peek() {
            None => {
                return Err(no_operator(QueryError::ExpectedOperator {
                    at: op_at,
                    found: self.found(op_at),
                }));
            }
            Some(b) if is_op_byte(b) => match self.word(is_op_byte) {
                "=" => Cmp::Eq,
                "<" => Cmp::Lt,
                "<=" => Cmp::Le,
                ">" => Cmp::Gt,
                ">=" => Cmp::Ge,
                other => {
                    return Err(QueryError::UnknownOperator {
                        at: op_at,
                        found: format!("`{other}`"),
                    });
                }
            },
            Some(b) if b.is_ascii_alphabetic() => {
                let word = self.word(is_tag_byte);
                match word {
                    "EXISTS" => {
                        return Ok(Condition {
                            tag: tag.to_owned(),
                            test: Test::Exists,
                        });
                    }
                    "CONTAINS" => {
                        let operand = self.operand("CONTAINS")?;
                        let Operand::Str(s) = operand else {
                            return Err(QueryError::ContainsNeedsString { at: op_at });
                        };
                        return Ok(Condition {
                            tag: tag.to_owned(),
                            test: Test::Contains(s),
                        });
                    }
                    _ => {
                        for keyword in ["EXISTS", "CONTAINS"] {
                            if word.eq_ignore_ascii_case(keyword) {
                                return Err(self.keyword_case(op_at, word, keyword));
                            }
                        }
                        return Err(no_operator(QueryError::UnknownOperator {
                            at: op_at,
                            found: format!("`{word}`"),
                        }));
                    }
                }
            }
            Some(_) => {
                return Err(no_operator(QueryError::ExpectedOperator {
                    at: op_at,
                    found: self.found(op_at),
                }));
            }
        };
        let op = self.text.get(op_at..self.pos).unwrap_or("").to_owned();
        let operand = self.operand(&op)?;
        Ok(Condition {
            tag: tag.to_owned(),
            test: Test::Compare(cmp, operand),
        })
    }

    /// The operand after the operator `op` (named in messages).
    fn operand(&mut self, op: &str) -> Result<Operand, QueryError> {
        self.skip_ws();
        let at = self.pos;
        let expected = |p: &Parser<'_>| QueryError::ExpectedOperand {
            at,
            op: format!("`{op}`"),
            found: p.found(at),
        };
        match self.peek() {
            Some(quote @ (b'\'' | b'"')) => {
                let body = at + 1;
                let len = self
                    .text
                    .as_bytes()
                    .get(body..)
                    .and_then(|rest| rest.iter().position(|&b| b == quote))
                    .ok_or(QueryError::UnterminatedString { at })?;
                self.pos = body + len + 1;
                Ok(Operand::Str(
                    self.text.get(body..body + len).unwrap_or("").to_owned(),
                ))
            }
            Some(b) if b.is_ascii_digit() || b == b'-' || b == b'.' => {
                let number = self.word(|b| b.is_ascii_digit() || b == b'-' || b == b'.');
                Decimal::parse(number)
                    .map(Operand::Num)
                    .ok_or_else(|| QueryError::BadNumber {
                        at,
                        found: format!("`{number}`"),
                    })
            }
            Some(b) if b.is_ascii_alphabetic() => {
                let word = self.word(|b| b.is_ascii_alphabetic());
                match word {
                    "DATE" => {
                        self.skip_ws();
                        let date_at = self.pos;
                        let date = self.word(|b| b.is_ascii_digit() || b == b'-');
                        parse_date(date)
                            .map(Operand::Date)
                            .ok_or_else(|| QueryError::BadDate {
                                at: date_at,
                                found: self.found(date_at),
                            })
                    }
                    "TIME" => {
                        self.skip_ws();
                        let time_at = self.pos;
                        let time = self.word(|b| {
                            b.is_ascii_digit()
                                || matches!(
                                    b,
                                    b'-' | b':' | b'.' | b'+' | b'T' | b't' | b'Z' | b'z'
                                )
                        });
                        parse_time(time)
                            .map(|(_, t)| Operand::Time(t))
                            .ok_or_else(|| QueryError::BadTime {
                                at: time_at,
                                found: self.found(time_at),
                            })
                    }
                    _ => {
                        for keyword in ["DATE", "TIME"] {
                            if word.eq_ignore_ascii_case(keyword) {
                                return Err(self.keyword_case(at, word, keyword));
                            }
                        }
                        Err(expected(self))
                    }
                }
            }
            _ => Err(expected(self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An event map from `key=value` pairs separated by `|` (the value runs to the `|`); a
    /// repeated key gathers several values.
    fn ev(pairs: &str) -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in pairs.split('|').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap();
            map.entry(k.to_owned()).or_default().push(v.to_owned());
        }
        map
    }

    /// What `range` answers.
    type Range = Option<(u64, u64)>;

    /// (query, events it matches, events it does not match), events as [`ev`] reads them.
    #[rustfmt::skip]
    const GOOD: &[(&str, &[&str], &[&str])] = &[
        ("tm.event='NewBlock'",
            &["tm.event=NewBlock", "tm.event=Tx|tm.event=NewBlock"],
            &["tm.event=Tx", "tm.event=newblock", "", "tx.event=NewBlock", "tm.event=NewBlock "]),
        ("tm.event = \"NewBlock\"",
            &["tm.event=NewBlock"],
            &["tm.event=NewBlockHeader"]),
        ("tm.event = 'Tx' AND tx.height > 5",
            &["tm.event=Tx|tx.height=6", "tm.event=Tx|tx.height=1000000000000000000000",
              "tm.event=Tx|tx.height=3|tx.height=9"],
            &["tm.event=Tx|tx.height=5", "tm.event=NewBlock|tx.height=6", "tm.event=Tx",
              "tm.event=Tx|tx.height=six", "tm.event=Tx|tx.height=6 ", "tm.event=Tx|tx.height=6abc"]),
        ("tx.hash='ABC'",
            &["tx.hash=ABC", "tx.hash=x|tx.hash=ABC"],
            &["tx.hash=abc", "tx.hash=ABCD", "tx.hash="]),
        ("block.height>=3 AND block.height<=7",
            &["block.height=3", "block.height=7", "block.height=5.5"],
            &["block.height=2", "block.height=8", "block.height=7.01"]),
        ("tx.height=5",
            &["tx.height=5", "tx.height=005", "tx.height=5.000"],
            &["tx.height=50", "tx.height=4.999", "tx.height=-5", "tx.height=+5"]),
        ("x<5.5",
            &["x=5", "x=5.49", "x=-100"],
            &["x=5.5", "x=6", "x=5.50001"]),
        ("x >= -1",
            &["x=-1", "x=0", "x=-0.5", "x=-0"],
            &["x=-1.5", "x=-2", "x=abc"]),
        ("x < -0.5",
            &["x=-1", "x=-0.51"],
            &["x=-0.5", "x=0", "x=-0.05"]),
        ("transfer.sender EXISTS",
            &["transfer.sender=", "transfer.sender=alice"],
            &["transfer.recipient=bob", ""]),
        ("tm.event='Tx' AND transfer.sender EXISTS AND transfer_amount-x EXISTS",
            &["tm.event=Tx|transfer.sender=a|transfer_amount-x=1"],
            &["tm.event=Tx|transfer.sender=a"]),
        ("message.action CONTAINS 'bank'",
            &["message.action=/cosmos.bank.v1.MsgSend", "message.action=bank"],
            &["message.action=Bank", "message.sender=bank"]),
        ("a CONTAINS''",
            &["a=", "a=x"],
            &["b=x"]),
        ("a < 'm'",
            &[],
            &["a=a", "a=m"]),
        ("a <= 'm' AND b = 'x'",
            &[],
            &["a=m|b=x"]),
        ("block.date >= DATE 2020-01-02",
            &["block.date=2020-01-02", "block.date=2020-01-02T00:00:00Z",
              "block.date=2020-01-02T23:00:00-05:00", "block.date=2021-01-01"],
            &["block.date=2020-01-01", "block.date=2020-01-01T23:59:59Z", "block.date=yesterday"]),
        ("block.date = DATE 2020-02-29",
            &["block.date=2020-02-29", "block.date=2020-02-29T12:00:00.5+01:00"],
            &["block.date=2020-03-01"]),
        ("block.time > TIME 2020-01-01T00:00:00Z",
            &["block.time=2020-01-01T00:00:00.000000001Z", "block.time=2019-12-31T23:30:00-01:00"],
            &["block.time=2020-01-01T00:00:00Z", "block.time=2020-01-01T00:30:00+01:00",
              "block.time=2020-01-02"]),
        ("block.time = TIME 2020-01-01T01:00:00+01:00",
            &["block.time=2020-01-01T00:00:00Z", "block.time=2020-01-01t00:00:00.000z"],
            &["block.time=2020-01-01T01:00:00Z"]),
        ("block.time<=TIME 2006-01-02T15:04:05.999999999999Z",
            &["block.time=2006-01-02T15:04:05.999999999Z"],
            &["block.time=2006-01-02T15:04:06Z"]),
        ("  \ttm.event\n=\r'Tx'   AND   tx.height   <   1000  ",
            &["tm.event=Tx|tx.height=999"],
            &["tm.event=Tx|tx.height=1000"]),
        ("a='x' AND a='y'",
            &["a=x|a=y"],
            &["a=x"]),
        ("a=' AND b=1 '",
            &["a= AND b=1 "],
            &["b=1"]),
        ("a=\"it's\" AND b='say \"hi\"'",
            &["a=it's|b=say \"hi\""],
            &["a=it's"]),
        ("OR='x'",
            &["OR=x"],
            &[]),
    ];

    #[test]
    fn good_queries_match_what_they_should() {
        for (text, yes, no) in GOOD {
            let query = Query::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(query.text(), *text);
            assert_eq!(query.to_string(), *text);
            assert_eq!(text.parse::<Query>().as_ref(), Ok(&query));
            for events in *yes {
                assert!(
                    query.matches(&ev(events)),
                    "{text:?} should match {events:?}"
                );
            }
            for events in *no {
                assert!(
                    !query.matches(&ev(events)),
                    "{text:?} should not match {events:?}"
                );
            }
        }
    }

    /// (query, its error message in full).
    #[rustfmt::skip]
    const BAD: &[(&str, &str)] = &[
        ("", "empty query: give at least one condition, such as tm.event='NewBlock'"),
        ("  \n\t ", "empty query: give at least one condition, such as tm.event='NewBlock'"),
        ("tm.event='NewBlock", "unterminated string: the quote at byte 9 is never closed"),
        ("tm.event=\"NewBlock'", "unterminated string: the quote at byte 9 is never closed"),
        ("tm.event=", "expected an operand after `=` at byte 9 (a quoted string, a number, \
            DATE YYYY-MM-DD or TIME followed by an RFC 3339 time), found the end of the query"),
        ("tm.event = AND a=1", "expected an operand after `=` at byte 11 (a quoted string, a \
            number, DATE YYYY-MM-DD or TIME followed by an RFC 3339 time), found `AND`"),
        ("tm.event=NewBlock", "expected an operand after `=` at byte 9 (a quoted string, a \
            number, DATE YYYY-MM-DD or TIME followed by an RFC 3339 time), found `NewBlock`"),
        ("a=1 AND b =", "expected an operand after `=` at byte 11 (a quoted string, a number, \
            DATE YYYY-MM-DD or TIME followed by an RFC 3339 time), found the end of the query"),
        ("tx.height != 5", "unknown operator `!=` at byte 10: the operators are =, <, <=, >, \
            >=, CONTAINS and EXISTS"),
        ("a == 'x'", "unknown operator `==` at byte 2: the operators are =, <, <=, >, >=, \
            CONTAINS and EXISTS"),
        ("a => 5", "unknown operator `=>` at byte 2: the operators are =, <, <=, >, >=, \
            CONTAINS and EXISTS"),
        ("a LIKE 'x'", "unknown operator `LIKE` at byte 2: the operators are =, <, <=, >, >=, \
            CONTAINS and EXISTS"),
        ("a 'x'", "expected an operator (=, <, <=, >, >=, CONTAINS or EXISTS) at byte 2, found \
            `'x'`"),
        ("a=1 AND b", "expected an operator (=, <, <=, >, >=, CONTAINS or EXISTS) at byte 9, \
            found the end of the query"),
        ("tm.event='Tx' AND", "the AND at byte 14 is not followed by a condition"),
        ("tm.event='Tx' AND   ", "the AND at byte 14 is not followed by a condition"),
        ("tm.event='Tx' OR tm.event='NewBlock'", "OR at byte 14 is not supported: conditions \
            can only be joined with AND"),
        ("a=1 or b=2", "OR at byte 4 is not supported: conditions can only be joined with AND"),
        ("a = 'x' AND NOT b='y'", "unsupported NOT at byte 12: a query is conditions joined \
            with AND"),
        ("NOT", "unsupported NOT at byte 0: a query is conditions joined with AND"),
        ("tm.event='Tx' AND (tx.height>5 OR tx.height<2)", "unsupported parentheses at byte \
            18: a query is conditions joined with AND"),
        ("a=1 and b=2", "`and` at byte 4: keywords are upper case, write AND"),
        ("a exists", "`exists` at byte 2: keywords are upper case, write EXISTS"),
        ("a contains 'x'", "`contains` at byte 2: keywords are upper case, write CONTAINS"),
        ("a > date 2020-01-01", "`date` at byte 4: keywords are upper case, write DATE"),
        ("a > Time 2020-01-01T00:00:00Z", "`Time` at byte 4: keywords are upper case, write \
            TIME"),
        ("a=1 b=2", "expected AND or the end of the query at byte 4, found `b=2`"),
        ("a=1 ANDb=2", "expected AND or the end of the query at byte 4, found `ANDb=2`"),
        ("a='x')", "expected AND or the end of the query at byte 5, found `)`"),
        ("AND a=1", "expected a tag (such as tm.event) at byte 0, found `AND`"),
        ("a=1 AND AND b=2", "expected a tag (such as tm.event) at byte 8, found `AND`"),
        ("='x'", "expected a tag (such as tm.event) at byte 0, found `='x'`"),
        ("\u{e9}='x'", "expected a tag (such as tm.event) at byte 0, found `\u{e9}='x'`"),
        ("a CONTAINS 5", "CONTAINS at byte 2 needs a quoted string operand"),
        ("a CONTAINS", "expected an operand after `CONTAINS` at byte 10 (a quoted string, a \
            number, DATE YYYY-MM-DD or TIME followed by an RFC 3339 time), found the end of the \
            query"),
        ("a > 5.5.5", "bad number `5.5.5` at byte 4: expected digits with an optional - and ."),
        ("a > --1", "bad number `--1` at byte 4: expected digits with an optional - and ."),
        ("a > 1-2", "bad number `1-2` at byte 4: expected digits with an optional - and ."),
        ("a > -", "bad number `-` at byte 4: expected digits with an optional - and ."),
        ("a > .", "bad number `.` at byte 4: expected digits with an optional - and ."),
        ("a > DATE 2020-13-01", "bad date at byte 9: expected YYYY-MM-DD after DATE, found \
            `2020-13-01`"),
        ("a > DATE 2021-02-29", "bad date at byte 9: expected YYYY-MM-DD after DATE, found \
            `2021-02-29`"),
        ("a > DATE", "bad date at byte 8: expected YYYY-MM-DD after DATE, found the end of the \
            query"),
        ("a > DATE 'x'", "bad date at byte 9: expected YYYY-MM-DD after DATE, found `'x'`"),
        ("a > TIME 2020-01-01", "bad time at byte 9: expected an RFC 3339 time such as \
            2006-01-02T15:04:05Z after TIME, found `2020-01-01`"),
        ("a > TIME 2020-01-01T25:00:00Z", "bad time at byte 9: expected an RFC 3339 time such \
            as 2006-01-02T15:04:05Z after TIME, found `2020-01-01T25:00:00Z`"),
        ("a > TIME 2020-01-01T00:00:00", "bad time at byte 9: expected an RFC 3339 time such \
            as 2006-01-02T15:04:05Z after TIME, found `2020-01-01T00:00:00`"),
    ];

    #[test]
    fn bad_queries_say_what_and_where() {
        for (text, message) in BAD {
            match Query::parse(text) {
                Ok(query) => panic!("{text:?} parsed: {query:?}"),
                Err(e) => assert_eq!(e.to_string(), *message, "{text:?}"),
            }
        }
        // The variants carry the offsets and limits too.
        assert_eq!(
            Query::parse("tm.event='Tx"),
            Err(QueryError::UnterminatedString { at: 9 })
        );
        assert_eq!(
            Query::parse("a=1 OR b=2"),
            Err(QueryError::OrUnsupported { at: 4 })
        );
        assert_eq!(
            Query::parse("a=1 AND "),
            Err(QueryError::TrailingAnd { at: 4 })
        );
        assert_eq!(Query::parse(" \t"), Err(QueryError::Empty));
        let long = format!("a='{}'", "x".repeat(MAX_QUERY_LEN));
        assert_eq!(
            Query::parse(&long),
            Err(QueryError::TooLong {
                len: MAX_QUERY_LEN + 4,
                max: MAX_QUERY_LEN
            })
        );
        assert_eq!(
            QueryError::TooLong { len: 516, max: 512 }.to_string(),
            "query is 516 bytes, over the limit of 512 bytes"
        );
        let many = vec!["a=1"; MAX_CONDITIONS + 1].join(" AND ");
        let over = QueryError::TooManyConditions {
            at: 8 * MAX_CONDITIONS,
            max: MAX_CONDITIONS,
        };
        assert_eq!(Query::parse(&many), Err(over.clone()));
        assert_eq!(
            over.to_string(),
            "too many conditions: the one at byte 128 is over the limit of 16 conditions"
        );
    }

    #[test]
    fn limits_are_inclusive() {
        let most = vec!["a=1"; MAX_CONDITIONS].join(" AND ");
        assert!(Query::parse(&most).is_ok());
        let longest = format!("a='{}'", "x".repeat(MAX_QUERY_LEN - 4));
        assert_eq!(longest.len(), MAX_QUERY_LEN);
        assert!(Query::parse(&longest).is_ok());
    }

    const MAX: u64 = u64::MAX;

    /// (query, tag, what `range` answers for it).
    #[rustfmt::skip]
    const RANGES: &[(&str, &str, Range)] = &[
        ("tx.height>=5 AND tx.height<10", "tx.height", Some((5, 9))),
        ("tx.height=7", "tx.height", Some((7, 7))),
        ("tx.height>5", "tx.height", Some((6, MAX))),
        ("tx.height<=5", "tx.height", Some((0, 5))),
        ("tx.height<5", "tx.height", Some((0, 4))),
        ("tm.event='Tx' AND tx.height>=3 AND tx.height<=7", "tx.height", Some((3, 7))),
        ("tx.height>=3 AND tx.height<=7", "block.height", None),
        ("tx.height EXISTS", "tx.height", None),
        ("tx.height='5'", "tx.height", None),
        ("tx.height > DATE 2020-01-01", "tx.height", None),
        ("tx.height>5.5", "tx.height", Some((6, MAX))),
        ("tx.height>=5.5", "tx.height", Some((6, MAX))),
        ("tx.height<5.5", "tx.height", Some((0, 5))),
        ("tx.height<=5.5", "tx.height", Some((0, 5))),
        ("tx.height>=4.5 AND tx.height<=5.5", "tx.height", Some((5, 5))),
        ("tx.height>-1", "tx.height", Some((0, MAX))),
        ("tx.height>=-7.5 AND tx.height<2", "tx.height", Some((0, 1))),
        ("tx.height<=18446744073709551615", "tx.height", Some((0, MAX))),
        ("tx.height<=99999999999999999999999999", "tx.height", Some((0, MAX))),
        ("tx.height>=18446744073709551615", "tx.height", Some((MAX, MAX))),
        ("tx.height>=5 AND tx.height>=8 AND tx.height<20 AND tx.height<=12", "tx.height", Some((8, 12))),
    ];

    #[test]
    fn range_gathers_numeric_bounds() {
        for (text, tag, want) in RANGES {
            let query = Query::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(query.range(tag), *want, "{text:?} on {tag}");
        }
        let empty = [
            "tx.height>5 AND tx.height<3",
            "tx.height=5 AND tx.height=6",
            "tx.height>5 AND tx.height<=5",
            "tx.height=5.5",
            "tx.height>5 AND tx.height<6",
            "tx.height<0",
            "tx.height<=-1",
            "tx.height=-3",
            "tx.height>18446744073709551615",
            "tx.height>=99999999999999999999999999",
            "tx.height=99999999999999999999999999",
        ];
        for text in empty {
            let query = Query::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let range = query.range("tx.height");
            assert!(range.is_some_and(|(lo, hi)| lo > hi), "{text:?}: {range:?}");
        }
    }

    #[test]
    fn equals_and_tags() {
        let query = Query::parse(
            "tx.height>5 AND tx.hash = 'AB12' AND tx.hash='CD' AND tm.event EXISTS AND tx.height<9",
        )
        .unwrap();
        assert_eq!(query.equals("tx.hash"), Some("AB12"));
        assert_eq!(query.equals("tx.height"), None);
        assert_eq!(query.equals("tm.event"), None);
        assert_eq!(query.equals("block.height"), None);
        assert_eq!(
            query.tags().collect::<Vec<_>>(),
            ["tx.height", "tx.hash", "tm.event"]
        );
        let query = Query::parse("tx.hash CONTAINS 'AB' AND tx.hash = 5").unwrap();
        assert_eq!(query.equals("tx.hash"), None);
    }

    #[test]
    fn decimals_order_exactly() {
        let sorted = [
            "-100",
            "-10.5",
            "-10",
            "-1",
            "-0.5",
            "-0.05",
            "0",
            "0.05",
            "0.5",
            "1",
            "1.5",
            "10",
            "18446744073709551615",
            "18446744073709551616",
            "100000000000000000000000000000",
        ];
        let parsed: Vec<Decimal> = sorted.iter().map(|s| Decimal::parse(s).unwrap()).collect();
        for (i, a) in parsed.iter().enumerate() {
            for (j, b) in parsed.iter().enumerate() {
                assert_eq!(a.cmp(b), i.cmp(&j), "{} vs {}", sorted[i], sorted[j]);
            }
        }
        assert_eq!(Decimal::parse("-0.000"), Decimal::parse("0"));
        assert_eq!(Decimal::parse(".5"), Decimal::parse("0.50"));
        assert_eq!(Decimal::parse("5."), Decimal::parse("005"));
        for bad in [
            "", "-", ".", "-.", "1e5", "+1", " 1", "1 ", "1.2.3", "0x10", "1-",
        ] {
            assert_eq!(Decimal::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn times_are_instants() {
        let at = |s: &str| parse_time(s).map(|(_, t)| (t.secs, t.nanos));
        assert_eq!(at("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(at("2006-01-02T15:04:05Z"), Some((1_136_214_245, 0)));
        assert_eq!(at("2006-01-02T08:04:05-07:00"), Some((1_136_214_245, 0)));
        assert_eq!(
            at("2000-03-01T00:00:00.25Z"),
            Some((951_868_800, 250_000_000))
        );
        assert_eq!(at("1969-12-31T23:59:59Z"), Some((-1, 0)));
        for bad in [
            "2006-01-02 15:04:05Z",
            "2006-01-02T15:04:05",
            "2006-01-02T15:04:60Z",
            "2006-01-02T15:04:05.Z",
            "2006-01-02T15:04:05+0700",
            "2006-01-02T15:04:05Zjunk",
            "2006-1-02T15:04:05Z",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }

    /// Pieces of queries, so that random text reaches past the first token.
    #[rustfmt::skip]
    const PIECES: &[&str] = &[
        "tm.event", "tx.height", "a", "=", "<", "<=", ">", ">=", "!=", "'", "\"", "'Tx'", "AND",
        "OR", "and", "NOT", " ", "  ", "\t", "5", "-1", "5.5", ".", "-", "DATE", "TIME",
        "2006-01-02", "2006-01-02T15:04:05Z", "T", "+07:00", "CONTAINS", "EXISTS", "(", ")", "é",
        "\u{0}",
    ];

    /// Parts of conditions: valid ones, then broken ones.
    #[rustfmt::skip]
    const TAGS: (&[&str], &[&str]) = (
        &["tm.event", "tx.height", "tx.hash", "block.height", "a-b_c.9"],
        &["NOT", "AND", "", "(a"],
    );
    #[rustfmt::skip]
    const OPS: (&[&str], &[&str]) = (
        &["=", " = ", "<", "<=", ">", ">=", " CONTAINS ", " EXISTS"],
        &["!=", " contains ", "", "=="],
    );
    #[rustfmt::skip]
    const OPERANDS: (&[&str], &[&str]) = (
        &["'Tx'", "\"NewBlock\"", "''", "5", "-1", "5.5", ".5", "99999999999999999999999",
          "DATE 2020-01-01", "TIME 2020-01-01T00:00:00Z", "TIME 2020-01-01T00:00:00.5+01:00"],
        &["'open", "-", "DATE 2020-02-30", "TIME 2020", "NewBlock", ""],
    );
    #[rustfmt::skip]
    const JOINS: (&[&str], &[&str]) = (
        &[" AND ", "\tAND\n", "  AND  "],
        &[" OR ", " and ", " ", "", "AND"],
    );

    /// Mostly a valid part, now and then a broken one.
    fn part(
        (good, bad): (&'static [&'static str], &'static [&'static str]),
    ) -> BoxedStrategy<&'static str> {
        prop_oneof![40 => proptest::sample::select(good), 1 => proptest::sample::select(bad)]
            .boxed()
    }

    /// Event values to match the generated queries against.
    #[rustfmt::skip]
    const VALUES: &[&str] = &[
        "Tx", "NewBlock", "", "5", "-1", "5.5", "6", "2020-01-01", "2020-01-01T00:00:00Z",
        "2019-12-31T23:59:59.5-01:00", "x",
    ];

    /// Checks what must hold of any text: parsing does not panic, and a query that parses
    /// echoes its text, parses again to itself and can be matched and asked about.
    fn check_any_text(text: &str, values: &[&str]) -> Result<(), TestCaseError> {
        match Query::parse(text) {
            Ok(query) => {
                prop_assert_eq!(query.text(), text);
                prop_assert_eq!(Query::parse(query.text()), Ok(query.clone()));
                prop_assert!(!query.conditions.is_empty());
                prop_assert!(query.conditions.len() <= MAX_CONDITIONS);
                let mut events = BTreeMap::new();
                for tag in query.tags() {
                    let values = values.iter().map(|v| (*v).to_owned()).collect();
                    events.insert(tag.to_owned(), values);
                }
                let _ = query.matches(&events);
                let _ = query.range("tx.height");
                let _ = query.equals("tm.event");
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn parse_never_panics(chars in proptest::collection::vec(any::<char>(), 0..600)) {
            let mut text: String = chars.into_iter().collect();
            while text.len() > 600 {
                text.pop();
            }
            check_any_text(&text, &["1"])?;
        }

        #[test]
        fn parse_never_panics_on_token_soup(
            pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..120),
            values in proptest::collection::vec(proptest::sample::select(PIECES), 0..4),
        ) {
            check_any_text(&pieces.concat(), &values)?;
        }

        #[test]
        fn parse_never_panics_on_near_queries(
            conditions in proptest::collection::vec(
                (
                    part(TAGS),
                    part(OPS),
                    part(OPERANDS),
                    part(JOINS),
                ),
                1..20,
            ),
            values in proptest::collection::vec(proptest::sample::select(VALUES), 0..4),
        ) {
            let mut text = String::new();
            for (i, (tag, op, operand, join)) in conditions.iter().enumerate() {
                if i > 0 {
                    text.push_str(join);
                }
                text.push_str(tag);
                text.push_str(op);
                if op.contains("CONTAINS") && !operand.starts_with(['\'', '"']) {
                    text.push_str("'x'");
                } else if !op.contains("EXISTS") {
                    text.push_str(operand);
                }
            }
            check_any_text(&text, &values)?;
        }

        /// range() agrees with matches() on every integer it could be asked about.
        #[test]
        fn range_agrees_with_matches(
            conds in proptest::collection::vec(
                (
                    proptest::sample::select(&["=", "<", "<=", ">", ">="][..]),
                    -5i32..45,
                    any::<bool>(),
                ),
                1..4,
            ),
        ) {
            let text = conds
                .iter()
                .map(|(op, n, half)| {
                    if *half { format!("h{op}{n}.5") } else { format!("h{op}{n}") }
                })
                .collect::<Vec<_>>()
                .join(" AND ");
            let query = Query::parse(&text).unwrap();
            let (lo, hi) = query.range("h").unwrap();
            for x in 0u64..50 {
                let hit = query.matches(&ev(&format!("h={x}")));
                prop_assert_eq!(hit, lo <= x && x <= hi, "{} at {}: {:?}", text, x, (lo, hi));
            }
        }
    }
}
