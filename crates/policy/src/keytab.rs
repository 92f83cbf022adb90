//! The principals of a Kerberos keytab (`auth.kerberos_keytab`), read from its bytes:
//! enough to choose the default service principal (the first `HTTP/` one) and to say at
//! load time that a keytab cannot serve Negotiate. The keys are left to GSSAPI.
//!
//! The format is MIT's version 2 (`0x05 0x02`), which MIT, Heimdal, `ktpass` and
//! `msktutil` all write: after the version, records of a signed big-endian 32-bit size (a
//! negative size is a hole left by a deleted entry, 0 the end), each holding the count of
//! name components, the realm and the components (16-bit lengths), the name type, a
//! timestamp, the key version and the key.

/// Why a keytab's principals cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeytabError {
    /// Not a version-2 keytab (version 1 is native-endian and long obsolete).
    Version,
    /// A record runs past the end of the file or is inconsistent.
    Truncated,
}

impl std::fmt::Display for KeytabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeytabError::Version => "not a keytab (expected version 0x0502)",
            KeytabError::Truncated => "a keytab entry is truncated",
        })
    }
}

/// The principals of a keytab's entries, in file order, each once
/// (`HTTP/proxy.corp.example@CORP.EXAMPLE`).
pub fn keytab_principals(bytes: &[u8]) -> Result<Vec<String>, KeytabError> {
    let mut input = Reader(bytes);
    if input.take(2) != Some(&[0x05, 0x02][..]) {
        return Err(KeytabError::Version);
    }
    let mut principals: Vec<String> = Vec::new();
    while !input.0.is_empty() {
        let size = input.u32().ok_or(KeytabError::Truncated)? as i32;
        if size == 0 {
            break;
        }
        let record = input
            .take(size.unsigned_abs() as usize)
            .ok_or(KeytabError::Truncated)?;
        if size > 0 {
            let principal = entry_principal(record).ok_or(KeytabError::Truncated)?;
            if !principals.contains(&principal) {
                principals.push(principal);
            }
        }
    }
    Ok(principals)
}

/// The first principal of a service `HTTP/…`, the default `auth.kerberos_principal`.
pub fn first_http_principal(principals: &[String]) -> Option<&str> {
    principals
        .iter()
        .map(String::as_str)
        .find(|p| p.starts_with("HTTP/"))
}

/// The name a Kerberos user is known by in the directory and in `users` rules: the
/// principal without its realm (`alice@CORP.EXAMPLE` → `alice`).
pub fn principal_short_name(principal: &str) -> &str {
    principal
        .rsplit_once('@')
        .map_or(principal, |(name, _)| name)
}

/// The principal of one entry: `components/joined@REALM`.
fn entry_principal(record: &[u8]) -> Option<String> {
    let mut input = Reader(record);
    let components = input.u16()?;
    let realm = input.counted()?;
    let mut name = Vec::new();
    for i in 0..components {
        if i > 0 {
            name.push(b'/');
        }
        name.extend_from_slice(input.counted()?);
    }
    // Then the name type, timestamp, key version and key, which are not needed here.
    let mut principal = String::from_utf8(name).ok()?;
    principal.push('@');
    principal.push_str(std::str::from_utf8(realm).ok()?);
    Some(principal)
}

/// Big-endian fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A 16-bit length, then that many bytes.
    fn counted(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counted(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(bytes);
    }

    /// An entry as `kadmin ktadd` writes it: one key of 16 bytes, with the 32-bit vno.
    fn entry(realm: &str, components: &[&str]) -> Vec<u8> {
        let mut record = (components.len() as u16).to_be_bytes().to_vec();
        counted(&mut record, realm.as_bytes());
        for c in components {
            counted(&mut record, c.as_bytes());
        }
        record.extend_from_slice(&1u32.to_be_bytes()); // KRB5_NT_PRINCIPAL
        record.extend_from_slice(&0x6500_0000u32.to_be_bytes()); // timestamp
        record.push(2); // vno8
        record.extend_from_slice(&18u16.to_be_bytes()); // aes256-cts
        counted(&mut record, &[7; 32]);
        record.extend_from_slice(&2u32.to_be_bytes()); // vno32
        let mut out = (record.len() as i32).to_be_bytes().to_vec();
        out.extend(record);
        out
    }

    #[test]
    fn principals_are_read_in_order_once_skipping_holes() {
        let mut keytab = vec![5, 2];
        keytab.extend(entry("CORP.EXAMPLE", &["host", "proxy.corp.example"]));
        // A hole of 10 bytes left by a deleted entry.
        keytab.extend((-10i32).to_be_bytes());
        keytab.extend([0; 10]);
        keytab.extend(entry("CORP.EXAMPLE", &["HTTP", "proxy.corp.example"]));
        keytab.extend(entry("CORP.EXAMPLE", &["HTTP", "proxy.corp.example"]));
        keytab.extend(entry("CORP.EXAMPLE", &["HTTP", "other.corp.example"]));
        let principals = keytab_principals(&keytab).unwrap();
        assert_eq!(
            principals,
            [
                "host/proxy.corp.example@CORP.EXAMPLE",
                "HTTP/proxy.corp.example@CORP.EXAMPLE",
                "HTTP/other.corp.example@CORP.EXAMPLE",
            ]
        );
        assert_eq!(
            first_http_principal(&principals),
            Some("HTTP/proxy.corp.example@CORP.EXAMPLE")
        );
        assert_eq!(first_http_principal(&principals[..1]), None);
    }

    #[test]
    fn garbage_and_truncated_keytabs_are_errors() {
        assert_eq!(keytab_principals(b""), Err(KeytabError::Version));
        assert_eq!(keytab_principals(b"-----BEGIN"), Err(KeytabError::Version));
        assert_eq!(keytab_principals(&[5, 1, 0, 0]), Err(KeytabError::Version));
        assert_eq!(keytab_principals(&[5, 2]), Ok(Vec::new()));
        let mut keytab = vec![5, 2];
        keytab.extend(entry("R", &["HTTP", "h"]));
        for cut in 3..keytab.len() {
            assert_eq!(
                keytab_principals(&keytab[..cut]),
                Err(KeytabError::Truncated),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn short_names_drop_the_realm() {
        assert_eq!(principal_short_name("alice@CORP.EXAMPLE"), "alice");
        assert_eq!(principal_short_name("alice/admin@R"), "alice/admin");
        assert_eq!(principal_short_name("alice"), "alice");
    }

    proptest! {
        /// Whatever the file holds, reading it ends without a panic.
        #[test]
        fn any_bytes_are_read_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut keytab = vec![5, 2];
            keytab.extend(bytes);
            let _ = keytab_principals(&keytab);
        }
    }
}
