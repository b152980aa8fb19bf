//! Flow expiry and eviction, driven from userspace and executed by the
//! `fulmar_sweep` BPF program, so count changes stay BPF atomics.
use fulmar_common::{
    FlowKey, FlowValue, SWEEP_BATCH, SWEEP_EXPIRE, SWEEP_FORCE, SWEEP_INVALIDATE, SWEEP_REMOVED,
    SweepEntry, SweepHeader, SweepRequest, program_names,
};

use crate::{balancer::Balancer, error::Result, test_run::TestRunOutput};

/// What the sweeper takes as its packet: repr(C), integers only, no padding
/// (the layout test in fulmar-common checks the sizes).
trait SweepMessage {}
impl SweepMessage for SweepRequest {}
impl SweepMessage for SweepHeader {}

/// What a sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub examined: usize,
    pub removed: usize,
}

impl Balancer {
    /// Runs the sweeper on `keys`; returns each key's SWEEP_* result.
    pub fn sweep_keys(
        &mut self,
        force: bool,
        keys: &[FlowKey],
        clock_offset_ns: u64,
    ) -> Result<Vec<u32>> {
        let mut results = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(SWEEP_BATCH) {
            let mut request = SweepRequest {
                header: SweepHeader {
                    op: if force { SWEEP_FORCE } else { SWEEP_EXPIRE },
                    count: chunk.len() as u32,
                    clock_offset_ns,
                },
                entries: [SweepEntry::default(); SWEEP_BATCH],
            };
            for (entry, key) in request.entries.iter_mut().zip(chunk) {
                entry.key = *key;
            }
            let out = self.run_sweeper(&request)?;
            let entries_at = std::mem::size_of::<SweepHeader>();
            for i in 0..chunk.len() {
                let at = entries_at
                    + i * std::mem::size_of::<SweepEntry>()
                    + std::mem::offset_of!(SweepEntry, result);
                let word: [u8; 4] = out.data[at..at + 4].try_into().expect("4 bytes");
                results.push(u32::from_ne_bytes(word));
            }
        }
        Ok(results)
    }

    /// Voids every CPU's flow cache: established packets take the full path
    /// (and see the new service, bank or real state) from now on.
    pub fn invalidate_flow_caches(&mut self) -> Result<()> {
        let header = SweepHeader {
            op: SWEEP_INVALIDATE,
            count: 0,
            clock_offset_ns: 0,
        };
        self.run_sweeper(&header)?;
        Ok(())
    }

    /// Runs the sweeper on one message: a `SweepRequest`, or a bare
    /// `SweepHeader` when there are no entries.
    fn run_sweeper<T: SweepMessage>(&mut self, message: &T) -> Result<TestRunOutput> {
        // SAFETY: SweepMessage types are repr(C) integers with no padding.
        let bytes = unsafe {
            std::slice::from_raw_parts((message as *const T).cast::<u8>(), std::mem::size_of::<T>())
        };
        self.run(program_names::SWEEPER, bytes, 1)
    }

    /// Removes every flow idle past its timeout. `clock_offset_ns` ages the
    /// table artificially (tests); the daemon passes 0.
    pub fn expire_flows(&mut self, clock_offset_ns: u64) -> Result<SweepReport> {
        let keys: Vec<FlowKey> = self.flows()?.into_iter().map(|(k, _)| k).collect();
        let results = self.sweep_keys(false, &keys, clock_offset_ns)?;
        Ok(report(&results))
    }

    /// Evicts the `count` least recently used flows (table pressure).
    pub fn evict_oldest(&mut self, count: usize) -> Result<SweepReport> {
        let mut flows = self.flows()?;
        flows.sort_by_key(|(_, v)| v.last_seen_ns);
        let keys: Vec<FlowKey> = flows.into_iter().take(count).map(|(k, _)| k).collect();
        let results = self.sweep_keys(true, &keys, 0)?;
        Ok(report(&results))
    }

    /// Removes every flow `select` picks (a deleted service or real).
    pub fn flush_flows(
        &mut self,
        select: impl Fn(&FlowKey, &FlowValue) -> bool,
    ) -> Result<SweepReport> {
        let keys: Vec<FlowKey> = self
            .flows()?
            .into_iter()
            .filter(|(k, v)| select(k, v))
            .map(|(k, _)| k)
            .collect();
        let results = self.sweep_keys(true, &keys, 0)?;
        Ok(report(&results))
    }
}

fn report(results: &[u32]) -> SweepReport {
    SweepReport {
        examined: results.len(),
        removed: results.iter().filter(|&&r| r == SWEEP_REMOVED).count(),
    }
}
