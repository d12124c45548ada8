//! What other parts of the runtime import of the machine-code analyses, under the names they
//! have always used; the analyses themselves live in [`super::x86`].
pub use super::x86::{message_calls, sets_frame_pointer, tail_accessor, Chain};
