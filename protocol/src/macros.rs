//! Crate-internal helpers for declaring protocol code spaces.
//!
//! Many protocol fields are integers drawn from an *open* set of named values: a guest may send
//! any number, and the host must be able to carry (and log) values it does not know. Rust enums
//! cannot hold unknown discriminants without undefined behaviour, so every such field is modelled
//! as a transparent newtype with one associated constant per known value, plus `name()` for
//! diagnostics. The macro below generates that shape once, so every code space behaves alike.

/// Declares a transparent newtype over an integer with named associated constants.
///
/// Generated items: the constants, `KNOWN` (every named value, in declaration order), `name()`,
/// `raw()`, `From` conversions in both directions, and `Debug`/`Display` that print the name
/// when the value is known and the number otherwise. Each value must be a literal so that a
/// duplicate shows up as an unreachable pattern in `name()` at compile time.
macro_rules! protocol_codes {
    (
        $(#[$meta:meta])*
        $vis:vis struct $ty:ident($repr:ty);
        $(
            $(#[$const_meta:meta])*
            $name:ident = $value:literal;
        )*
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        #[repr(transparent)]
        $vis struct $ty(pub $repr);

        impl $ty {
            $(
                $(#[$const_meta])*
                pub const $name: Self = Self($value);
            )*

            /// Every named value, in declaration order.
            pub const KNOWN: &'static [Self] = &[$(Self::$name),*];

            /// Returns the protocol name of this value, or `None` if the value is not a known one.
            pub const fn name(self) -> Option<&'static str> {
                #[deny(unreachable_patterns)]
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// Returns the raw wire value.
            pub const fn raw(self) -> $repr {
                self.0
            }
        }

        impl From<$repr> for $ty {
            fn from(raw: $repr) -> Self {
                Self(raw)
            }
        }

        impl From<$ty> for $repr {
            fn from(value: $ty) -> Self {
                value.0
            }
        }

        impl core::fmt::Debug for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(name) => write!(f, "{}::{}", stringify!($ty), name),
                    None => write!(f, "{}({})", stringify!($ty), self.0),
                }
            }
        }

        impl core::fmt::Display for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(name) => write!(f, "{} ({})", name, self.0),
                    None => write!(f, "unknown {} {}", stringify!($ty), self.0),
                }
            }
        }
    };
}

/// Asserts in a unit test that a wire struct has the given size and field offsets.
#[cfg(test)]
macro_rules! assert_layout {
    ($ty:ty, size = $size:expr, { $($field:ident : $offset:expr),* $(,)? }) => {{
        assert_eq!(core::mem::size_of::<$ty>(), $size, "size of {}", stringify!($ty));
        assert_eq!(core::mem::align_of::<$ty>(), 1, "alignment of {}", stringify!($ty));
        $(
            assert_eq!(
                core::mem::offset_of!($ty, $field),
                $offset,
                "offset of {}::{}",
                stringify!($ty),
                stringify!($field)
            );
        )*
    }};
}
