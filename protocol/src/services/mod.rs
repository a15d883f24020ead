//! The HGCM services a Linux guest (and VirtualBox's own additions) talk to: function numbers and
//! their parameter counts, limits, flags and the structures carried in call buffers.
//!
//! A service sees its parameters after the device converted them (values as 32/64-bit, every
//! buffer as a host bounce buffer), so the structures here describe the *contents* of those
//! buffers. Each service module is independent; they share only [`ParameterCount`].

pub mod clipboard;
pub mod guest_props;
pub mod shared_folders;

/// How many parameters a service function accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParameterCount {
    /// Exactly this many.
    Exactly(u32),
    /// Any of these counts (e.g. with or without an optional trailing parameter).
    OneOf(&'static [u32]),
    /// This many or more.
    AtLeast(u32),
}

impl ParameterCount {
    /// Returns true if a call with `count` parameters has an acceptable count.
    pub fn accepts(self, count: u32) -> bool {
        match self {
            Self::Exactly(expected) => count == expected,
            Self::OneOf(counts) => counts.contains(&count),
            Self::AtLeast(minimum) => count >= minimum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_count_accepts_only_that_count() {
        assert!(ParameterCount::Exactly(3).accepts(3));
        assert!(!ParameterCount::Exactly(3).accepts(2));
        assert!(!ParameterCount::Exactly(3).accepts(4));
    }

    #[test]
    fn one_of_accepts_each_listed_count() {
        let count = ParameterCount::OneOf(&[2, 3]);
        assert!(count.accepts(2));
        assert!(count.accepts(3));
        assert!(!count.accepts(1));
    }

    #[test]
    fn at_least_accepts_the_minimum_and_more() {
        assert!(ParameterCount::AtLeast(2).accepts(2));
        assert!(ParameterCount::AtLeast(2).accepts(32));
        assert!(!ParameterCount::AtLeast(2).accepts(1));
    }
}
