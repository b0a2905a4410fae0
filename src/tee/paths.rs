//! Every path and kernel interface the TEE code touches, real by default
//! and re-rootable for tests.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::TeeKind;
use super::tdx::device::{self, RealTdxGuest, TdxGuest};
use super::tsm::{self, ConfigFs, RealConfigFs};

/// Every path the TEE code touches, with the real ones by default, and the
/// kernel interfaces behind them (configfs, the TDX guest ioctl), the
/// kernel's by default.
#[derive(Clone)]
pub struct TeePaths {
    /// configfs-tsm report directory.
    pub tsm_report: PathBuf,
    /// Device directory (`/dev/sev-guest`, `/dev/tdx_guest`, initdata disks).
    pub dev: PathBuf,
    /// ACPI tables (`CCEL`, `data/CCEL`).
    pub acpi_tables: PathBuf,
    pub configfs: Arc<dyn ConfigFs>,
    /// `TDX_CMD_GET_REPORT0` on `dev/tdx_guest`.
    pub tdx_guest: Arc<dyn TdxGuest>,
}

impl Default for TeePaths {
    fn default() -> Self {
        Self {
            tsm_report: PathBuf::from(tsm::DEFAULT_REPORT_DIR),
            dev: PathBuf::from("/dev"),
            acpi_tables: PathBuf::from("/sys/firmware/acpi/tables"),
            configfs: Arc::new(RealConfigFs),
            tdx_guest: Arc::new(RealTdxGuest),
        }
    }
}

impl TeePaths {
    /// The real paths re-rooted under `root` (tests, offline tools).
    pub fn under(root: &Path) -> Self {
        let d = Self::default();
        let rebase = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        Self {
            tsm_report: rebase(&d.tsm_report),
            dev: rebase(&d.dev),
            acpi_tables: rebase(&d.acpi_tables),
            configfs: d.configfs,
            tdx_guest: d.tdx_guest,
        }
    }

    pub fn with_configfs(mut self, configfs: Arc<dyn ConfigFs>) -> Self {
        self.configfs = configfs;
        self
    }

    pub fn with_tdx_guest(mut self, tdx_guest: Arc<dyn TdxGuest>) -> Self {
        self.tdx_guest = tdx_guest;
        self
    }

    pub(crate) fn device(&self, kind: TeeKind) -> Option<PathBuf> {
        match kind {
            TeeKind::Snp => Some(self.dev.join("sev-guest")),
            TeeKind::Tdx => Some(self.dev.join(device::DEVICE)),
            TeeKind::Sample => None,
        }
    }
}

impl fmt::Debug for TeePaths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeePaths")
            .field("tsm_report", &self.tsm_report)
            .field("dev", &self.dev)
            .field("acpi_tables", &self.acpi_tables)
            .finish_non_exhaustive()
    }
}
