//! Summaries of imported rows.

use crate::csv::Row;
use crate::money::Money;
use std::collections::BTreeMap;

/// Totals of a set of rows.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub income: Money,
    pub expenses: Money,
    pub net: Money,
    pub count: usize,
}

pub fn summarize(rows: &[Row]) -> Summary {
    let mut income = Money(0);
    let mut expenses = Money(0);
    for r in rows {
        if r.amount.cents() >= 0 {
            income = income.add(r.amount);
        } else {
            expenses = expenses.add(r.amount);
        }
    }
    Summary {
        income,
        expenses,
        net: income.add(expenses),
        count: rows.len(),
    }
}

/// Net amount per month (`YYYY-MM`), months in order.
pub fn by_month(rows: &[Row]) -> BTreeMap<String, Money> {
    let mut out: BTreeMap<String, Money> = BTreeMap::new();
    for r in rows {
        let month = r.date[..7].to_string();
        let e = out.entry(month).or_default();
        *e = e.add(r.amount);
    }
    out
}

/// Average amount per row, rounded to the nearest cent (halves away from zero).
pub fn average(rows: &[Row]) -> Option<Money> {
    if rows.is_empty() {
        return None;
    }
    let total: i64 = rows.iter().map(|r| r.amount.cents()).sum();
    let n = rows.len() as i64;
    let rounded = (2 * total + n * total.signum()) / (2 * n);
    Some(Money(rounded))
}
