//! One module per `mrt` command.

pub mod assets;
pub mod bench;
pub mod codec;
pub mod conformance;
pub mod dev;
pub mod embed;
pub mod generate;
pub mod verify;
