//! Which kernel implementation serves a volume's cipher and hash: the
//! driver of highest priority in `/proc/crypto` for the algorithm. Logged
//! after the volumes open, so a slow generic driver (no AES-NI, no SHA
//! extensions in the VM's CPU model) is visible in the boot log and the
//! bench.

/// The algorithms a volume uses: dm-crypt's `aes-xts-plain64` is the
/// kernel's `xts(aes)`, dm-verity hashes with `sha256`.
pub const VOLUME_ALGORITHMS: &[&str] = &["xts(aes)", "sha256"];

/// For each of `names`, the driver `/proc/crypto` lists with the highest
/// priority (the one the kernel instantiates), or `None` if it lists none.
pub fn chosen_drivers<'a>(proc_crypto: &'a str, names: &[&'a str]) -> Vec<(&'a str, Option<&'a str>)> {
    let mut best: Vec<(&str, Option<(&str, i64)>)> = names.iter().map(|n| (*n, None)).collect();
    for block in proc_crypto.split("\n\n") {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim())
            })
        };
        let (Some(name), Some(driver)) = (field("name"), field("driver")) else { continue };
        let priority = field("priority").and_then(|p| p.parse::<i64>().ok()).unwrap_or(0);
        for (want, chosen) in best.iter_mut() {
            if *want == name && chosen.is_none_or(|(_, p)| priority > p) {
                *chosen = Some((driver, priority));
            }
        }
    }
    best.into_iter().map(|(n, c)| (n, c.map(|(d, _)| d))).collect()
}

/// "xts(aes) by xts-aes-aesni, sha256 by sha256-avx2" from the running
/// kernel's `/proc/crypto` at `path`.
pub fn describe(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    chosen_drivers(&text, VOLUME_ALGORITHMS)
        .into_iter()
        .map(|(name, driver)| format!("{name} by {}", driver.unwrap_or("(not listed)")))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_CRYPTO: &str = "name         : xts(aes)\n\
driver       : xts(ecb(aes-generic))\n\
module       : kernel\n\
priority     : 100\n\
\n\
name         : xts(aes)\n\
driver       : xts-aes-aesni\n\
module       : kernel\n\
priority     : 401\n\
\n\
name         : sha256\n\
driver       : sha256-generic\n\
priority     : 100\n\
\n\
name         : sha256\n\
driver       : sha256-ssse3\n\
priority     : 150\n";

    #[test]
    fn the_highest_priority_driver_is_the_one_in_use() {
        assert_eq!(
            chosen_drivers(PROC_CRYPTO, &["xts(aes)", "sha256", "sha512"]),
            [("xts(aes)", Some("xts-aes-aesni")), ("sha256", Some("sha256-ssse3")), ("sha512", None)]
        );
    }

    #[test]
    fn describe_names_each_algorithm() {
        let dir = std::env::temp_dir().join(format!("ztinit-crypto-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("crypto");
        std::fs::write(&path, PROC_CRYPTO).unwrap();
        assert_eq!(describe(&path), "xts(aes) by xts-aes-aesni, sha256 by sha256-ssse3");
        assert_eq!(describe(&dir.join("absent")), "xts(aes) by (not listed), sha256 by (not listed)");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
