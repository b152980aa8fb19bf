//! The PROXY protocol v2 header the proxy reads from a balancer: any 16
//! bytes and body give an address, None (LOCAL, unknown family) or an
//! error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (head, body) = data.split_at(16);
    let head: &[u8; 16] = head.try_into().expect("16 bytes");
    let _ = fulmar_proxy::proxy_protocol::parse(head, body);
});
