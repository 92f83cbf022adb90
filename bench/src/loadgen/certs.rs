//! `certs`: the benchmark's test PKI, made with rcgen. A CA (`ca.pem`, `ca-key.pem`), a
//! wildcard certificate for the domain (`wildcard.pem`, `wildcard-key.pem`), and for each
//! of `--count` numbered names (`h0001.DOMAIN` ...) its own certificate under `names/`,
//! listed in `names.txt`. ECDSA P-256 keys; valid from yesterday for one year; leaves are
//! CA:false with serverAuth. Key files are written with mode 0600.

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::cli::CertsArgs;

const CA_NAME: &str = "sluice-bench test CA";
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

/// Validity of every certificate written.
struct Validity {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Validity {
    fn from_yesterday_for_a_year() -> Self {
        let not_before = OffsetDateTime::now_utc() - Duration::days(1);
        Self {
            not_before,
            not_after: not_before + Duration::days(365),
        }
    }
}

/// `{"mode":"certs","dir","names"}`.
#[derive(Debug, Serialize)]
pub struct Report {
    mode: &'static str,
    dir: String,
    names: u32,
}

/// Writes the files into `args.dir`; returns the report.
pub fn run(args: &CertsArgs) -> Result<Report, String> {
    let dir = &args.dir;
    let names_dir = dir.join("names");
    fs::create_dir_all(&names_dir).map_err(|e| format!("{}: {e}", names_dir.display()))?;
    let validity = Validity::from_yesterday_for_a_year();

    let ca_key = new_key()?;
    let ca_params = ca_params(&validity);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(rcgen_error)?;
    write(&dir.join("ca.pem"), &ca_cert.pem(), CERT_MODE)?;
    write(&dir.join("ca-key.pem"), &ca_key.serialize_pem(), KEY_MODE)?;
    let ca = Issuer::new(ca_params, ca_key);

    let mut wildcard_names = vec![args.domain.clone(), format!("*.{}", args.domain)];
    wildcard_names.extend(args.extra_names.iter().cloned());
    write_leaf(&ca, &validity, wildcard_names, dir, "wildcard")?;

    let mut names = String::new();
    for i in 1..=args.count {
        let name = format!("h{i:04}.{}", args.domain);
        write_leaf(&ca, &validity, vec![name.clone()], &names_dir, &name)?;
        names.push_str(&name);
        names.push('\n');
    }
    write(&dir.join("names.txt"), &names, CERT_MODE)?;
    Ok(Report {
        mode: "certs",
        dir: dir.display().to_string(),
        names: args.count,
    })
}

fn ca_params(validity: &Validity) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params
}

/// A server certificate for `names` (the first is also the CN), signed by `ca`, written
/// as `dir/stem.pem` and `dir/stem-key.pem`.
fn write_leaf(
    ca: &Issuer<'_, KeyPair>,
    validity: &Validity,
    names: Vec<String>,
    dir: &Path,
    stem: &str,
) -> Result<(), String> {
    let common_name = names[0].clone();
    let mut params = CertificateParams::new(names).map_err(rcgen_error)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    let key = new_key()?;
    let cert = params.signed_by(&key, ca).map_err(rcgen_error)?;
    write(&dir.join(format!("{stem}.pem")), &cert.pem(), CERT_MODE)?;
    write(
        &dir.join(format!("{stem}-key.pem")),
        &key.serialize_pem(),
        KEY_MODE,
    )
}

fn new_key() -> Result<KeyPair, String> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error)
}

fn rcgen_error(e: rcgen::Error) -> String {
    format!("certificate generation: {e}")
}

/// Writes `contents` to `path` (replacing it) with `mode`, which a key file has from its
/// creation on; an existing file's mode is corrected too.
fn write(path: &Path, contents: &str, mode: u32) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(fail)?;
    file.write_all(contents.as_bytes()).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::PathBuf;

    #[test]
    fn writes_the_layout_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let args = CertsArgs {
            dir: dir.path().to_owned(),
            count: 3,
            domain: "bench.test".into(),
            extra_names: vec!["localhost".into()],
        };
        let report = run(&args).unwrap();
        assert_eq!(report.names, 3);
        let names = fs::read_to_string(dir.path().join("names.txt")).unwrap();
        assert_eq!(
            names,
            "h0001.bench.test\nh0002.bench.test\nh0003.bench.test\n"
        );
        let mode = |path: PathBuf| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path().join("ca-key.pem")), 0o600);
        assert_eq!(mode(dir.path().join("wildcard-key.pem")), 0o600);
        assert_eq!(
            mode(dir.path().join("names/h0003.bench.test-key.pem")),
            0o600
        );
        assert!(
            fs::read_to_string(dir.path().join("names/h0002.bench.test.pem"))
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        // A second run replaces the files.
        run(&args).unwrap();
    }
}
