//! An HTTP/1.1 answer from the KBS (or whoever is on the path): head,
//! status line, framing and body, as the transport reads them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztinit::kbs::http;

fuzz_target!(|data: &[u8]| {
    let mut reader = std::io::BufReader::new(data);
    let Ok(Some(head)) = http::read_head(&mut reader) else { return };
    let _ = http::parse_status_line(&head.start);
    let _ = head.header("set-cookie");
    if let Ok(framing) = http::framing(&head, true) {
        if let Ok(body) = http::read_body(&mut reader, framing, 1 << 16) {
            assert!(body.len() <= 1 << 16, "the body cap holds");
        }
    }
});
