//! A layer blob's compression, read to its end as the unpacker reads it:
//! gzip (members, header fields, CRC-32 and ISIZE) and zstd (frames,
//! skippable frames, content checksums).
#![no_main]
use std::io::Read;

use libfuzzer_sys::fuzz_target;
use ztinit_image::unpack::{self, Compression};

/// Enough to get past any header; a bomb stops here.
const OUT_CAP: u64 = 4 << 20;

fuzz_target!(|data: &[u8]| {
    let mut buf = vec![0u8; 64 << 10];
    for compression in [Compression::Gzip, Compression::Zstd] {
        let mut reader = unpack::decompressed(data, compression).take(OUT_CAP);
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => assert!(n <= buf.len()),
            }
        }
    }
});
