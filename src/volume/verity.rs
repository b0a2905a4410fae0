//! dm-verity hash tree geometry and construction (format version 1, SHA-256).
//!
//! The geometry mirrors linux-6.12 `drivers/md/dm-verity-target.c`
//! (`verity_ctr`): `2^k` digests per hash block (the largest power of two that
//! fits), `levels` chosen so the top level is one block, levels stored top
//! level first from the hash start block, every digest `SHA-256(salt ‖ block)`.
//! The guest uses the geometry to check the disk is large enough before it
//! loads a table; `cargo xtask model-volume` uses [`build_tree`] to write the
//! tree, so both sides share one definition.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

/// SHA-256 digest size.
pub const DIGEST_SIZE: usize = 32;
/// Largest salt the kernel and veritysetup accept.
pub const MAX_SALT_BYTES: usize = 256;

/// The geometry of a hash tree over `data_blocks` blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    pub data_blocks: u64,
    pub hash_block_size: u32,
    /// log2 of digests per hash block.
    pub hash_per_block_bits: u32,
    /// Hash blocks of each level, level 0 (digests of data blocks) first.
    pub level_blocks: Vec<u64>,
}

impl Geometry {
    /// `None` when the sizes are not what the kernel accepts (hash block size
    /// a power of two of at least 64 bytes, at least one data block).
    pub fn new(data_blocks: u64, hash_block_size: u32) -> Option<Geometry> {
        if data_blocks == 0 || !hash_block_size.is_power_of_two() || (hash_block_size as usize) < 2 * DIGEST_SIZE {
            return None;
        }
        // __fls(hash_block_size / digest_size)
        let hash_per_block_bits = (hash_block_size as usize / DIGEST_SIZE).ilog2();
        let mut levels = 0u32;
        while hash_per_block_bits * levels < 64 && ((data_blocks - 1) >> (hash_per_block_bits * levels)) != 0 {
            levels += 1;
        }
        let level_blocks = (0..levels)
            .map(|i| {
                let shift = (i + 1) * hash_per_block_bits;
                if shift >= 64 { 1 } else { data_blocks.div_ceil(1u64 << shift) }
            })
            .collect();
        Some(Geometry { data_blocks, hash_block_size, hash_per_block_bits, level_blocks })
    }

    /// Hash blocks in the whole tree.
    pub fn hash_blocks(&self) -> u64 {
        self.level_blocks.iter().sum()
    }

    /// Bytes the tree occupies from the hash start.
    pub fn hash_bytes(&self) -> u64 {
        self.hash_blocks() * u64::from(self.hash_block_size)
    }

    fn digests_per_block(&self) -> usize {
        1usize << self.hash_per_block_bits
    }
}

/// A built tree: the root digest and the bytes to store at the hash start.
pub struct Tree {
    pub root: [u8; DIGEST_SIZE],
    /// Levels top first, each padded to whole hash blocks with zeros.
    pub bytes: Vec<u8>,
}

fn salted(salt: &[u8], block: &[u8]) -> [u8; DIGEST_SIZE] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Hashes `geometry.data_blocks` blocks of `data_block_size` bytes read from
/// `data` into a version-1 SHA-256 tree. Memory use is the tree itself
/// (about 0.8 % of the data for 4 KiB blocks).
pub fn build_tree(data: &mut impl Read, data_block_size: u32, geometry: &Geometry, salt: &[u8]) -> io::Result<Tree> {
    if salt.len() > MAX_SALT_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "salt longer than 256 bytes"));
    }
    let mut block = vec![0u8; data_block_size as usize];
    let capacity = usize::try_from(geometry.data_blocks)
        .ok()
        .and_then(|n| n.checked_mul(DIGEST_SIZE))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many data blocks for this machine"))?;
    let mut digests = Vec::with_capacity(capacity);
    for _ in 0..geometry.data_blocks {
        data.read_exact(&mut block)?;
        digests.extend_from_slice(&salted(salt, &block));
    }
    if geometry.level_blocks.is_empty() {
        // One data block: the kernel compares its digest with the root directly.
        let mut root = [0u8; DIGEST_SIZE];
        root.copy_from_slice(&digests);
        return Ok(Tree { root, bytes: Vec::new() });
    }
    let hbs = geometry.hash_block_size as usize;
    let per_block = geometry.digests_per_block();
    let mut levels: Vec<Vec<u8>> = Vec::with_capacity(geometry.level_blocks.len());
    for &blocks in &geometry.level_blocks {
        // Pack the digests of the level below into zero-padded hash blocks.
        let size = usize::try_from(blocks)
            .ok()
            .and_then(|n| n.checked_mul(hbs))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "hash level too large for this machine"))?;
        let mut level = vec![0u8; size];
        for (i, d) in digests.chunks_exact(DIGEST_SIZE).enumerate() {
            let at = (i / per_block) * hbs + (i % per_block) * DIGEST_SIZE;
            level[at..at + DIGEST_SIZE].copy_from_slice(d);
        }
        digests = level.chunks_exact(hbs).flat_map(|b| salted(salt, b)).collect();
        levels.push(level);
    }
    let mut root = [0u8; DIGEST_SIZE];
    root.copy_from_slice(&digests[..DIGEST_SIZE]);
    let bytes = levels.into_iter().rev().flatten().collect();
    Ok(Tree { root, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_the_kernel_formula() {
        // 4 KiB hash blocks hold 128 digests.
        let g = Geometry::new(1, 4096).unwrap();
        assert_eq!(g.hash_per_block_bits, 7);
        assert!(g.level_blocks.is_empty());
        assert_eq!(Geometry::new(2, 4096).unwrap().level_blocks, vec![1]);
        assert_eq!(Geometry::new(128, 4096).unwrap().level_blocks, vec![1]);
        assert_eq!(Geometry::new(129, 4096).unwrap().level_blocks, vec![2, 1]);
        assert_eq!(Geometry::new(128 * 128, 4096).unwrap().level_blocks, vec![128, 1]);
        assert_eq!(Geometry::new(128 * 128 + 1, 4096).unwrap().level_blocks, vec![129, 2, 1]);
        // 1 TiB of 4 KiB blocks.
        let g = Geometry::new(1 << 28, 4096).unwrap();
        assert_eq!(g.level_blocks, vec![1 << 21, 1 << 14, 1 << 7, 1]);
        // 512-byte hash blocks hold 16 digests.
        assert_eq!(Geometry::new(17, 512).unwrap().level_blocks, vec![2, 1]);
    }

    #[test]
    fn geometry_refuses_what_the_kernel_refuses() {
        assert!(Geometry::new(0, 4096).is_none());
        assert!(Geometry::new(8, 3000).is_none());
        assert!(Geometry::new(8, 32).is_none());
        assert!(Geometry::new(u64::MAX, 4096).is_some(), "no overflow for huge devices");
    }

    #[test]
    fn a_two_level_tree_is_laid_out_top_first() {
        let salt = [0xa5u8; 4];
        let g = Geometry::new(130, 4096).unwrap();
        let data: Vec<u8> = (0..130u32 * 4096).map(|i| u8::try_from(i / 4096).unwrap() ^ i.to_le_bytes()[0]).collect();
        let t = build_tree(&mut &data[..], 4096, &g, &salt).unwrap();
        assert_eq!(t.bytes.len(), 3 * 4096);
        // Level 0 follows the top block: its block 1 holds the digests of data blocks 128, 129.
        let l0b1 = &t.bytes[2 * 4096..3 * 4096];
        assert_eq!(&l0b1[..32], &salted(&salt, &data[128 * 4096..129 * 4096]));
        assert_eq!(&l0b1[32..64], &salted(&salt, &data[129 * 4096..130 * 4096]));
        assert!(l0b1[64..].iter().all(|&b| b == 0));
        // The top block holds the digests of the two level-0 blocks; the root is its digest.
        let top = &t.bytes[..4096];
        assert_eq!(&top[32..64], &salted(&salt, l0b1));
        assert_eq!(t.root, salted(&salt, top));
    }

    /// The pattern the vectors below were made from with cryptsetup 2.6.1:
    /// `veritysetup format --no-superblock --salt=7a74696e6974 DATA HASH`.
    fn vector_data(blocks: usize) -> Vec<u8> {
        (0..blocks * 4096).map(|i| u8::try_from((i * 7 + i / 4096) % 251).unwrap()).collect()
    }

    fn sha256_hex(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    #[test]
    fn trees_match_veritysetup() {
        let cases = [
            (1, "11c3b929f17cd32ccfe143b31cf3367568397ac4cacca1503f022842d0d971ce", 0, ""),
            (
                2,
                "4e3b550004e6d5dba701ad38cbed30e5face70c7a544a59d619aceee7ca22dee",
                4096,
                "09c6820946164d3bdbe59e12d1f67d91115440cd2c85f290a5e4a9a8f6e3b752",
            ),
            (
                300,
                "f45c22db0d0dc438e8454bb8a933a9e353f6bf1912a036c9949fc1bdfb2a8111",
                16384,
                "df766e1dbf791414f8884c1b6978e0a2d93e0d935602660e9756130548097cd6",
            ),
        ];
        for (blocks, root, tree_len, tree_sha) in cases {
            let data = vector_data(blocks);
            let g = Geometry::new(blocks as u64, 4096).unwrap();
            assert_eq!(g.hash_bytes(), tree_len as u64, "{blocks} blocks");
            let t = build_tree(&mut &data[..], 4096, &g, b"ztinit").unwrap();
            assert_eq!(hex::encode(t.root), root, "{blocks} blocks");
            assert_eq!(t.bytes.len(), tree_len, "{blocks} blocks");
            if tree_len > 0 {
                assert_eq!(sha256_hex(&t.bytes), tree_sha, "{blocks} blocks");
            }
        }
    }

    #[test]
    fn short_data_is_an_error() {
        let g = Geometry::new(2, 4096).unwrap();
        let err = build_tree(&mut &[0u8; 4096][..], 4096, &g, b"").err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
