//! SEV-SNP evidence verification (Trustee `snp` evidence JSON).

use const_oid::ObjectIdentifier;
use der::Decode;
use der::asn1::OctetString;
use serde::Deserialize;
use sev::certs::snp::{Certificate, Chain, Verifiable, builtin, ca};
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::{CertTableEntry, CertType, TcbVersion};
use sha2::Digest;

use super::{VerifyError, check_init_data, check_report_data};
use crate::tee::short_hex;
use crate::tee::snp::{REPORT_LEN, SUPPORTED_VERSIONS};

/// Reference values for SNP.
#[derive(Debug, Clone)]
pub struct SnpPolicy {
    /// Accepted launch measurements; empty accepts any (development only).
    pub measurements: Vec<[u8; 48]>,
    /// Accept guests whose policy allows debugging.
    pub allow_debug: bool,
    /// Lowest accepted report version (Trustee's verifier wants 3).
    pub min_report_version: u32,
    /// Every component of `reported_tcb` must be at least this.
    pub min_tcb: Option<Tcb>,
    /// VCEK/VLEK certificates (DER) used when the evidence carries none,
    /// since the dev KBS cannot ask AMD's KDS.
    pub endorsement_keys: Vec<Vec<u8>>,
}

impl Default for SnpPolicy {
    fn default() -> Self {
        Self {
            measurements: Vec::new(),
            allow_debug: false,
            min_report_version: *SUPPORTED_VERSIONS.start(),
            min_tcb: None,
            endorsement_keys: Vec::new(),
        }
    }
}

/// TCB component security versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Tcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    /// Turin and later.
    pub fmc: Option<u8>,
}

impl From<&TcbVersion> for Tcb {
    fn from(t: &TcbVersion) -> Self {
        Self { bootloader: t.bootloader, tee: t.tee, snp: t.snp, microcode: t.microcode, fmc: t.fmc }
    }
}

impl Tcb {
    fn at_least(&self, min: &Tcb) -> bool {
        self.bootloader >= min.bootloader
            && self.tee >= min.tee
            && self.snp >= min.snp
            && self.microcode >= min.microcode
            && min.fmc.is_none_or(|m| self.fmc.unwrap_or(0) >= m)
    }
}

#[derive(Deserialize)]
struct Evidence {
    attestation_report: AttestationReport,
    cert_chain: Option<Vec<CertTableEntry>>,
}

fn malformed(reason: impl Into<String>) -> VerifyError {
    VerifyError::Malformed { tee: "snp", reason: reason.into() }
}

/// Verifies Trustee `snp` evidence; returns its claims.
pub fn verify(
    evidence: &serde_json::Value,
    report_data_digest: &[u8],
    init_data_digest: Option<&[u8]>,
    policy: &SnpPolicy,
) -> Result<serde_json::Value, VerifyError> {
    let ev = Evidence::deserialize(evidence).map_err(|e| malformed(e.to_string()))?;
    let report = &ev.attestation_report;

    let min = policy.min_report_version.max(*SUPPORTED_VERSIONS.start());
    if report.version < min || report.version > *SUPPORTED_VERSIONS.end() {
        return Err(VerifyError::ReportVersion { found: report.version, min });
    }
    // The signature covers the binary report; rebuilding it also proves that
    // the JSON describes a report this crate can lay out.
    let mut raw = Vec::with_capacity(REPORT_LEN);
    report.write_bytes(&mut raw).map_err(|e| malformed(format!("cannot rebuild the binary report: {e}")))?;

    check_report_data(&report.report_data.0, report_data_digest)?;
    check_init_data("HOSTDATA", &report.host_data.0, init_data_digest)?;
    if report.policy.debug_allowed() && !policy.allow_debug {
        return Err(VerifyError::Debug(format!("guest policy {:#x} has bit 19 set", u64::from(report.policy))));
    }
    if report.vmpl != 0 {
        return Err(VerifyError::Vmpl(report.vmpl));
    }
    if !policy.measurements.is_empty() && !policy.measurements.contains(&report.measurement.0) {
        return Err(VerifyError::ReferenceValue { field: "measurement", found: hex::encode(report.measurement.0) });
    }
    let reported = Tcb::from(&report.reported_tcb);
    if let Some(min_tcb) = &policy.min_tcb
        && !reported.at_least(min_tcb)
    {
        return Err(VerifyError::Tcb(format!("{reported:?} is below the minimum {min_tcb:?}")));
    }

    let signer = verify_signature(report, ev.cert_chain.as_deref().unwrap_or(&[]), &policy.endorsement_keys)?;
    check_vek_extensions(&signer, report)?;

    Ok(serde_json::json!({
        "tee": "snp",
        "version": report.version,
        "measurement": hex::encode(report.measurement.0),
        "report_data": hex::encode(report.report_data.0),
        "host_data": hex::encode(report.host_data.0),
        "policy": u64::from(report.policy),
        "debug": report.policy.debug_allowed(),
        "vmpl": report.vmpl,
        "reported_tcb": reported,
        "chip_id": hex::encode(report.chip_id.0),
        "signer": signer.kind.name(),
        "product": signer.product,
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VekKind {
    Vcek,
    Vlek,
}

impl VekKind {
    fn name(self) -> &'static str {
        match self {
            VekKind::Vcek => "VCEK",
            VekKind::Vlek => "VLEK",
        }
    }
}

struct Signer {
    kind: VekKind,
    product: &'static str,
    der: Vec<u8>,
}

/// SHA-256 of the DER of AMD's root keys (ARK), Milan, Genoa, Turin: the
/// built-in certificates must be these, whatever the dependency ships.
pub const AMD_ARK_SHA256: [(&str, &str); 3] = [
    ("Milan", "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"),
    ("Genoa", "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1"),
    ("Turin", "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a"),
];

/// AMD's CA chains, from the `sev` crate's built-in ARK/ASK (ARKs checked
/// against [`AMD_ARK_SHA256`]) and the ASVKs (VLEK signing keys) published
/// in the same AMD bundles.
fn amd_chains(kind: VekKind) -> Vec<(&'static str, std::io::Result<ca::Chain>)> {
    const ASVK: [&[u8]; 3] = [
        include_bytes!("amd/milan_asvk.pem"),
        include_bytes!("amd/genoa_asvk.pem"),
        include_bytes!("amd/turin_asvk.pem"),
    ];
    let arks = [
        (builtin::milan::ark(), builtin::milan::ask()),
        (builtin::genoa::ark(), builtin::genoa::ask()),
        (builtin::turin::ark(), builtin::turin::ask()),
    ];
    arks.into_iter()
        .zip(ASVK)
        .zip(AMD_ARK_SHA256)
        .map(|(((ark, ask), asvk), (name, pin))| {
            let ark = ark.and_then(|ark| {
                let der = ark.to_der()?;
                if hex::encode(sha2::Sha256::digest(der)) == pin {
                    Ok(ark)
                } else {
                    Err(std::io::Error::other(format!("built-in {name} ARK is not AMD's")))
                }
            });
            let signer = match kind {
                VekKind::Vcek => ask,
                VekKind::Vlek => Certificate::from_pem(asvk),
            };
            (name, ark.and_then(|ark| signer.map(|ask| ca::Chain { ark, ask })))
        })
        .collect()
}

/// Finds a VCEK/VLEK that chains to an AMD root and signs the report.
fn verify_signature(
    report: &AttestationReport,
    chain: &[CertTableEntry],
    configured: &[Vec<u8>],
) -> Result<Signer, VerifyError> {
    // key_info.signing_key: 0 = VCEK, 1 = VLEK, 7 = none (MASK_CHIP_KEY).
    let wanted = match report.key_info.signing_key() {
        0 => VekKind::Vcek,
        1 => VekKind::Vlek,
        other => {
            return Err(VerifyError::Signature(format!("the report is not signed (signing key {other})")));
        }
    };
    let mut candidates: Vec<Vec<u8>> = chain
        .iter()
        .filter(|e| match wanted {
            VekKind::Vcek => e.cert_type == CertType::VCEK,
            VekKind::Vlek => e.cert_type == CertType::VLEK,
        })
        .map(|e| e.data.clone())
        .collect();
    candidates.extend(configured.iter().cloned());
    if candidates.is_empty() {
        return Err(VerifyError::NoVek);
    }
    let mut last = VerifyError::NoVek;
    for der in candidates {
        let vek = match Certificate::from_der(&der) {
            Ok(v) => v,
            Err(e) => {
                last = VerifyError::Chain(format!("{} is not a certificate: {e}", wanted.name()));
                continue;
            }
        };
        for (product, ca_chain) in amd_chains(wanted) {
            let Ok(ca_chain) = ca_chain else { continue };
            let full = Chain { ca: ca_chain, vek: vek.clone() };
            if let Err(e) = (&full).verify() {
                if matches!(last, VerifyError::NoVek | VerifyError::Chain(_)) {
                    last = VerifyError::Chain(format!("{} does not chain to an AMD root: {e}", wanted.name()));
                }
                continue;
            }
            match (&full, report).verify() {
                Ok(()) => {
                    return Ok(Signer { kind: wanted, product, der });
                }
                Err(e) => {
                    last =
                        VerifyError::Signature(format!("{} ({product}) does not sign this report: {e}", wanted.name()))
                }
            }
        }
    }
    Err(last)
}

const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
const OID_FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
const OID_HWID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");

/// The VCEK is derived for one TCB and one chip: its extensions must name
/// the `reported_tcb` and `chip_id` of the report (a VLEK has no hwID).
fn check_vek_extensions(signer: &Signer, report: &AttestationReport) -> Result<(), VerifyError> {
    let cert = x509_cert::Certificate::from_der(&signer.der).map_err(|e| VerifyError::Chain(e.to_string()))?;
    let exts = cert.tbs_certificate.extensions.unwrap_or_default();
    let value =
        |oid: ObjectIdentifier| exts.iter().find(|e| e.extn_id == oid).map(|e| e.extn_value.as_bytes().to_vec());
    let spl = |oid: ObjectIdentifier, name: &str| -> Result<Option<u8>, VerifyError> {
        value(oid)
            .map(|v| {
                u8::from_der(&v).map_err(|e| VerifyError::Tcb(format!("{} extension {name}: {e}", signer.kind.name())))
            })
            .transpose()
    };
    let tcb = &report.reported_tcb;
    for (oid, name, want) in [
        (OID_BL_SPL, "blSPL", Some(tcb.bootloader)),
        (OID_TEE_SPL, "teeSPL", Some(tcb.tee)),
        (OID_SNP_SPL, "snpSPL", Some(tcb.snp)),
        (OID_UCODE_SPL, "ucodeSPL", Some(tcb.microcode)),
        (OID_FMC_SPL, "fmcSPL", tcb.fmc),
    ] {
        let found = spl(oid, name)?;
        if found != want {
            return Err(VerifyError::Tcb(format!(
                "{} {name} {found:?} differs from the report's reported_tcb {want:?}",
                signer.kind.name()
            )));
        }
    }
    if signer.kind == VekKind::Vcek && !report.key_info.mask_chip_key() {
        let Some(hwid) = value(OID_HWID) else {
            return Err(VerifyError::Tcb("VCEK has no hwID extension".into()));
        };
        // Current VCEKs wrap hwID in an OCTET STRING; old ones hold the raw bytes.
        let hwid = OctetString::from_der(&hwid).map(|o| o.as_bytes().to_vec()).unwrap_or(hwid);
        let chip = &report.chip_id.0;
        let matches = chip.get(..hwid.len()) == Some(&hwid[..]) && chip[hwid.len()..].iter().all(|&b| b == 0);
        if !matches {
            return Err(VerifyError::Tcb(format!(
                "VCEK hwID {} is not the report's chip_id {}",
                short_hex(&hwid, 8),
                short_hex(chip, 8)
            )));
        }
    }
    Ok(())
}
