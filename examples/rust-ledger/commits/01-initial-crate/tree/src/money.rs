//! Amounts of money as integer cents.

use std::fmt;

/// An amount of money in cents (negative for debits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Money(pub i64);

/// Why a string is not an amount.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    Invalid(String),
}

impl Money {
    pub fn from_cents(c: i64) -> Money {
        Money(c)
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    /// Parses `12`, `12.5`, `12.50`, `-3.07`.
    pub fn parse(s: &str) -> Result<Money, ParseError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = match digits.split_once('.') {
            Some((w, f)) => (w, f),
            None => (digits, ""),
        };
        if whole.is_empty() || frac.len() > 2 {
            return Err(ParseError::Invalid(s.to_string()));
        }
        let whole: i64 = whole.parse().map_err(|_| ParseError::Invalid(s.to_string()))?;
        let frac_cents: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| ParseError::Invalid(s.to_string()))?
        };
        let cents = whole * 100 + frac_cents;
        Ok(Money(if neg { -cents } else { cents }))
    }

    pub fn add(self, other: Money) -> Money {
        Money(self.0 + other.0)
    }

    pub fn sub(self, other: Money) -> Money {
        Money(self.0 - other.0)
    }

    /// Splits into `n` parts that differ by at most one cent and sum to the whole.
    pub fn split(self, n: usize) -> Vec<Money> {
        assert!(n > 0, "split into zero parts");
        let n64 = n as i64;
        let base = self.0 / n64;
        let extra = self.0 % n64;
        (0..n64).map(|i| Money(base + if i < extra { 1 } else { 0 })).collect()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}
