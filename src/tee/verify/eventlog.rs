//! Replay of a TDX CC event log (CCEL, TCG PC Client crypto-agile format)
//! into RTMR0..3.
//!
//! The first record is a legacy `TCG_PCR_EVENT` carrying the "Spec ID
//! Event03" that lists the digest algorithms and their sizes; every later
//! record is a `TCG_PCR_EVENT2`. CC measurement register index 1..=4 is
//! RTMR0..3; `RTMR = SHA-384(RTMR ‖ digest)`, `EV_NO_ACTION` is not
//! extended. The log area is padded with 0xFF or 0x00 after the last event.

use sha2::{Digest, Sha384};

use crate::bytes::{ByteReader, Truncated};

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

/// Why a log does not replay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    #[error("truncated: {0}")]
    Truncated(#[from] Truncated),
    #[error("more than {MAX_EVENTS} events")]
    TooManyEvents,
    #[error("event {event} has {count} digests")]
    DigestCount { event: usize, count: usize },
    #[error("event {event} uses algorithm {alg:#06x} that the Spec ID event does not list")]
    UnlistedAlgorithm { event: usize, alg: u16 },
    #[error("event {event} extends MR index {index}, not an RTMR")]
    NotAnRtmr { event: usize, index: u32 },
    #[error("event {0} has no SHA-384 digest")]
    NoSha384(usize),
    #[error("the first event is not a Spec ID Event03")]
    NoSpecId,
    #[error("Spec ID event lists {0} algorithms")]
    AlgorithmCount(usize),
}

/// True at the end of the events: fewer than 8 bytes left, or padding.
fn at_padding(r: &ByteReader<'_>) -> bool {
    let rest = r.rest();
    let head = &rest[..rest.len().min(8)];
    rest.len() < 8 || head.iter().all(|&b| b == 0xff) || head.iter().all(|&b| b == 0)
}

/// Replays `log`; the message of an error says where it is malformed.
pub fn replay(log: &[u8]) -> Result<Replayed, EventLogError> {
    let mut r = ByteReader::new(log);
    let algorithms = spec_id_event(&mut r)?;
    let mut rtmr = [[0u8; 48]; 4];
    let mut events = 0;
    while !at_padding(&r) {
        if events == MAX_EVENTS {
            return Err(EventLogError::TooManyEvents);
        }
        let index = r.u32("MR index")?;
        let event_type = r.u32("event type")?;
        let count = r.u32_len("digest count")?;
        if count == 0 || count > MAX_ALGORITHMS {
            return Err(EventLogError::DigestCount { event: events, count });
        }
        let mut sha384 = None;
        for _ in 0..count {
            let alg = r.u16("digest algorithm")?;
            let size = algorithms
                .iter()
                .find(|(a, _)| *a == alg)
                .map(|(_, s)| *s)
                .ok_or(EventLogError::UnlistedAlgorithm { event: events, alg })?;
            let digest = r.take(size, "digest")?;
            if alg == ALG_SHA384 {
                sha384 = Some(digest);
            }
        }
        let size = r.u32_len("event size")?;
        r.take(size, "event data")?;
        events += 1;
        if event_type == EV_NO_ACTION {
            continue;
        }
        let slot = match index {
            1 => 0,
            2 => 1,
            3 => 2,
            4 => 3,
            _ => return Err(EventLogError::NotAnRtmr { event: events - 1, index }),
        };
        let digest = sha384.ok_or(EventLogError::NoSha384(events - 1))?;
        let mut h = Sha384::new();
        h.update(rtmr[slot]);
        h.update(digest);
        rtmr[slot] = h.finalize().into();
    }
    Ok(Replayed { rtmr, events })
}

/// Reads the legacy first record and returns its (algorithm, size) list.
fn spec_id_event(r: &mut ByteReader<'_>) -> Result<Vec<(u16, usize)>, EventLogError> {
    let _index = r.u32("first event MR index")?;
    let event_type = r.u32("first event type")?;
    r.take(20, "first event SHA-1 digest")?;
    let size = r.u32_len("first event size")?;
    let mut e = ByteReader::new(r.take(size, "Spec ID event")?);
    if event_type != EV_NO_ACTION || e.take(16, "Spec ID signature")? != SPEC_ID_SIGNATURE {
        return Err(EventLogError::NoSpecId);
    }
    e.take(8, "Spec ID platform class and version")?;
    let n = e.u32_len("algorithm count")?;
    if n == 0 || n > MAX_ALGORITHMS {
        return Err(EventLogError::AlgorithmCount(n));
    }
    (0..n).map(|_| Ok((e.u16("algorithm id")?, usize::from(e.u16("digest size")?)))).collect()
}
