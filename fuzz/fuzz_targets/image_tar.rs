//! A layer's tar stream: header blocks (checksums, ustar prefixes, GNU
//! base-256 numbers), PAX records and GNU long names, read entry by entry
//! with each entry's data, and every name normalised as the unpacker does.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit_image::unpack::{self, TarReader};

const BLOCK: usize = 512;

fuzz_target!(|data: &[u8]| {
    // The pieces on their own: the first blocks as headers, the input as
    // PAX records, its first fields as numbers.
    for block in data.chunks_exact(BLOCK).take(4) {
        let _ = unpack::parse_header(block);
    }
    let _ = unpack::parse_pax(data);
    for field in data.chunks(12).take(4) {
        let _ = unpack::parse_numeric(field);
    }
    // The stream, as the unpacker reads it.
    let mut tar = TarReader::new(data);
    let mut buf = [0u8; 4096];
    loop {
        match tar.next_entry() {
            Ok(Some(entry)) => {
                let _ = unpack::normalise(&entry.path);
                let _ = unpack::normalise(&entry.link);
                let mut read = 0u64;
                loop {
                    match tar.read_data(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => read += u64::try_from(n).expect("fits"),
                        Err(_) => return,
                    }
                }
                assert_eq!(read, entry.size, "an entry's data is exactly its size");
            }
            Ok(None) => {
                let _ = tar.finish();
                return;
            }
            Err(_) => return,
        }
    }
});
