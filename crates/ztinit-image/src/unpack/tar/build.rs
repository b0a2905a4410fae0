//! A minimal tar writer for tests: ustar headers, PAX and GNU long-name
//! records, written byte by byte so tests control every field (including
//! the broken ones).

/// A ustar header block with a valid checksum; `name` and `link` are cut
/// at 100 bytes (use the long-name records for more).
pub fn header_block(name: &[u8], flag: u8, mode: u32, uid: u64, gid: u64, size: u64, link: &[u8]) -> [u8; 512] {
    let mut b = [0u8; 512];
    let n = name.len().min(100);
    b[..n].copy_from_slice(&name[..n]);
    octal(&mut b[100..108], u64::from(mode));
    octal(&mut b[108..116], uid);
    octal(&mut b[116..124], gid);
    octal(&mut b[124..136], size);
    octal(&mut b[136..148], 1_700_000_000);
    b[156] = flag;
    let l = link.len().min(100);
    b[157..157 + l].copy_from_slice(&link[..l]);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    fix_checksum(&mut b);
    b
}

fn octal(field: &mut [u8], value: u64) {
    let last = field.len() - 1;
    let text = format!("{value:0last$o}");
    field[..last].copy_from_slice(text.as_bytes());
    field[last] = 0;
}

pub fn fix_checksum(b: &mut [u8; 512]) {
    b[148..156].copy_from_slice(b"        ");
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    let text = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(text.as_bytes());
}

#[derive(Default)]
pub struct TarBuilder {
    out: Vec<u8>,
    pub uid: u64,
    pub gid: u64,
}

impl TarBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// An entry with explicit fields; `data` is written (padded) whatever
    /// `size` says.
    pub fn raw_entry(&mut self, name: &[u8], flag: u8, mode: u32, size: u64, data: &[u8], link: &[u8]) {
        let block = header_block(name, flag, mode, self.uid, self.gid, size, link);
        self.out.extend_from_slice(&block);
        self.data(data);
    }

    fn data(&mut self, data: &[u8]) {
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.resize(self.out.len() + pad, 0);
    }

    pub fn file(&mut self, name: &[u8], data: &[u8], mode: u32) {
        self.raw_entry(name, b'0', mode, u64::try_from(data.len()).unwrap(), data, b"");
    }

    pub fn dir(&mut self, name: &[u8], mode: u32) {
        self.raw_entry(name, b'5', mode, 0, b"", b"");
    }

    pub fn symlink(&mut self, name: &[u8], target: &[u8]) {
        self.raw_entry(name, b'2', 0o777, 0, b"", target);
    }

    pub fn hardlink(&mut self, name: &[u8], target: &[u8]) {
        self.raw_entry(name, b'1', 0o644, 0, b"", target);
    }

    pub fn node(&mut self, name: &[u8], flag: u8) {
        self.raw_entry(name, flag, 0o600, 0, b"", b"");
    }

    fn records(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, value) in records {
            let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut len = body_len + 1;
            while format!("{len}").len() + body_len != len {
                len += 1;
            }
            out.extend_from_slice(format!("{len} {key}=").as_bytes());
            out.extend_from_slice(value);
            out.push(b'\n');
        }
        out
    }

    pub fn pax(&mut self, records: &[(&str, &[u8])]) {
        let data = Self::records(records);
        self.raw_entry(b"PaxHeaders/x", b'x', 0o644, u64::try_from(data.len()).unwrap(), &data, b"");
    }

    pub fn global_pax(&mut self, records: &[(&str, &[u8])]) {
        let data = Self::records(records);
        self.raw_entry(b"GlobalHead", b'g', 0o644, u64::try_from(data.len()).unwrap(), &data, b"");
    }

    pub fn gnu_long_name(&mut self, name: &[u8]) {
        let mut data = name.to_vec();
        data.push(0);
        self.raw_entry(b"././@LongLink", b'L', 0o644, u64::try_from(data.len()).unwrap(), &data, b"");
    }

    pub fn gnu_long_link(&mut self, name: &[u8]) {
        let mut data = name.to_vec();
        data.push(0);
        self.raw_entry(b"././@LongLink", b'K', 0o644, u64::try_from(data.len()).unwrap(), &data, b"");
    }

    /// The archive with its two zero blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.resize(self.out.len() + 1024, 0);
        self.out
    }
}
