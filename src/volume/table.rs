//! Table lines for the two device-mapper targets
//! (linux-6.12 Documentation/admin-guide/device-mapper/{verity,dm-crypt}.rst).
//!
//! Devices are named `MAJOR:MINOR`, which `dm_get_device` accepts, so no
//! device node is needed for the disk or the intermediate verity device.

use zeroize::Zeroizing;

/// Whether dm-crypt decrypts reads inline (`no_read_workqueue`): no. With
/// it the 16 MiB `volume-bench` read at 30-34 MiB/s, without it at 32-39
/// (three boots each, interleaved, TCG with 2 vCPUs): kcryptd decrypts on
/// the other vCPU while the reader goes on. Kept as a switch for that
/// measurement.
pub const READ_WORKQUEUE_OFF: bool = false;

use super::config::VerityConfig;
use super::dm::DevId;

/// `verity` parameters: version 1, the same disk for data and hash tree,
/// SHA-256, everything from the measured config. Returns the parameters and
/// the target length in 512-byte sectors.
pub fn verity(disk: DevId, v: &VerityConfig) -> (String, u64) {
    let sectors = v.data_blocks * u64::from(v.data_block_size) / 512;
    let hash_start_block = v.hash_offset / u64::from(v.hash_block_size);
    let salt = if v.salt.is_empty() { "-".to_string() } else { v.salt.to_ascii_lowercase() };
    let params = format!(
        "1 {disk} {disk} {} {} {} {hash_start_block} sha256 {} {salt}",
        v.data_block_size,
        v.hash_block_size,
        v.data_blocks,
        v.root_hash.to_ascii_lowercase(),
    );
    (params, sectors)
}

/// `crypt` parameters with the key in hex: `<cipher> <key> <iv_offset>
/// <device> <offset> [<#opt> <opt>...]`, IV offset 0, data from sector 0.
/// `sector_size` is the encryption unit; above 512 it is passed as
/// `sector_size:N` and the IV still counts 512-byte sectors (no
/// `iv_large_sectors`, as cryptsetup's LUKS2 does), which is what
/// `cargo xtask model-volume` writes.
///
/// `no_read_workqueue` only when [`READ_WORKQUEUE_OFF`] says so (it was
/// measured slower). The volume is read-only, so `no_write_workqueue` would
/// change nothing.
///
/// The string lives in a `Zeroizing` buffer sized up front, so no
/// reallocation leaves a copy of the key behind.
pub fn crypt(cipher: &str, key: &[u8], device: DevId, sector_size: u32) -> Zeroizing<String> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut options = Vec::new();
    if sector_size != 512 {
        options.push(format!("sector_size:{sector_size}"));
    }
    if READ_WORKQUEUE_OFF {
        options.push("no_read_workqueue".to_string());
    }
    let mut tail = format!(" 0 {device} 0");
    if !options.is_empty() {
        tail.push_str(&format!(" {} {}", options.len(), options.join(" ")));
    }
    let mut s = Zeroizing::new(String::with_capacity(cipher.len() + 1 + 2 * key.len() + tail.len()));
    s.push_str(cipher);
    s.push(' ');
    for b in key {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s.push_str(&tail);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verity_line_matches_the_documented_format() {
        let v = VerityConfig {
            root_hash: "F45C22DB0D0DC438E8454BB8A933A9E353F6BF1912A036C9949FC1BDFB2A8111".into(),
            salt: "7a74696e6974".into(),
            data_blocks: 300,
            data_block_size: 4096,
            hash_block_size: 4096,
            hash_offset: 300 * 4096,
        };
        let (params, sectors) = verity(DevId { major: 253, minor: 16 }, &v);
        assert_eq!(
            params,
            "1 253:16 253:16 4096 4096 300 300 sha256 \
             f45c22db0d0dc438e8454bb8a933a9e353f6bf1912a036c9949fc1bdfb2a8111 7a74696e6974"
        );
        assert_eq!(sectors, 2400);
        let (params, _) = verity(DevId { major: 8, minor: 0 }, &VerityConfig { salt: String::new(), ..v });
        assert!(params.ends_with(" -"), "an empty salt is written as '-': {params}");
    }

    #[test]
    fn crypt_line_carries_the_key_in_hex() {
        let key: Vec<u8> = (0..64).collect();
        let hex_key: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let queue = if READ_WORKQUEUE_OFF { " no_read_workqueue" } else { "" };
        let count = |n: usize| n + usize::from(READ_WORKQUEUE_OFF);
        let s = crypt("aes-xts-plain64", &key, DevId { major: 252, minor: 0 }, 4096);
        assert_eq!(*s, format!("aes-xts-plain64 {hex_key} 0 252:0 0 {} sector_size:4096{queue}", count(1)));
        assert_eq!(s.len(), s.capacity(), "no reallocation, so no stray copy of the key");
        let s = crypt("aes-xts-plain64", &key, DevId { major: 252, minor: 0 }, 512);
        let tail = if READ_WORKQUEUE_OFF { " 1 no_read_workqueue" } else { "" };
        assert_eq!(*s, format!("aes-xts-plain64 {hex_key} 0 252:0 0{tail}"));
    }
}
