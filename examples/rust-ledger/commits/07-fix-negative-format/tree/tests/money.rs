use ledger::money::{Money, ParseError};

#[test]
fn parses_whole_amounts() {
    assert_eq!(Money::parse("12"), Ok(Money(1200)));
}

#[test]
fn parses_cents() {
    assert_eq!(Money::parse("3.07"), Ok(Money(307)));
}

#[test]
fn parses_negative() {
    assert_eq!(Money::parse("-2.50"), Ok(Money(-250)));
}

#[test]
fn rejects_empty_and_garbage() {
    assert_eq!(Money::parse("  "), Err(ParseError::Empty));
    assert!(Money::parse("1.234").is_err());
    assert!(Money::parse("abc").is_err());
}

#[test]
fn formats_two_decimals() {
    assert_eq!(Money(1205).to_string(), "12.05");
}

#[test]
fn split_sums_to_whole() {
    let parts = Money(1000).split(3);
    assert_eq!(parts, vec![Money(334), Money(333), Money(333)]);
    assert_eq!(parts.iter().map(|m| m.cents()).sum::<i64>(), 1000);
}

#[test]
fn parses_one_decimal_as_tens_of_cents() {
    assert_eq!(Money::parse("12.5"), Ok(Money(1250)));
}

#[test]
fn formats_negative_amounts() {
    assert_eq!(Money(-50).to_string(), "-0.50");
    assert_eq!(Money(-1234).to_string(), "-12.34");
}
