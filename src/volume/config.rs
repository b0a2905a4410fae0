//! The `[[volumes]]` configuration section.
//!
//! Everything that decides what the guest will trust about a volume (the
//! verity root hash, salt and geometry, the cipher, the KBS resource of the
//! key) comes from here, that is from the measured baked config; nothing is
//! read from the disk's own metadata.

use serde::Deserialize;

use super::verity::{self, Geometry};
use crate::kbs::ResourcePath;
use crate::schema::{Section, Validator};

/// The only cipher offered: what `cargo xtask model-volume` writes.
pub const DEFAULT_CIPHER: &str = "aes-xts-plain64";
/// virtio-blk serials are at most 20 bytes (`VIRTIO_BLK_ID_BYTES`).
pub const MAX_SERIAL_LEN: usize = 20;
/// Volume names become device-mapper names (`NAME`, `NAME-verity`).
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    #[default]
    Erofs,
    Ext4,
}

impl Filesystem {
    pub fn as_str(self) -> &'static str {
        match self {
            Filesystem::Erofs => "erofs",
            Filesystem::Ext4 => "ext4",
        }
    }
}

/// When the whole ciphertext is checked against the verity tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Read every block once while opening: a changed byte anywhere stops the
    /// boot before the workload runs. Costs one full read of the volume.
    #[default]
    Full,
    /// Only blocks the workload reads are checked, as it reads them: a changed
    /// block gives the workload an I/O error instead of data.
    Lazy,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct VerityConfig {
    /// Hex SHA-256 root digest printed by `cargo xtask model-volume`.
    pub root_hash: String,
    /// Hex salt (may be empty).
    pub salt: String,
    /// Number of data blocks covered (the ciphertext size / data_block_size).
    pub data_blocks: u64,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    /// Byte offset of the hash tree on the same disk (after the data).
    pub hash_offset: u64,
}

impl Default for VerityConfig {
    fn default() -> Self {
        Self {
            root_hash: String::new(),
            salt: String::new(),
            data_blocks: 0,
            data_block_size: 4096,
            hash_block_size: 4096,
            hash_offset: 0,
        }
    }
}

impl VerityConfig {
    pub fn geometry(&self) -> Option<Geometry> {
        Geometry::new(self.data_blocks, self.hash_block_size)
    }

    /// Bytes of ciphertext covered.
    pub fn data_bytes(&self) -> u64 {
        self.data_blocks.saturating_mul(u64::from(self.data_block_size))
    }

    /// Bytes the disk must hold: the data and the tree after it.
    pub fn required_bytes(&self) -> Option<u64> {
        let g = self.geometry()?;
        self.hash_offset.checked_add(g.hash_bytes()).map(|end| end.max(self.data_bytes()))
    }

    fn validate(&self, v: &mut Validator<'_>) {
        if self.root_hash.len() != 64 || hex::decode(&self.root_hash).is_err() {
            v.error("root_hash", "must be the 64 hex digits of a SHA-256 digest");
        }
        match hex::decode(&self.salt) {
            Ok(s) if s.len() <= verity::MAX_SALT_BYTES => {}
            _ => v.error("salt", format!("must be hex of at most {} bytes", verity::MAX_SALT_BYTES)),
        }
        for (key, size) in [("data_block_size", self.data_block_size), ("hash_block_size", self.hash_block_size)] {
            if !(512..=4096).contains(&size) || !size.is_power_of_two() {
                v.error(key, format!("{size} must be 512, 1024, 2048 or 4096"));
            }
        }
        if self.data_blocks == 0 {
            v.error("data_blocks", "required: the number of data blocks the tree covers");
        } else if !self.data_bytes().is_multiple_of(512) || self.data_blocks > (u64::MAX >> 13) {
            v.error("data_blocks", "too large");
        }
        if self.hash_block_size.is_power_of_two() && !self.hash_offset.is_multiple_of(u64::from(self.hash_block_size)) {
            v.error("hash_offset", "must be a multiple of hash_block_size");
        }
        if self.hash_offset < self.data_bytes() {
            v.error("hash_offset", "the hash tree must start after the data (data_blocks * data_block_size)");
        }
    }
}

/// One volume. Only `key` has no default; the other required keys
/// (`name`, `serial`, `mountpoint`) are checked with their rules below.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    /// Names the volume in messages and its device-mapper devices.
    #[serde(default)]
    pub name: String,
    /// The virtio-blk serial of the disk (QEMU `-drive ...,serial=`).
    #[serde(default)]
    pub serial: String,
    /// KBS resource holding the raw key: `repo/type/tag`.
    pub key: ResourcePath,
    #[serde(default = "default_cipher")]
    pub cipher: String,
    /// Key length in bytes: 64 (AES-256-XTS) or 32 (AES-128-XTS).
    #[serde(default = "default_key_size")]
    pub key_size: u32,
    /// dm-crypt's encryption unit in bytes, 512 or 4096: with 4096 the
    /// kernel runs the cipher once per 4 KiB instead of eight times. The
    /// ciphertext must have been written with the same unit (`cargo xtask
    /// model-volume --sector-size`).
    #[serde(default = "default_sector_size")]
    pub sector_size: u32,
    #[serde(default)]
    pub filesystem: Filesystem,
    /// Where the plaintext filesystem is mounted, read-only.
    #[serde(default)]
    pub mountpoint: String,
    /// Allow executing files from the volume (default: noexec).
    #[serde(default)]
    pub exec: bool,
    #[serde(default)]
    pub verify: VerifyMode,
    /// How long to wait for the disk to appear.
    #[serde(default = "default_device_timeout_ms")]
    pub device_timeout_ms: u64,
    #[serde(default)]
    pub verity: VerityConfig,
}

fn default_cipher() -> String {
    DEFAULT_CIPHER.into()
}

fn default_key_size() -> u32 {
    64
}

fn default_sector_size() -> u32 {
    4096
}

fn default_device_timeout_ms() -> u64 {
    5_000
}

impl VolumeConfig {
    /// A volume with every default and the given key (tests, tools).
    pub fn with_key(key: ResourcePath) -> Self {
        Self {
            name: String::new(),
            serial: String::new(),
            key,
            cipher: default_cipher(),
            key_size: default_key_size(),
            sector_size: default_sector_size(),
            filesystem: Filesystem::default(),
            mountpoint: String::new(),
            exec: false,
            verify: VerifyMode::default(),
            device_timeout_ms: default_device_timeout_ms(),
            verity: VerityConfig::default(),
        }
    }
}

impl Section for VolumeConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_NAME_LEN
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            v.error("name", format!("{:?} must be 1-{MAX_NAME_LEN} of a-z, 0-9, '-', '_'", self.name));
        }
        let serial_ok = !self.serial.is_empty()
            && self.serial.len() <= MAX_SERIAL_LEN
            && self.serial.bytes().all(|b| b.is_ascii_graphic());
        if !serial_ok {
            v.error("serial", format!("{:?} must be 1-{MAX_SERIAL_LEN} printable ASCII characters", self.serial));
        }
        if self.cipher != DEFAULT_CIPHER {
            v.error("cipher", format!("{:?} is not supported (only {DEFAULT_CIPHER})", self.cipher));
        }
        if self.key_size != 32 && self.key_size != 64 {
            v.error("key_size", format!("{} must be 64 (AES-256-XTS) or 32 (AES-128-XTS)", self.key_size));
        }
        if self.sector_size != 512 && self.sector_size != 4096 {
            v.error("sector_size", format!("{} must be 4096 or 512", self.sector_size));
        } else if !self.verity.data_bytes().is_multiple_of(u64::from(self.sector_size)) {
            v.error(
                "sector_size",
                format!(
                    "the data (verity.data_blocks * data_block_size) is not a whole number of {}-byte sectors",
                    self.sector_size
                ),
            );
        }
        if self.mountpoint.is_empty() {
            v.error("mountpoint", "required: where the volume is mounted");
        } else if v.absolute_path("mountpoint", &self.mountpoint) && self.mountpoint == "/" {
            v.error("mountpoint", "must not be /");
        }
        v.range("device_timeout_ms", self.device_timeout_ms, 0, 600_000);
        self.verity.validate(&mut v.at("verity"));
    }
}

/// The `[[volumes]]` array: each entry checked alone, then against the
/// others (names, serials and mountpoints must be unique).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Volumes(pub Vec<VolumeConfig>);

impl std::ops::Deref for Volumes {
    type Target = [VolumeConfig];
    fn deref(&self) -> &[VolumeConfig] {
        &self.0
    }
}

impl Section for Volumes {
    fn validate(&self, v: &mut Validator<'_>) {
        for (i, volume) in self.0.iter().enumerate() {
            volume.validate(&mut v.index(i));
        }
        for (i, a) in self.0.iter().enumerate() {
            for b in &self.0[..i] {
                for (key, x, y) in [
                    ("name", &a.name, &b.name),
                    ("serial", &a.serial, &b.serial),
                    ("mountpoint", &a.mountpoint, &b.mountpoint),
                ] {
                    if x == y {
                        v.index(i).error(key, format!("{x:?} is used by another volume"));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, NoFiles, Sources};

    use super::*;

    const ROOT: &str = "f45c22db0d0dc438e8454bb8a933a9e353f6bf1912a036c9949fc1bdfb2a8111";

    fn volume_toml(extra: &str) -> String {
        format!(
            "[workload]\npath = \"/bin/app\"\n[tee]\naccept = [\"sample\"]\nallow_sample = true\n\n[kbs]\nurl = \"http://10.0.2.100:8080\"\ninsecure_http = true\n\n[[volumes]]\nname = \"model\"\nserial = \"ztmodel\"\n\
             key = \"default/model/key\"\nmountpoint = \"/models\"\n{extra}\n[volumes.verity]\n\
             root_hash = \"{ROOT}\"\nsalt = \"7a74696e6974\"\ndata_blocks = 300\nhash_offset = 1228800\n"
        )
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::load(Sources { origin: "ztinit.toml", text, cmdline: None, files: &NoFiles })
    }

    fn keys(text: &str) -> Vec<(String, String)> {
        match load(text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(ConfigError::Invalid(i)) => i.into_iter().map(|i| (i.key, i.message)).collect(),
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    #[test]
    fn a_volume_loads_with_defaults() {
        let c = load(&volume_toml("")).unwrap_or_else(|e| panic!("{:?}", e.issues()));
        let v = &c.volumes[0];
        assert_eq!(v.name, "model");
        assert_eq!(v.cipher, "aes-xts-plain64");
        assert_eq!(v.key_size, 64);
        assert_eq!(v.sector_size, 4096);
        assert_eq!(v.filesystem, Filesystem::Erofs);
        assert_eq!(v.verify, VerifyMode::Full);
        assert!(!v.exec);
        assert_eq!(v.verity.data_block_size, 4096);
        assert_eq!(v.verity.required_bytes(), Some(1228800 + 16384));
    }

    #[test]
    fn bad_values_are_reported_by_key() {
        let text = volume_toml("cipher = \"aes-cbc-plain\"\nkey_size = 48\nfilesystem = \"ext4\"\n")
            .replace("name = \"model\"", "name = \"Model!\"")
            .replace("serial = \"ztmodel\"", "serial = \"a-serial-longer-than-20\"")
            .replace("\"/models\"", "\"models\"")
            .replace(ROOT, "abc")
            .replace("7a74696e6974", "xyz")
            .replace("hash_offset = 1228800", "hash_offset = 4096");
        let mut k = keys(&text);
        // Issues come in line order; compare by key.
        k.sort();
        let names: Vec<&str> = k.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "volumes[0].cipher",
                "volumes[0].key_size",
                "volumes[0].mountpoint",
                "volumes[0].name",
                "volumes[0].serial",
                "volumes[0].verity.hash_offset",
                "volumes[0].verity.root_hash",
                "volumes[0].verity.salt",
            ],
            "{k:?}"
        );
        assert!(k[0].1.contains("only aes-xts-plain64"));
        assert!(k[5].1.contains("after the data"));
    }

    #[test]
    fn the_key_is_a_resource_path_or_the_volume_is_refused() {
        let long = format!("a/b/{}", "c".repeat(129));
        for bad in ["default/model", "a/b/c/d", "a//c", "a/../c", "a/.b/c", "a/b/c?x", "", "/a/b", &long] {
            let k = keys(&volume_toml("").replace("default/model/key", bad));
            assert_eq!(k.len(), 1, "{bad}: {k:?}");
            assert_eq!(k[0].0, "volumes[0].key", "{bad}");
            assert!(k[0].1.contains("resource path"), "{bad}: {}", k[0].1);
        }
        let k = keys(&volume_toml("").replace("key = \"default/model/key\"\n", ""));
        assert_eq!(k, [("volumes[0]".to_string(), "missing field `key`".to_string())]);
    }

    #[test]
    fn verity_geometry_is_checked() {
        let text = volume_toml("")
            .replace("data_blocks = 300", "data_blocks = 0")
            .replace("hash_offset = 1228800", "hash_offset = 1000\nhash_block_size = 3000");
        let mut k = keys(&text);
        k.sort();
        let names: Vec<&str> = k.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["volumes[0].verity.data_blocks", "volumes[0].verity.hash_block_size"], "{k:?}");
        let text = volume_toml("").replace("hash_offset = 1228800", "hash_offset = 1228801");
        assert_eq!(keys(&text)[0].0, "volumes[0].verity.hash_offset");
    }

    #[test]
    fn the_sector_size_is_512_or_4096_and_divides_the_data() {
        assert_eq!(load(&volume_toml("sector_size = 512\n")).unwrap().volumes[0].sector_size, 512);
        let k = keys(&volume_toml("sector_size = 1024\n"));
        assert_eq!(k, [("volumes[0].sector_size".to_string(), "1024 must be 4096 or 512".to_string())]);
        let odd = volume_toml("").replace("data_blocks = 300", "data_blocks = 301\ndata_block_size = 512");
        let k = keys(&odd);
        assert_eq!(k.len(), 1, "{k:?}");
        assert_eq!(k[0].0, "volumes[0].sector_size");
        assert!(k[0].1.contains("not a whole number of 4096-byte sectors"), "{}", k[0].1);
        assert!(load(&odd.replace("mountpoint", "sector_size = 512\nmountpoint")).is_ok());
    }

    #[test]
    fn verity_errors_name_their_own_line() {
        let text = volume_toml("").replace(ROOT, "abc");
        let want = text.lines().position(|l| l.starts_with("root_hash")).unwrap() + 1;
        match load(&text) {
            Err(ConfigError::Invalid(i)) => {
                assert_eq!(i[0].key, "volumes[0].verity.root_hash");
                assert_eq!(i[0].line, Some(want), "{}", i[0]);
            }
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let k = keys(&volume_toml("read_write = true\n"));
        assert_eq!(k, [("volumes[0].read_write".to_string(), "unknown key".to_string())]);
    }

    #[test]
    fn volumes_must_not_collide() {
        let one = volume_toml("");
        let second = one.split("[[volumes]]").nth(1).unwrap().replace("\"ztmodel\"", "\"other\"");
        let text = format!("{one}\n[[volumes]]{second}");
        let k = keys(&text);
        let names: Vec<&str> = k.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["volumes[1].name", "volumes[1].mountpoint"], "{k:?}");
    }
}
