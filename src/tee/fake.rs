//! A stand-in for the kernel's configfs-tsm, at the [`ConfigFs`] interface,
//! over a real temporary directory. It does what the kernel does on each
//! operation: `mkdir` creates the attribute files, a write to `inblob`
//! bumps `generation` and regenerates `outblob` from a recorded report or
//! quote with the inblob at its REPORT_DATA offset, `rmdir` removes the
//! attributes with the directory. Faults reproduce the kernel's errors.
//!
//! [`FakeTdxGuest`] stands in for `/dev/tdx_guest` at the [`TdxGuest`]
//! interface: it answers `TDX_CMD_GET_REPORT0` with a TDREPORT built from
//! recorded fields (no public TDREPORT matches the sample quotes, so the
//! tests build the one the TDX module would give for a quote's body), with
//! the requested REPORTDATA, as the TDX module does.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::REPORT_DATA_LEN;
use super::tdx::{TdxGuest, TdxReport};
use super::tsm::{ConfigFs, RealConfigFs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Someone else writes to our report between our write and read.
    ConcurrentWriter,
    /// The provider is unregistered after mkdir (module unloaded): ENOTTY.
    ProviderVanishes,
    /// The report directory is removed under us: ENOENT.
    DirectoryVanishes,
    /// Reading outblob fails with this errno.
    OutblobErrno(i32),
    /// mkdir fails with this errno.
    MkdirErrno(i32),
    /// The report does not take the inblob (a lying provider).
    IgnoresInblob,
    /// outblob is cut to this many bytes.
    Truncate(usize),
    /// outblob gets this many extra bytes.
    Extend(usize),
}

pub struct FakeTsm {
    real: RealConfigFs,
    pub provider: Option<&'static str>,
    pub template: Vec<u8>,
    pub report_data_offset: usize,
    pub auxblob: Option<Vec<u8>>,
    pub fault: Fault,
    pub created: Mutex<Vec<PathBuf>>,
    pub removed: Mutex<Vec<PathBuf>>,
}

impl FakeTsm {
    pub fn new(provider: Option<&'static str>, template: Vec<u8>, report_data_offset: usize) -> Self {
        Self {
            real: RealConfigFs,
            provider,
            template,
            report_data_offset,
            auxblob: None,
            fault: Fault::None,
            created: Mutex::new(Vec::new()),
            removed: Mutex::new(Vec::new()),
        }
    }

    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    pub fn with_auxblob(mut self, aux: Vec<u8>) -> Self {
        self.auxblob = Some(aux);
        self
    }

    /// Every directory created was removed again.
    pub fn all_removed(&self) -> bool {
        let created = self.created.lock().unwrap();
        let removed = self.removed.lock().unwrap();
        !created.is_empty() && created.iter().all(|c| removed.contains(c)) && created.iter().all(|c| !c.exists())
    }

    fn errno(e: i32) -> io::Error {
        io::Error::from_raw_os_error(e)
    }

    fn generation(dir: &Path) -> u64 {
        std::fs::read_to_string(dir.join("generation")).unwrap().trim().parse().unwrap()
    }
}

fn name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

impl ConfigFs for FakeTsm {
    fn is_dir(&self, path: &Path) -> bool {
        self.real.is_dir(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        if let Fault::MkdirErrno(e) = self.fault {
            return Err(Self::errno(e));
        }
        // tsm_report_make_item(): no provider registered.
        if self.provider.is_none() {
            return Err(Self::errno(libc::ENXIO));
        }
        self.real.create_dir(path)?;
        self.created.lock().unwrap().push(path.to_path_buf());
        std::fs::write(path.join("provider"), self.provider.map(|p| format!("{p}\n")).unwrap_or_default())?;
        std::fs::write(path.join("generation"), "0\n")?;
        std::fs::write(path.join("inblob"), b"")?;
        std::fs::write(path.join("outblob"), b"")?;
        if let Some(aux) = &self.auxblob {
            std::fs::write(path.join("auxblob"), aux)?;
        }
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.removed.lock().unwrap().push(path.to_path_buf());
        for attr in ["provider", "generation", "inblob", "outblob", "auxblob"] {
            let _ = std::fs::remove_file(path.join(attr));
        }
        self.real.remove_dir(path)
    }

    fn read(&self, path: &Path, max: usize) -> io::Result<Vec<u8>> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        match name(path) {
            "provider" if self.provider.is_none() => return Err(Self::errno(libc::ENXIO)),
            "outblob" => match self.fault {
                Fault::ProviderVanishes => return Err(Self::errno(libc::ENOTTY)),
                Fault::DirectoryVanishes => {
                    self.remove_dir(dir)?;
                    return Err(Self::errno(libc::ENOENT));
                }
                Fault::OutblobErrno(e) => return Err(Self::errno(e)),
                _ => {}
            },
            _ => {}
        }
        self.real.read(path, max)
    }

    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.real.write(path, data)?;
        let dir = path.parent().unwrap_or(Path::new("/"));
        if name(path) != "inblob" {
            return Ok(());
        }
        let bump = if self.fault == Fault::ConcurrentWriter { 2 } else { 1 };
        std::fs::write(dir.join("generation"), format!("{}\n", Self::generation(dir) + bump))?;
        let mut out = self.template.clone();
        if self.fault != Fault::IgnoresInblob && data.len() == 64 {
            out[self.report_data_offset..self.report_data_offset + 64].copy_from_slice(data);
        }
        match self.fault {
            Fault::Truncate(n) => out.truncate(n),
            Fault::Extend(n) => out.resize(out.len() + n, 0),
            _ => {}
        }
        std::fs::write(dir.join("outblob"), out)
    }
}

/// What the fake `/dev/tdx_guest` answers.
// A test value made a handful of times: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum TdxAnswer {
    /// The TDX module: these fields with the requested REPORTDATA.
    Report(TdxReport),
    /// These bytes, whatever was asked (a garbled or short answer).
    Raw(Vec<u8>),
    /// The ioctl fails with this errno.
    Errno(i32),
}

pub struct FakeTdxGuest {
    pub answer: TdxAnswer,
    pub calls: Mutex<usize>,
}

impl FakeTdxGuest {
    pub fn new(answer: TdxAnswer) -> Self {
        Self { answer, calls: Mutex::new(0) }
    }
}

impl TdxGuest for FakeTdxGuest {
    fn get_report0(&self, device: &Path, report_data: &[u8; REPORT_DATA_LEN]) -> io::Result<Vec<u8>> {
        // open(2) of the device node.
        std::fs::metadata(device)?;
        *self.calls.lock().unwrap() += 1;
        match &self.answer {
            TdxAnswer::Report(r) => Ok(TdxReport { report_data: *report_data, ..r.clone() }.to_bytes()),
            TdxAnswer::Raw(bytes) => Ok(bytes.clone()),
            TdxAnswer::Errno(e) => Err(io::Error::from_raw_os_error(*e)),
        }
    }
}
