//! steerscope: look inside Llama-family language models while steering them.
//!
//! Data flow: [`model`] loads weights (GGUF or HF safetensors) and runs one instrumented forward
//! ([`model::Transformer::forward`]) with [`hooks`] (summaries, captures, interventions);
//! [`generate`] runs side-by-side streams on it; [`vector`] reads steering vectors; the CLI
//! (`steerscope` binary) prints what these return.

pub mod app;
pub mod demo;
pub mod error;
pub mod extract;
pub mod generate;
pub mod hooks;
pub mod model;
pub mod rng;
pub mod steer;
pub mod trace;
pub mod vector;
pub mod worker;

pub use error::{Error, Result};
