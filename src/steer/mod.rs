//! Steering science on top of the engine: the refusal judge and refusal-rate evaluation.

pub mod eval;
pub mod judge;
pub mod monitor;
pub mod orthogonalize;
pub mod select;
pub mod sweep;
