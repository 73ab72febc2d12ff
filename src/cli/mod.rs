//! Subcommands of the `pixel` command line, one module each.

pub mod inspect;
pub mod render;
