//! Importing entries from CSV lines `date,description,amount`.

use crate::money::Money;

/// One imported row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub date: String,
    pub description: String,
    pub amount: Money,
}

/// Why a line was refused, with its 1-based line number.
#[derive(Debug, PartialEq, Eq)]
pub struct CsvError {
    pub line: usize,
    pub message: String,
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Parses one line.
pub fn parse_line(line: &str, number: usize) -> Result<Row, CsvError> {
    let err = |message: String| CsvError { line: number, message };
    let fields: Vec<&str> = line.split(',').collect();
    if fields.len() != 3 {
        return Err(err(format!("expected 3 fields, found {}", fields.len())));
    }
    let date = fields[0].trim();
    if !is_date(date) {
        return Err(err(format!("bad date `{date}`")));
    }
    let amount = Money::parse(fields[2]).map_err(|e| err(format!("bad amount: {e:?}")))?;
    Ok(Row {
        date: date.to_string(),
        description: fields[1].trim().to_string(),
        amount,
    })
}

/// Parses a whole document; a header line starting with `date` is skipped.
pub fn parse(text: &str) -> Result<Vec<Row>, CsvError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 && line.starts_with("date") {
            continue;
        }
        rows.push(parse_line(line, i + 1)?);
    }
    Ok(rows)
}
