//! A tiny ledger: money amounts in cents, accounts, CSV import and reports.

pub mod money;
pub mod account;
pub mod csv;
