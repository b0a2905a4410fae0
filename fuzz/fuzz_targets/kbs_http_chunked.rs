//! A chunked body on its own: chunk sizes, extensions, trailers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::kbs::http::{self, Framing};

fuzz_target!(|data: &[u8]| {
    let mut reader = std::io::BufReader::new(data);
    if let Ok(body) = http::read_body(&mut reader, Framing::Chunked, 4096) {
        assert!(body.len() <= 4096, "the body cap holds");
    }
});
