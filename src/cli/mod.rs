//! Subcommands of the `pixel` command line, one module each.

pub mod bench;
pub mod bench_cuda;
pub mod finetune;
pub mod inspect;
pub mod mem;
pub mod pretrain;
pub mod profile;
pub mod reconstruct;
pub mod render;
