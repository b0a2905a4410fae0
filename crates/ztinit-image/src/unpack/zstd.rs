//! Streaming zstd via `ruzstd`: one frame after another (the format allows
//! concatenation, as gzip members), skippable frames passed over, each
//! frame's content checksum checked when its header says it has one
//! (`ruzstd` reads the checksum but leaves the comparison to its caller).

use std::io::{self, BufRead, BufReader, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

#[derive(Debug, thiserror::Error)]
pub enum ZstdError {
    #[error("zstd: {0}")]
    Decode(#[from] FrameDecoderError),
    #[error("zstd: content checksum mismatch (frame {stored:08x}, data {computed:08x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("zstd: the stream is empty")]
    Empty,
    #[error("zstd: a skippable frame is truncated")]
    TruncatedSkip,
}

impl From<ZstdError> for io::Error {
    fn from(e: ZstdError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

pub struct ZstdReader<R> {
    source: BufReader<R>,
    decoder: FrameDecoder,
    in_frame: bool,
    frames: u64,
}

impl<R: Read> ZstdReader<R> {
    pub fn new(inner: R) -> Self {
        ZstdReader {
            source: BufReader::with_capacity(64 << 10, inner),
            decoder: FrameDecoder::new(),
            in_frame: false,
            frames: 0,
        }
    }

    /// Starts the next frame; false at the end of the stream.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                if self.frames == 0 {
                    return Err(ZstdError::Empty.into());
                }
                return Ok(false);
            }
            match self.decoder.init(&mut self.source) {
                Ok(()) => {
                    self.frames += 1;
                    return Ok(true);
                }
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                    let skipped = io::copy(&mut (&mut self.source).take(u64::from(length)), &mut io::sink())?;
                    if skipped != u64::from(length) {
                        return Err(ZstdError::TruncatedSkip.into());
                    }
                    // A stream of skippable frames alone holds no data but
                    // is not empty either.
                    self.frames += 1;
                }
                Err(e) => return Err(ZstdError::Decode(e).into()),
            }
        }
    }

    fn check_frame_end(&self) -> io::Result<()> {
        if let Some(stored) = self.decoder.get_checksum_from_data() {
            let computed = self.decoder.get_calculated_checksum().unwrap_or(!stored);
            if stored != computed {
                return Err(ZstdError::Checksum { stored, computed }.into());
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for ZstdReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.next_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            while self.decoder.can_collect() < out.len() && !self.decoder.is_finished() {
                let wanted = out.len() - self.decoder.can_collect();
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(wanted))
                    .map_err(ZstdError::Decode)?;
            }
            let n = self.decoder.read(out)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() && self.decoder.can_collect() == 0 {
                self.check_frame_end()?;
                self.in_frame = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unzstd(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut reader = ZstdReader::new(bytes);
        let mut buf = [0u8; 1000];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// `printf 'hello, zstd layer\n' | zstd -19 -c --check` (zstd 1.5).
    const CLI_FIXTURE: &[u8] = &[
        0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x68, 0x91, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x2c, 0x20, 0x7a, 0x73,
        0x74, 0x64, 0x20, 0x6c, 0x61, 0x79, 0x65, 0x72, 0x0a, 0x56, 0x81, 0xe1, 0xde,
    ];

    #[test]
    fn cli_fixture_with_checksum() {
        assert_eq!(unzstd(CLI_FIXTURE).unwrap(), b"hello, zstd layer\n");
        let mut bad = CLI_FIXTURE.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(unzstd(&bad).unwrap_err().to_string().contains("checksum mismatch"));
        assert!(unzstd(&CLI_FIXTURE[..CLI_FIXTURE.len() - 6]).is_err(), "truncated");
    }

    #[test]
    fn round_trip_frames_and_skippable_frames() {
        let data: Vec<u8> = (0..300_000u32).map(|i| u8::try_from((i / 3 + i % 17) % 256).unwrap()).collect();
        let mut stream =
            ruzstd::encoding::compress_to_vec(&data[..100_000], ruzstd::encoding::CompressionLevel::Fastest);
        // A skippable frame (magic 0x184D2A50, 4-byte length) between two frames.
        stream.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        stream.extend_from_slice(&ruzstd::encoding::compress_to_vec(
            &data[100_000..],
            ruzstd::encoding::CompressionLevel::Fastest,
        ));
        assert_eq!(unzstd(&stream).unwrap(), data);
        assert!(unzstd(b"").is_err(), "empty stream");
        assert!(unzstd(b"not zstd at all").is_err());
        let mut trailing = ruzstd::encoding::compress_to_vec(&data[..10], ruzstd::encoding::CompressionLevel::Fastest);
        trailing.extend_from_slice(b"garbage");
        assert!(unzstd(&trailing).is_err(), "garbage after the last frame");
    }
}
