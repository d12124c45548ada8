//! Reading struct layouts out of x86-64 machine code (System V ABI).
//!
//! One symbolic engine ([`engine`]) steps a function's instructions over a register state of
//! [`value::Value`]s: entry arguments, loads through them, constants, and what a `lock xadd`
//! fetched. Each analysis is a small policy on top of it: what to seed, and what a `ret`, a
//! call, a jump, a load or a store means for its question.
//!
//! tt-metal's release binaries offer these patterns:
//! - out-of-line accessors (`Buffer::size() const`): a chain of loads from `this` into the
//!   return register ([`accessor`]), possibly through accessors that tail-call each other
//!   ([`tail`]) or through a constant table indexed by an argument ([`typed`]);
//! - constructors that store their arguments into `this` ([`constructor`]);
//! - getters that copy a `std::vector` member ([`getter`]), helpers handed a member of `this`
//!   ([`member_call`]) and throws of a known message ([`messages`]);
//! - functions that read a field without returning it: a predicate on it, a division by it,
//!   an element of a vector member ([`reads`]), a member passed to a call ([`member_call`]),
//!   the result of a call stored into a member ([`constructor`]).
pub mod abi;
pub mod accessor;
pub mod array;
pub mod chain;
pub mod choice;
pub mod constructor;
pub mod engine;
pub mod getter;
pub mod image;
pub mod kept;
pub mod member_call;
pub mod members;
pub mod messages;
pub mod prologue;
pub mod reads;
pub mod shard;
pub mod state;
pub mod tail;
pub mod typed;
pub mod value;

#[cfg(test)]
mod calibration_tests;
#[cfg(test)]
pub(crate) mod fixture;

pub use accessor::accessor_chain;
pub use chain::Chain;
pub use choice::{member_address, member_stores, returned_paths, Path, Tested};
pub use constructor::{constructor_stores, copied_stores, result_stores, Stored};
pub use getter::{vector_getter, vector_scan};
pub use image::Image;
pub use member_call::{member_at_call, this_lea_at_call};
pub use members::{
    forwarded_member, member_lea_at_call, returned_after_calls, returned_member_address,
};
pub use messages::message_calls;
pub use prologue::sets_frame_pointer;
pub use reads::{field_reads, indexed_member, quotient};
pub use tail::tail_accessor;
pub use typed::{typed_accessor, typed_member_at_call, typed_tail_call};
