use ledger::csv::{parse, parse_line};
use ledger::money::Money;

#[test]
fn parses_a_line() {
    let r = parse_line("2024-03-01, coffee ,-3.20", 1).unwrap();
    assert_eq!(r.date, "2024-03-01");
    assert_eq!(r.description, "coffee");
    assert_eq!(r.amount, Money(-320));
}

#[test]
fn rejects_wrong_field_count() {
    let e = parse_line("2024-03-01,coffee", 7).unwrap_err();
    assert_eq!(e.line, 7);
}

#[test]
fn rejects_bad_date() {
    assert!(parse_line("03/01/2024,coffee,1", 1).is_err());
}

#[test]
fn skips_header() {
    let rows = parse("date,description,amount\n2024-01-02,rent,-500\n").unwrap();
    assert_eq!(rows.len(), 1);
}

#[test]
fn reports_line_of_bad_amount() {
    let e = parse("date,description,amount\n2024-01-02,rent,-500\n2024-01-03,x,abc\n").unwrap_err();
    assert_eq!(e.line, 3);
}

#[test]
fn skips_blank_and_comment_lines() {
    let rows = parse("# exported\n2024-01-02,rent,-500\n\n2024-01-03,pay,900\n").unwrap();
    assert_eq!(rows.len(), 2);
}
