//! The clouds' own naming rules for every field that reaches a host name, a path or a signed
//! request: account ids, regions, bucket names, role ARNs and names, organization ids, and the
//! receiver's public URL. A value that breaks its owner's rule is refused by name where it
//! enters (`create`, `set-source`, an event), so it never becomes a host we send a request to.
//!
//! - AWS account id: 12 digits. R2 account id: 32 lowercase hexadecimal digits (Cloudflare's
//!   account id, the first label of `<account>.r2.cloudflarestorage.com`).
//! - AWS Region: `<area>-<name>-<n>`, with an extra label for partitions such as `us-gov-` or
//!   `us-isob-` (`us-east-1`, `us-gov-west-1`, `cn-north-1`): lowercase letters, one digit group.
//! - S3 bucket (general purpose): 3–63 of lowercase letters, digits, `.` and `-`, beginning and
//!   ending with a letter or digit, no `..`, not an IPv4 address, not `xn--…`, `sthree-…`,
//!   `…-s3alias`, `…--ol-s3`, `….mrap`, `…--x-s3`. R2 bucket: 3–63 of lowercase letters, digits
//!   and `-`, beginning and ending with a letter or digit.
//! - IAM role name: 1–64 of letters, digits and `+=,.@_-`; role ARN:
//!   `arn:<aws|aws-cn|aws-us-gov>:iam::<account>:role/<path/><name>`, the path of `/`-separated
//!   parts of the same characters, 512 characters at most in all.
//! - AWS Organizations id: `o-` and 10–32 lowercase letters or digits.

/// Whether `id` is an AWS account id: 12 digits.
pub fn is_aws_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `id` is a Cloudflare account id: 32 lowercase hexadecimal digits.
pub fn is_r2_account_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `region` is an AWS Region code.
pub fn is_aws_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let Some((number, words)) = parts.split_last() else {
        return false;
    };
    let lower = |part: &&str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase());
    (3..=4).contains(&parts.len())
        && words[0].len() == 2
        && words.iter().all(lower)
        && (1..=2).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `name` is an S3 general purpose bucket's name.
pub fn is_s3_bucket_name(name: &str) -> bool {
    const RESERVED_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const RESERVED_SUFFIXES: [&str; 4] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3"];
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
        && !RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        && !RESERVED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Whether `pattern` can match S3 bucket names: a name in which `*` stands for any run of the
/// characters a name may hold.
pub fn is_s3_bucket_pattern(pattern: &str) -> bool {
    if !pattern.contains('*') {
        return is_s3_bucket_name(pattern);
    }
    (1..=63).contains(&pattern.len())
        && pattern.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'*'
        })
}

/// Whether `name` is an R2 bucket's name.
pub fn is_r2_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// Whether `name` can be an IAM role name (1–64 of letters, digits and `+=,.@_-`; a path is
/// not a name).
pub fn is_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// Whether `arn` is an IAM role's ARN.
pub fn is_role_arn(arn: &str) -> bool {
    let Some(rest) = ["arn:aws:iam::", "arn:aws-cn:iam::", "arn:aws-us-gov:iam::"]
        .iter()
        .find_map(|prefix| arn.strip_prefix(prefix))
    else {
        return false;
    };
    let Some((account, resource)) = rest.split_once(":role/") else {
        return false;
    };
    let (path, name) = resource.rsplit_once('/').unwrap_or(("", resource));
    arn.len() <= 512
        && is_aws_account_id(account)
        && is_role_name(name)
        && path
            .split('/')
            .all(|part| path.is_empty() || is_role_name(part))
}

/// Whether `id` is an AWS Organizations id.
pub fn is_organization_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("o-") else {
        return false;
    };
    (10..=32).contains(&rest.len())
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Why a receiver URL printed for an event source is refused: it must be `https://` (or
/// `http://` for a test on this machine), name a host, carry no user or password, no query and
/// no fragment, and hold no white space or control character.
pub fn check_receiver_url(url: &str) -> Result<(), &'static str> {
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Err("it must start with https://"),
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it holds white space or a control character");
    }
    if url.contains(['?', '#']) {
        return Err("it has a query or a fragment");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err("it names a user or password");
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            if !port.is_empty() && !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err("its port is not a number");
            }
            host
        }
        _ => authority,
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
    if !host_ok {
        return Err("it names no valid host");
    }
    if !https && !is_loopback(host) {
        return Err("plain http is for this machine only: use https://");
    }
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host == "[::1]" || host.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_follow_each_clouds_form() {
        assert!(is_aws_account_id("123456789012"));
        for bad in [
            "12345678901",
            "1234567890123",
            "12345678901a",
            "not-an-account",
            "",
        ] {
            assert!(!is_aws_account_id(bad), "{bad}");
        }
        assert!(is_r2_account_id("4f3c1e0d9b8a7c6d5e4f3a2b1c0d9e8f"));
        for bad in [
            "127.0.0.1:9000/x",
            "evil.com/x",
            "x@y",
            "a.b",
            "4F3C1E0D9B8A7C6D5E4F3A2B1C0D9E8F",
            "4f3c1e0d9b8a7c6d5e4f3a2b1c0d9e8",
        ] {
            assert!(!is_r2_account_id(bad), "{bad}");
        }
    }

    #[test]
    fn regions_are_aws_region_codes_and_nothing_that_changes_a_host() {
        for good in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "cn-north-1",
            "us-isob-east-1",
            "ap-southeast-5",
        ] {
            assert!(is_aws_region(good), "{good}");
        }
        for bad in [
            "evil.com#",
            "x/",
            "us-east-1.evil.com",
            "us-east",
            "US-EAST-1",
            "",
            "auto",
        ] {
            assert!(!is_aws_region(bad), "{bad}");
        }
    }

    #[test]
    fn bucket_names_follow_s3s_and_r2s_rules() {
        for good in ["uploads", "my.bucket-1", "logs-eu", "a1b"] {
            assert!(is_s3_bucket_name(good), "{good}");
        }
        for bad in [
            "x",
            "Uploads",
            "a..b",
            "192.168.5.4",
            "xn--abc",
            "a-s3alias",
            "bucket\nname",
            "bucket\u{202e}",
            "evil.com/x",
            "-abc",
        ] {
            assert!(!is_s3_bucket_name(bad), "{bad:?}");
        }
        assert!(is_s3_bucket_pattern("logs-*") && is_s3_bucket_pattern("*"));
        assert!(!is_s3_bucket_pattern("logs-*/x") && !is_s3_bucket_pattern("Logs-*"));
        assert!(is_r2_bucket_name("uploads-2026"));
        assert!(!is_r2_bucket_name("my.bucket") && !is_r2_bucket_name("ab"));
    }

    #[test]
    fn role_arns_and_names_follow_iams_rules() {
        assert!(is_role_arn(
            "arn:aws:iam::123456789012:role/bucket-relay-read"
        ));
        assert!(is_role_arn(
            "arn:aws-cn:iam::123456789012:role/path/to/read@x"
        ));
        for bad in [
            "arn:awsX:evil:role/x",
            "arn:aws:iam::123456789012:role/x\ny",
            "arn:aws:iam::1234:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::123456789012:role/",
        ] {
            assert!(!is_role_arn(bad), "{bad:?}");
        }
        assert!(is_role_name("bucket-relay-read") && !is_role_name("a/b"));
        assert!(is_organization_id("o-a1b2c3d4e5") && !is_organization_id("org-1"));
    }

    #[test]
    fn a_receiver_url_is_https_with_a_host_and_nothing_else_in_its_authority() {
        for good in [
            "https://relay.example.com",
            "https://relay.example.com:8443/base",
            "http://127.0.0.1:8787",
            "http://localhost:9000/",
        ] {
            assert_eq!(check_receiver_url(good), Ok(()), "{good}");
        }
        for bad in [
            "javascript:alert(1)",
            "https://user:pw@relay.example.com",
            "http://relay.example.com",
            "https://",
            "https://relay.example.com/?x=1",
            "https://relay example.com",
            "https://evil.com:x/",
        ] {
            assert!(check_receiver_url(bad).is_err(), "{bad}");
        }
    }
}
