//! Pretraining: corpus, strip packing and batches, the training state (checkpoint
//! directory and resume), the loop.

pub mod corpus;
pub mod data;
pub mod run;
pub mod summary;
pub mod training_state;
