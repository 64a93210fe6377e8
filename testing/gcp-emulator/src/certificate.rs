//! Self-signed X.509 CA certificates, as the root of trust GKE gives each cluster
//! (`masterAuth.clusterCaCertificate`): an ECDSA P-256 key and a v3 certificate for it, DER
//! written by hand (no crate of the workspace writes certificates), so that clients which
//! parse the CA (a Kubernetes client's TLS configuration) accept it.

use std::time::{Duration, SystemTime};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use crate::keys::pem;

/// How long a certificate is valid (GKE's cluster CAs last years; UTCTime ends in 2049).
const LIFETIME: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

/// DER's object identifiers, encoded: ecdsa-with-SHA256, commonName, basicConstraints and
/// keyUsage.
const ECDSA_WITH_SHA256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const COMMON_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
const BASIC_CONSTRAINTS: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x13];
const KEY_USAGE: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x0f];

/// A CA certificate (PEM) named `common_name`, valid from `now`, signed by its own new key
/// (which is thrown away: nothing is ever issued under it).
pub fn self_signed_ca(common_name: &str, now: SystemTime) -> Result<String, String> {
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).map_err(|e| format!("EC key: {e}"))?;
    let public = key.public_key().as_der().map_err(|e| format!("EC public key: {e}"))?;
    let name = sequence(&[&tlv(0x31, &sequence(&[COMMON_NAME, &tlv(0x0c, common_name.as_bytes())]))]);
    let algorithm = sequence(&[ECDSA_WITH_SHA256]);
    let critical = [0x01, 0x01, 0xff];
    // CA:TRUE; may sign certificates (bit 5) and CRLs (bit 6).
    let ca = sequence(&[BASIC_CONSTRAINTS, &critical, &tlv(0x04, &sequence(&[&critical]))]);
    let usage = sequence(&[KEY_USAGE, &critical, &tlv(0x04, &[0x03, 0x02, 0x01, 0x06])]);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, common_name.as_bytes());
    // Positive, with no leading zero byte.
    let mut serial = digest.as_ref()[..16].to_vec();
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let tbs = sequence(&[
        &tlv(0xa0, &[0x02, 0x01, 0x02]), // v3
        &tlv(0x02, &serial),
        &algorithm,
        &name,
        &sequence(&[&utc_time(now)?, &utc_time(now + LIFETIME)?]),
        &name,
        public.as_ref(),
        &tlv(0xa3, &sequence(&[&ca, &usage])),
    ]);
    let signature = key.sign(&SystemRandom::new(), &tbs).map_err(|e| format!("signing: {e}"))?;
    let bits = [&[0][..], signature.as_ref()].concat();
    Ok(pem("CERTIFICATE", &sequence(&[&tbs, &algorithm, &tlv(0x03, &bits)])))
}

/// A DER element: its tag, length and `content`.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = content.len().to_be_bytes();
    let significant = &length[length.iter().position(|b| *b != 0).unwrap_or(length.len() - 1)..];
    match significant {
        [short] if *short < 0x80 => out.push(*short),
        long => {
            out.push(0x80 | long.len() as u8);
            out.extend(long);
        }
    }
    out.extend(content);
    out
}

/// A DER SEQUENCE of elements already encoded.
fn sequence(elements: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &elements.concat())
}

/// `at` as a DER UTCTime (`YYMMDDHHMMSSZ`).
fn utc_time(at: SystemTime) -> Result<Vec<u8>, String> {
    let at = jiff::Timestamp::try_from(at).map_err(|e| e.to_string())?;
    Ok(tlv(0x17, at.strftime("%y%m%d%H%M%SZ").to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    /// The elements of DER `der`, each whole (tag and length included) and its content.
    fn elements(mut der: &[u8]) -> Vec<(&[u8], &[u8])> {
        let mut out = vec![];
        while let [_, first, ..] = der {
            let (header, length) = match *first as usize {
                short if short < 0x80 => (2, short),
                long => {
                    let n = long & 0x7f;
                    (2 + n, der[2..2 + n].iter().fold(0, |l, b| (l << 8) | usize::from(*b)))
                }
            };
            out.push((&der[..header + length], &der[header..header + length]));
            der = &der[header + length..];
        }
        out
    }

    #[test]
    fn a_ca_certificate_is_signed_by_the_key_it_certifies() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_733_500_000);
        let pem = self_signed_ca("a-cluster", at).unwrap();
        let body: String = pem
            .strip_prefix("-----BEGIN CERTIFICATE-----\n")
            .and_then(|p| p.strip_suffix("-----END CERTIFICATE-----\n"))
            .unwrap()
            .lines()
            .collect();
        let der = STANDARD.decode(body).unwrap();
        let certificate = elements(&der);
        let [(_, parts)] = certificate.as_slice() else { panic!("{certificate:?}") };
        let [(tbs, fields), _, (_, signature)] = elements(parts)[..] else { panic!() };
        let fields = elements(fields);
        assert_eq!(fields[4].1, [&utc_time(at).unwrap()[..], &utc_time(at + LIFETIME).unwrap()].concat());
        assert_eq!(&fields[4].1[2..15], b"241206154640Z");
        assert!(fields[3].0.windows(9).any(|w| w == b"a-cluster"));
        let [_, (_, point)] = elements(fields[6].1)[..] else { panic!() };
        let key = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            &point[1..],
        );
        key.verify(tbs, &signature[1..]).unwrap();
    }

    #[test]
    fn long_elements_have_long_lengths() {
        assert_eq!(tlv(0x04, &[7; 3]), [0x04, 3, 7, 7, 7]);
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
    }
}
