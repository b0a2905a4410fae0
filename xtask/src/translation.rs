//! How much distinct code ztinit's phase of a boot runs, from QEMU's log of
//! what it translates (`-d in_asm,nochain`): `cargo xtask bench --only
//! translation`.
//!
//! Under TCG most of ztinit's time is QEMU translating code the guest runs
//! for the first time (README, "Where ztinit's time goes"). The number of
//! guest instructions QEMU translates between ztinit's first instruction
//! and the workload's first one is a measure of that cost which, unlike the
//! wall time, hardly moves from one boot to the next. Each is split into
//! the kernel's, ztinit's and any other user code's.

use anyhow::{Context, Result};

/// One translated block: its first guest address, the bytes of its first
/// instructions (up to [`CODE_BYTES`]), and how many instructions it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub start: u64,
    pub first_bytes: Vec<u8>,
    pub instructions: u64,
}

/// How many code bytes identify an entry point: musl's `_start` is the
/// same in every program up to its first RIP-relative operand.
const CODE_BYTES: usize = 16;

/// User space ends here on x86_64 (47-bit addresses); the kernel's own
/// addresses are above. Addresses under 4 GiB are the firmware's, and the
/// kernel's before it turns on paging.
const USER_END: u64 = 0x0000_8000_0000_0000;
const USER_START: u64 = 1 << 32;

/// The blocks of an `in_asm` log. A block starts at an `IN:` line; each of
/// its instructions is a line `0xADDR:  BYTES  MNEMONIC ...`.
pub fn parse_blocks(log: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut open = false;
    for line in log.lines() {
        if line.starts_with("IN:") {
            open = true;
            continue;
        }
        let Some((addr, rest)) = line.strip_prefix("0x").and_then(|l| l.split_once(':')) else {
            if line.starts_with("----") {
                open = false;
            }
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
        match blocks.last_mut() {
            Some(b) if !open => {
                b.instructions += 1;
                if b.first_bytes.len() < CODE_BYTES {
                    b.first_bytes.extend(hex_bytes(rest));
                    b.first_bytes.truncate(CODE_BYTES);
                }
            }
            _ => {
                open = false;
                blocks.push(Block { start: addr, first_bytes: hex_bytes(rest), instructions: 1 });
            }
        }
    }
    blocks
}

/// The instruction bytes at the start of `rest` (`48 31 ed   xorq ...`):
/// two-digit hex words up to the first other word.
fn hex_bytes(rest: &str) -> Vec<u8> {
    rest.split_whitespace().map_while(|w| if w.len() == 2 { u8::from_str_radix(w, 16).ok() } else { None }).collect()
}

/// A program whose first instruction marks a phase's start or end: its
/// entry point's low 12 bits (its load base is page-aligned), its first
/// code bytes, and how far its image reaches above its load base.
#[derive(Debug, Clone)]
pub struct Entry {
    pub entry: u64,
    pub code: Vec<u8>,
    pub span: u64,
}

impl Entry {
    pub fn of(path: &std::path::Path) -> Result<Entry> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let (entry, code) = crate::elf::entry_code(&bytes, CODE_BYTES).with_context(|| path.display().to_string())?;
        let span = crate::elf::load_span(&bytes).with_context(|| path.display().to_string())?;
        Ok(Entry { entry, code, span })
    }

    /// The load base when `b` is this program's first block.
    fn base_of(&self, b: &Block) -> Option<u64> {
        let user = (USER_START..USER_END).contains(&b.start);
        let same_page_offset = (b.start & 0xfff) == (self.entry & 0xfff);
        let n = b.first_bytes.len().min(self.code.len());
        let same_code = n > 0 && b.first_bytes[..n] == self.code[..n];
        (user && same_page_offset && same_code).then(|| b.start - self.entry)
    }
}

/// Translated instructions from the init's first block to the workload's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phase {
    pub kernel: u64,
    /// The init's own code: its image, from its load base on.
    pub init: u64,
    /// Other user code: the vDSO, and any helper the init starts.
    pub other_user: u64,
    pub blocks: u64,
    /// Translated before the init started (firmware, kernel boot).
    pub before: u64,
}

impl Phase {
    pub fn total(&self) -> u64 {
        self.kernel + self.init + self.other_user
    }
}

/// Where ztinit's phase lies in `blocks`: from the init's first block to
/// the workload's first block after it (exclusive), and the init's load
/// base. None when the init never started; a workload that never
/// starts ends the phase at the end of the log.
pub fn bounds(blocks: &[Block], init: &Entry, workload: &Entry) -> Option<Bounds> {
    let (start, base) = blocks.iter().enumerate().find_map(|(i, b)| Some((i, init.base_of(b)?)))?;
    let init_image = base..base.saturating_add(init.span);
    let end = blocks[start..]
        .iter()
        .position(|b| !init_image.contains(&b.start) && workload.base_of(b).is_some())
        .map_or(blocks.len(), |n| start + n);
    Some(Bounds { start, end, init_image })
}

/// [`bounds`]' result: block indices and the init's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    pub start: usize,
    pub end: usize,
    pub init_image: std::ops::Range<u64>,
}

/// The instructions translated in ztinit's phase ([`bounds`]), by owner.
pub fn phase(blocks: &[Block], init: &Entry, workload: &Entry) -> Option<Phase> {
    let b = bounds(blocks, init, workload)?;
    let mut p = Phase { before: blocks[..b.start].iter().map(|b| b.instructions).sum(), ..Phase::default() };
    for block in &blocks[b.start..b.end] {
        p.blocks += 1;
        if block.start >= USER_END {
            p.kernel += block.instructions;
        } else if b.init_image.contains(&block.start) {
            p.init += block.instructions;
        } else {
            p.other_user += block.instructions;
        }
    }
    Some(p)
}

/// Function start addresses and names, sorted: from `nm` output or the
/// kernel's `System.map` (`ADDRESS TYPE NAME` per line; only code).
#[derive(Debug, Default)]
pub struct Symbols(Vec<(u64, String)>);

impl Symbols {
    pub fn parse(text: &str) -> Symbols {
        let mut v: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut w = l.splitn(3, ' ');
                let (addr, kind, name) = (w.next()?, w.next()?, w.next()?);
                let code = matches!(kind, "t" | "T" | "w" | "W");
                code.then(|| Some((u64::from_str_radix(addr, 16).ok()?, name.trim().to_string())))?
            })
            .collect();
        v.sort();
        Symbols(v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The function `addr` falls in: the last symbol at or below it.
    pub fn name(&self, addr: u64) -> Option<&str> {
        let i = self.0.partition_point(|(a, _)| *a <= addr);
        i.checked_sub(1).map(|i| self.0[i].1.as_str())
    }
}

/// The kernel's KASLR offset: a multiple of 2 MiB (x86_64's
/// `CONFIG_PHYSICAL_ALIGN`) under which the most kernel blocks start
/// exactly at a symbol.
pub fn kernel_offset(blocks: &[Block], map: &Symbols) -> Option<u64> {
    const ALIGN: u64 = 2 << 20;
    let mut votes: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    let mut by_low: std::collections::HashMap<u64, Vec<u64>> = std::collections::HashMap::new();
    for (a, _) in &map.0 {
        by_low.entry(a % ALIGN).or_default().push(*a);
    }
    for b in blocks.iter().filter(|b| b.start >= USER_END) {
        for s in by_low.get(&(b.start % ALIGN)).into_iter().flatten() {
            *votes.entry(b.start.wrapping_sub(*s)).or_default() += 1;
        }
    }
    votes.into_iter().max_by_key(|&(offset, n)| (n, std::cmp::Reverse(offset))).map(|(offset, _)| offset)
}

/// (function, translated instructions), largest first.
pub type Counts = Vec<(String, u64)>;

/// Translated instructions per function in `blocks`: kernel code through
/// `kernel` shifted by `kernel_offset`, the init's through `init` from
/// `init_image.start`. Largest first.
pub fn by_function(
    blocks: &[Block],
    init_image: &std::ops::Range<u64>,
    init: &Symbols,
    kernel: Option<(&Symbols, u64)>,
) -> (Counts, Counts) {
    let mut user: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    let mut kern: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for b in blocks {
        if b.start >= USER_END {
            if let Some((map, offset)) = kernel {
                *kern.entry(map.name(b.start.wrapping_sub(offset)).unwrap_or("?")).or_default() += b.instructions;
            }
        } else if init_image.contains(&b.start) && !init.is_empty() {
            *user.entry(init.name(b.start - init_image.start).unwrap_or("?")).or_default() += b.instructions;
        }
    }
    let sorted = |m: std::collections::HashMap<&str, u64>| {
        let mut v: Vec<(String, u64)> = m.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    };
    (sorted(user), sorted(kern))
}

/// The crate of a demangled Rust function name (`<T as toml::de::X>::f`
/// → `toml`); C functions (musl, ring's assembly) are `C`.
pub fn crate_of(name: &str) -> &str {
    let mut rest = name;
    // `<T as trait::Path>::f` and `<alloc::vec::Vec<T> as ...>`: the first path inside.
    while let Some(r) = rest.strip_prefix('<').or_else(|| rest.strip_prefix('&')) {
        rest = r.trim_start_matches("mut ").trim_start_matches("dyn ");
    }
    // `T as alloc::slice::...`: the trait's crate.
    let first = rest.split_once("::").map(|(first, _)| first.rsplit(' ').next().unwrap_or(first));
    match first {
        Some(krate) if !krate.is_empty() && krate.chars().all(|c| c.is_alphanumeric() || c == '_') => krate,
        _ => "C",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "----------------
IN: 
0xfffffff0:  ea 5b e0 00 f0           ljmpw    $0xf000:$0xe05b

----------------
IN: 
0xffffffff81000000:  48 8d 25 51 3f 60 01     leaq     0x1603f51(%rip), %rsp
0xffffffff81000007:  e8 00 00 00 00           callq    0xffffffff8100000c

----------------
IN: 
0x7fc54ffa2450:  48 31 ed                 xorq     %rbp, %rbp
0x7fc54ffa2453:  48 89 e7                 movq     %rsp, %rdi
0x7fc54ffa2456:  48 8d 35 cb 64 27 00     leaq     0x2764cb(%rip), %rsi

----------------
IN: 
0xffffffff81234000:  0f 01 f8                 swapgs   
0xffffffff81234003:  c3                       retq     

----------------
IN: 
0x7ffd12345000:  55                       pushq    %rbp

----------------
IN: 
0x7f0000005cd0:  48 31 ed                 xorq     %rbp, %rbp
0x7f0000005cd3:  48 89 e7                 movq     %rsp, %rdi

----------------
IN: 
0x7fc54ffa3000:  c3                       retq     
";

    fn entry(entry: u64, code: &[u8]) -> Entry {
        Entry { entry, code: code.to_vec(), span: 0x30_0000 }
    }

    #[test]
    fn blocks_are_counted_by_instruction() {
        let b = parse_blocks(LOG);
        assert_eq!(b.len(), 7);
        assert_eq!(b[0], Block { start: 0xfffffff0, first_bytes: vec![0xea, 0x5b, 0xe0, 0x00, 0xf0], instructions: 1 });
        assert_eq!((b[1].start, b[1].instructions), (0xffffffff81000000, 2));
        let start = [0x48, 0x31, 0xed, 0x48, 0x89, 0xe7, 0x48, 0x8d, 0x35, 0xcb, 0x64, 0x27, 0x00];
        assert_eq!((b[2].start, b[2].instructions, &b[2].first_bytes[..]), (0x7fc54ffa2450, 3, &start[..]));
    }

    #[test]
    fn the_phase_runs_from_the_init_s_entry_to_the_workload_s() {
        let blocks = parse_blocks(LOG);
        let init = entry(0xa450, &[0x48, 0x31, 0xed, 0x48, 0x89, 0xe7, 0x48, 0x8d, 0x35, 0xcb, 0x64, 0x27, 0x00, 0x48]);
        let workload = entry(0x5cd0, &[0x48, 0x31, 0xed, 0x48, 0x89, 0xe7, 0x48, 0x8d, 0x35, 0x11]);
        let p = phase(&blocks, &init, &workload).unwrap();
        // The init's 3, the kernel's 2, the vDSO's 1; the firmware's 1 and
        // the kernel's 2 came before; the workload's entry ends it, so the
        // init block after it is not counted.
        assert_eq!(p, Phase { kernel: 2, init: 3, other_user: 1, blocks: 3, before: 3 });
        assert_eq!(p.total(), 6);
    }

    #[test]
    fn an_entry_needs_its_page_offset_its_code_and_a_user_address() {
        let blocks = parse_blocks(LOG);
        let workload = entry(0x5cd0, &[0x48, 0x31, 0xed]);
        // Other code at the right page offset is not the entry.
        assert_eq!(phase(&blocks, &entry(0xa450, &[0x90, 0x90]), &workload), None);
        // Nor is another program's `_start`, the same up to its `lea`.
        let other = entry(0xa450, &[0x48, 0x31, 0xed, 0x48, 0x89, 0xe7, 0x48, 0x8d, 0x35, 0x01, 0x02, 0x03, 0x04]);
        assert_eq!(phase(&blocks, &other, &workload), None);
        // Nor is the right code at another offset.
        assert_eq!(phase(&blocks, &entry(0xa460, &[0x48, 0x31, 0xed]), &workload), None);
        // The firmware's reset vector sits under 4 GiB, whatever its bytes.
        assert!(entry(0xff0, &[0xea]).base_of(&parse_blocks(LOG)[0]).is_none());
    }

    #[test]
    fn functions_are_found_by_address_and_the_kernel_by_its_kaslr_offset() {
        let map = Symbols::parse(
            "ffffffff81000000 T startup_64\nffffffff81000010 t secondary\nffffffff81234000 T entry_SYSCALL_64\n\
             ffffffff81300000 D some_data\n",
        );
        assert_eq!(map.name(0xffffffff81000008), Some("startup_64"));
        assert_eq!(map.name(0xffffffff81234003), Some("entry_SYSCALL_64"));
        assert_eq!(map.name(0xffffffff80000000), None);
        // Data symbols are not functions.
        assert_eq!(map.name(0xffffffff81300004), Some("entry_SYSCALL_64"));
        let shifted = LOG.replace("0xffffffff81", "0xffffffff9d");
        let blocks = parse_blocks(&shifted);
        let offset = kernel_offset(&blocks, &map).unwrap();
        assert_eq!(offset, 0x1c00_0000);
        let ztinit = Symbols::parse(
            "000000000000a450 T _start\n000000000000b000 t ring_core_0_17_sha512_block_data_order_nohw\n",
        );
        let b = bounds(&blocks, &entry(0xa450, &[0x48, 0x31, 0xed]), &entry(0x5cd0, &[0x48, 0x31, 0xed])).unwrap();
        let (user, kernel) = by_function(&blocks[b.start..b.end], &b.init_image, &ztinit, Some((&map, offset)));
        assert_eq!(user, vec![("_start".to_string(), 3)]);
        assert_eq!(kernel, vec![("entry_SYSCALL_64".to_string(), 2)]);
    }

    #[test]
    fn crates_of_demangled_names() {
        assert_eq!(crate_of("<toml::value::Value as serde_core::de::Deserializer>::deserialize_any"), "toml");
        assert_eq!(crate_of("<T as alloc::slice::hack::ConvertVec>::to_vec"), "alloc");
        assert_eq!(crate_of("<&mut serde_json::ser::Serializer<W,F> as x::Y>::f"), "serde_json");
        assert_eq!(crate_of("ztinit::stages::early"), "ztinit");
        assert_eq!(crate_of("memcpy"), "C");
        assert_eq!(crate_of("ring_core_0_17_14__sha512_block_data_order_nohw"), "C");
    }

    #[test]
    fn a_workload_that_never_starts_ends_the_phase_at_the_log_s_end() {
        let log = LOG.replace("0x7f0000005cd0:  48 31 ed", "0x7f0000005cd0:  90 90 90");
        let blocks = parse_blocks(&log);
        let init = entry(0xa450, &[0x48, 0x31, 0xed]);
        let p = phase(&blocks, &init, &entry(0x5cd0, &[0x48, 0x31, 0xed])).unwrap();
        assert_eq!((p.init, p.other_user, p.kernel), (4, 3, 2));
    }
}
