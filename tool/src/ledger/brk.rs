//! One process's program break. Heap growth is measured from the first break the process
//! reported (its first `brk(0)`), or from the break seeded at attach.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Break {
    initial: Option<u64>,
    current: u64,
}

impl Break {
    #[cfg(test)]
    pub(crate) fn seeded(at: u64) -> Self {
        Break {
            initial: Some(at),
            current: at,
        }
    }

    /// Records a brk result; returns the change in heap bytes (0 for the first report).
    pub(crate) fn update(&mut self, new_break: u64) -> i64 {
        match self.initial {
            None => {
                self.initial = Some(new_break);
                self.current = new_break;
                0
            }
            Some(_) => {
                let delta = new_break as i64 - self.current as i64;
                self.current = new_break;
                delta
            }
        }
    }

    /// Bytes the heap has grown since its start: the sum of every [`Break::update`] delta,
    /// so subtracting it at exec or exit returns the ledger's heap total to zero exactly.
    pub(crate) fn heap_bytes(&self) -> i64 {
        self.initial
            .map_or(0, |start| self.current as i64 - start as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_report_is_the_start() {
        let mut heap = Break::default();
        assert_eq!(heap.update(0x1000_0000), 0);
        assert_eq!(heap.update(0x1002_1000), 0x21000);
        assert_eq!(heap.update(0x1001_0000), -0x11000);
        assert_eq!(heap.heap_bytes(), 0x10000);
        assert_eq!(Break::seeded(0x5000).heap_bytes(), 0);
    }
}
