use ledger::csv::parse;
use ledger::money::Money;
use ledger::report::{average, by_month, summarize};

const DATA: &str = "date,description,amount\n2024-01-02,rent,-500\n2024-01-15,salary,2000\n2024-02-01,rent,-500\n2024-02-10,book,-25.50\n";

#[test]
fn summary_totals() {
    let rows = parse(DATA).unwrap();
    let s = summarize(&rows);
    assert_eq!(s.income, Money(200_000));
    assert_eq!(s.expenses, Money(-102_550));
    assert_eq!(s.net, Money(97_450));
    assert_eq!(s.count, 4);
}

#[test]
fn months_in_order() {
    let rows = parse(DATA).unwrap();
    let m = by_month(&rows);
    let keys: Vec<&String> = m.keys().collect();
    assert_eq!(keys, vec!["2024-01", "2024-02"]);
    assert_eq!(m["2024-02"], Money(-52_550));
}

#[test]
fn average_of_nothing() {
    assert_eq!(average(&[]), None);
}

#[test]
fn average_exact() {
    let rows = parse("2024-01-01,a,1.00\n2024-01-02,b,3.00\n").unwrap();
    assert_eq!(average(&rows), Some(Money(200)));
}

#[test]
fn average_rounds_half_away_from_zero() {
    let rows = parse("2024-01-01,a,0.01\n2024-01-02,b,0.02\n").unwrap();
    assert_eq!(average(&rows), Some(Money(2)));
    let neg = parse("2024-01-01,a,-0.01\n2024-01-02,b,-0.02\n").unwrap();
    assert_eq!(average(&neg), Some(Money(-2)));
}
