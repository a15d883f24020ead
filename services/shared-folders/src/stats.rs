//! Per-client call counts, logged when a client disconnects: how many HGCM calls of each function
//! a guest made (the Linux guest connects once when `vboxsf` loads and disconnects when it unloads),
//! so the calls per guest operation can be measured from outside.

use std::fmt;

use vmmdev_protocol::services::shared_folders::Function;

/// Function numbers counted one by one; anything at or above is counted as "other".
const COUNTED: usize = 32;

/// Calls of one client, by function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallCounts {
    by_function: [u64; COUNTED],
    other: u64,
}

impl Default for CallCounts {
    fn default() -> Self {
        CallCounts {
            by_function: [0; COUNTED],
            other: 0,
        }
    }
}

impl CallCounts {
    /// Counts one call of `function`.
    pub fn count(&mut self, function: u32) {
        match usize::try_from(function)
            .ok()
            .and_then(|index| self.by_function.get_mut(index))
        {
            Some(slot) => *slot += 1,
            None => self.other += 1,
        }
    }

    /// All calls counted.
    pub fn total(&self) -> u64 {
        self.by_function.iter().sum::<u64>() + self.other
    }
}

impl fmt::Display for CallCounts {
    /// `total=N` then `NAME=count` for every function called, in function-number order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "total={}", self.total())?;
        for (number, &count) in (0u32..).zip(self.by_function.iter()) {
            if count > 0 {
                match Function(number).name() {
                    Some(name) => write!(f, " {name}={count}")?,
                    None => write!(f, " function{number}={count}")?,
                }
            }
        }
        if self.other > 0 {
            write!(f, " other={}", self.other)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_listed_by_function_name_after_the_total() {
        let mut counts = CallCounts::default();
        for function in [3, 3, 5, 4] {
            counts.count(function);
        }
        assert_eq!(counts.to_string(), "total=4 CREATE=2 CLOSE=1 READ=1");
    }

    #[test]
    fn out_of_range_functions_are_counted_as_other() {
        let mut counts = CallCounts::default();
        counts.count(u32::MAX);
        counts.count(40);
        assert_eq!(counts.to_string(), "total=2 other=2");
    }
}
