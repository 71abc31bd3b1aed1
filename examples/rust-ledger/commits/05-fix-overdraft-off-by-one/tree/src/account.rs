//! Accounts with a history of entries and an optional overdraft limit.

use crate::money::Money;

/// One booked entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub description: String,
    pub amount: Money,
}

/// Why an entry was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AccountError {
    Overdrawn { balance: Money, requested: Money },
    NonPositive(Money),
}

#[derive(Clone, Debug, Default)]
pub struct Account {
    pub name: String,
    entries: Vec<Entry>,
    overdraft: Money,
}

impl Account {
    pub fn new(name: &str) -> Account {
        Account {
            name: name.to_string(),
            entries: Vec::new(),
            overdraft: Money(0),
        }
    }

    /// Allows the balance to go down to `-limit`.
    pub fn with_overdraft(mut self, limit: Money) -> Account {
        self.overdraft = limit;
        self
    }

    pub fn balance(&self) -> Money {
        self.entries.iter().fold(Money(0), |acc, e| acc.add(e.amount))
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn deposit(&mut self, description: &str, amount: Money) -> Result<Money, AccountError> {
        if amount.cents() <= 0 {
            return Err(AccountError::NonPositive(amount));
        }
        self.entries.push(Entry {
            description: description.to_string(),
            amount,
        });
        Ok(self.balance())
    }

    pub fn withdraw(&mut self, description: &str, amount: Money) -> Result<Money, AccountError> {
        if amount.cents() <= 0 {
            return Err(AccountError::NonPositive(amount));
        }
        let balance = self.balance();
        if balance.sub(amount).cents() < -self.overdraft.cents() {
            return Err(AccountError::Overdrawn {
                balance,
                requested: amount,
            });
        }
        self.entries.push(Entry {
            description: description.to_string(),
            amount: Money(-amount.cents()),
        });
        Ok(self.balance())
    }

    /// Moves `amount` from `self` to `to`; nothing changes when it is refused.
    pub fn transfer(&mut self, to: &mut Account, amount: Money) -> Result<(), AccountError> {
        self.withdraw(&format!("transfer to {}", to.name), amount)?;
        to.deposit(&format!("transfer from {}", self.name), amount)?;
        Ok(())
    }
}
