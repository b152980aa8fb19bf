//! BPF_PROG_TEST_RUN: runs a loaded program on a buffer in the kernel,
//! for the packet tests, the benchmark and the flow sweeper.
use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
};

use crate::error::{LbError, Result};

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// `union bpf_attr`'s `test` member (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// The program's verdict, the buffer as it left the program, and the
/// kernel's mean run time in ns over `repeat` runs.
#[derive(Debug, Clone)]
pub struct TestRunOutput {
    pub action: u32,
    pub data: Vec<u8>,
    pub duration_ns: u32,
}

/// Runs the program `prog` on `data`, `repeat` times (at least once).
pub fn run(prog: BorrowedFd<'_>, data: &[u8], repeat: u32) -> Result<TestRunOutput> {
    let mut out = vec![0u8; data.len().max(256) + 4096];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_fd().as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_size_out: out.len() as u32,
        data_in: data.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..Default::default()
    };
    // SAFETY: attr points to valid buffers of the stated sizes for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>() as u32,
        )
    };
    if rc < 0 {
        return Err(LbError::TestRun {
            source: io::Error::last_os_error(),
        });
    }
    out.truncate(attr.data_size_out as usize);
    Ok(TestRunOutput {
        action: attr.retval,
        data: out,
        duration_ns: attr.duration,
    })
}
