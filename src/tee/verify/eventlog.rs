//! Replay of a TDX CC event log (CCEL, TCG PC Client crypto-agile format)
//! into RTMR0..3.
//!
//! The first record is a legacy `TCG_PCR_EVENT` carrying the "Spec ID
//! Event03" that lists the digest algorithms and their sizes; every later
//! record is a `TCG_PCR_EVENT2`. CC measurement register index 1..=4 is
//! RTMR0..3; `RTMR = SHA-384(RTMR ‖ digest)`, `EV_NO_ACTION` is not
//! extended. The log area is padded with 0xFF or 0x00 after the last event.

use sha2::{Digest, Sha384};

const EV_NO_ACTION: u32 = 3;
const ALG_SHA384: u16 = 0x000c;
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
const MAX_EVENTS: usize = 100_000;
const MAX_ALGORITHMS: usize = 16;

/// The registers a log extends to, and how many events it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub rtmr: [[u8; 48]; 4],
    pub events: usize,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| format!("truncated {what} at byte {}", self.pos))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn at_padding(&self) -> bool {
        let rest = &self.buf[self.pos..];
        let head = &rest[..rest.len().min(8)];
        rest.len() < 8 || head.iter().all(|&b| b == 0xff) || head.iter().all(|&b| b == 0)
    }
}

/// Replays `log`; the message of an error says where it is malformed.
pub fn replay(log: &[u8]) -> Result<Replayed, String> {
    let mut r = Reader { buf: log, pos: 0 };
    let algorithms = spec_id_event(&mut r)?;
    let mut rtmr = [[0u8; 48]; 4];
    let mut events = 0;
    while !r.at_padding() {
        if events == MAX_EVENTS {
            return Err(format!("more than {MAX_EVENTS} events"));
        }
        let index = r.u32("MR index")?;
        let event_type = r.u32("event type")?;
        let count = r.u32("digest count")? as usize;
        if count == 0 || count > MAX_ALGORITHMS {
            return Err(format!("event {events} has {count} digests"));
        }
        let mut sha384 = None;
        for _ in 0..count {
            let alg = r.u16("digest algorithm")?;
            let size = algorithms.iter().find(|(a, _)| *a == alg).map(|(_, s)| *s).ok_or_else(|| {
                format!("event {events} uses algorithm {alg:#06x} that the Spec ID event does not list")
            })?;
            let digest = r.take(size, "digest")?;
            if alg == ALG_SHA384 {
                sha384 = Some(digest);
            }
        }
        let size = r.u32("event size")? as usize;
        r.take(size, "event data")?;
        events += 1;
        if event_type == EV_NO_ACTION {
            continue;
        }
        let slot = match index {
            1..=4 => (index - 1) as usize,
            _ => {
                return Err(format!("event {} extends MR index {index}, not an RTMR", events - 1));
            }
        };
        let digest = sha384.ok_or_else(|| format!("event {} has no SHA-384 digest", events - 1))?;
        let mut h = Sha384::new();
        h.update(rtmr[slot]);
        h.update(digest);
        rtmr[slot] = h.finalize().into();
    }
    Ok(Replayed { rtmr, events })
}

/// Reads the legacy first record and returns its (algorithm, size) list.
fn spec_id_event(r: &mut Reader<'_>) -> Result<Vec<(u16, usize)>, String> {
    let _index = r.u32("first event MR index")?;
    let event_type = r.u32("first event type")?;
    r.take(20, "first event SHA-1 digest")?;
    let size = r.u32("first event size")? as usize;
    let mut e = Reader { buf: r.take(size, "Spec ID event")?, pos: 0 };
    if event_type != EV_NO_ACTION || e.take(16, "Spec ID signature")? != SPEC_ID_SIGNATURE {
        return Err("the first event is not a Spec ID Event03".into());
    }
    e.take(8, "Spec ID platform class and version")?;
    let n = e.u32("algorithm count")? as usize;
    if n == 0 || n > MAX_ALGORITHMS {
        return Err(format!("Spec ID event lists {n} algorithms"));
    }
    (0..n).map(|_| Ok((e.u16("algorithm id")?, usize::from(e.u16("digest size")?)))).collect()
}
