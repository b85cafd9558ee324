//! The canonical binary codec, from `weft-codec` (the bottom of the crate graph, so that
//! `weft-consensus` encodes its own types with it too). Re-exported here, where every other
//! crate has always found it.

pub use weft_codec::*;
