use ledger::account::{Account, AccountError};
use ledger::money::Money;

#[test]
fn deposits_add_up() {
    let mut a = Account::new("cash");
    a.deposit("salary", Money(10_000)).unwrap();
    a.deposit("gift", Money(2_500)).unwrap();
    assert_eq!(a.balance(), Money(12_500));
    assert_eq!(a.entries().len(), 2);
}

#[test]
fn rejects_non_positive_amounts() {
    let mut a = Account::new("cash");
    assert_eq!(a.deposit("x", Money(0)), Err(AccountError::NonPositive(Money(0))));
    assert!(a.withdraw("x", Money(-5)).is_err());
}

#[test]
fn withdraw_within_balance() {
    let mut a = Account::new("cash");
    a.deposit("in", Money(500)).unwrap();
    assert_eq!(a.withdraw("out", Money(200)), Ok(Money(300)));
}

#[test]
fn refuses_overdraft_by_default() {
    let mut a = Account::new("cash");
    a.deposit("in", Money(500)).unwrap();
    assert!(matches!(a.withdraw("out", Money(600)), Err(AccountError::Overdrawn { .. })));
    assert_eq!(a.balance(), Money(500));
}

#[test]
fn overdraft_limit_allows_negative_balance() {
    let mut a = Account::new("card").with_overdraft(Money(1_000));
    assert_eq!(a.withdraw("rent", Money(800)), Ok(Money(-800)));
}

#[test]
fn transfer_moves_money() {
    let mut a = Account::new("a");
    let mut b = Account::new("b");
    a.deposit("in", Money(1_000)).unwrap();
    a.transfer(&mut b, Money(400)).unwrap();
    assert_eq!((a.balance(), b.balance()), (Money(600), Money(400)));
}
