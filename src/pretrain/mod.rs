//! Pretraining: corpus, strip packing and batches, checkpoints, the loop.

pub mod checkpoint;
pub mod corpus;
pub mod data;
pub mod run;
