//! Reading files and disks the way the volume tests need: digests, timed
//! reads, and block devices found by their virtio serial.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Read size: large enough that the syscall cost is noise.
const CHUNK: usize = 1 << 20;

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The lowercase hex SHA-256 of a file's content, and its length.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    sha256_prefix(path, u64::MAX)
}

/// The SHA-256 of the first `limit` bytes (all when shorter), and how many
/// bytes were hashed.
pub fn sha256_prefix(path: &Path, limit: u64) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let n = read_chunks(path, limit, |chunk| h.update(chunk))?;
    Ok((hex(&h.finalize()), n))
}

/// Reads up to `limit` bytes of `path` from the start, timing it. Returns
/// the bytes read and the time taken.
pub fn timed_read(path: &Path, limit: u64) -> io::Result<(u64, Duration)> {
    let start = Instant::now();
    let n = read_chunks(path, limit, |_| {})?;
    Ok((n, start.elapsed()))
}

fn read_chunks(path: &Path, limit: u64, mut each: impl FnMut(&[u8])) -> io::Result<u64> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < limit {
        let want = usize::try_from(limit - done).map_or(CHUNK, |n| n.min(CHUNK));
        match f.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => {
                each(&buf[..n]);
                done += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The device node of the disk whose `SYS_BLOCK/NAME/serial` is `serial`.
pub fn disk_by_serial(sys_block: &Path, dev: &Path, serial: &str) -> io::Result<PathBuf> {
    for entry in std::fs::read_dir(sys_block)? {
        let entry = entry?;
        let Ok(s) = std::fs::read_to_string(entry.path().join("serial")) else { continue };
        if s.trim_end_matches(['\n', '\0']) == serial {
            return Ok(dev.join(entry.file_name()));
        }
    }
    Err(io::Error::new(io::ErrorKind::NotFound, format!("no disk with serial {serial:?} in {}", sys_block.display())))
}

/// MiB/s, for humans.
pub fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1u64 << 20) as f64 / d.as_secs_f64().max(1e-9)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_known_vectors() {
        let dir = std::env::temp_dir().join(format!("testkit-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("abc");
        std::fs::write(&f, b"abc").unwrap();
        let (h, n) = sha256_file(&f).unwrap();
        assert_eq!(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(n, 3);
        let (h, n) = sha256_prefix(&f, 0).unwrap();
        assert_eq!((h.as_str(), n), ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 0));
        assert_eq!(timed_read(&f, 2).unwrap().0, 2);

        let sys = dir.join("block");
        for (name, serial) in [("vda", "other\n"), ("vdb", "ztplain")] {
            std::fs::create_dir_all(sys.join(name)).unwrap();
            std::fs::write(sys.join(name).join("serial"), serial).unwrap();
        }
        std::fs::create_dir_all(sys.join("loop0")).unwrap();
        assert_eq!(disk_by_serial(&sys, Path::new("/dev"), "ztplain").unwrap(), PathBuf::from("/dev/vdb"));
        assert_eq!(disk_by_serial(&sys, Path::new("/dev"), "other").unwrap(), PathBuf::from("/dev/vda"));
        assert_eq!(disk_by_serial(&sys, Path::new("/dev"), "x").unwrap_err().kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
