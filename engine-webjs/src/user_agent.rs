//! A stable user agent per tenant (seed 002 #7): WhatsApp sees each tenant as
//! its own browser, and the same browser on every start. The Chrome major
//! version is the real one, so WhatsApp Web never calls it deprecated.

use centinela_actors::ids::TenantId;

const PLATFORMS: [&str; 4] = [
    "X11; Linux x86_64",
    "Windows NT 10.0; Win64; x64",
    "Macintosh; Intel Mac OS X 10_15_7",
    "X11; Ubuntu; Linux x86_64",
];

/// FNV-1a: stable across processes and releases (unlike `DefaultHasher`).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The user agent of `tenant` for a Chrome of `major` version.
pub fn for_tenant(tenant: &TenantId, major: u32) -> String {
    let platform = PLATFORMS[(fnv1a(tenant.as_str()) % PLATFORMS.len() as u64) as usize];
    format!("Mozilla/5.0 ({platform}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.0.0 Safari/537.36")
}

/// The major version in `chromium --version` output ("Chromium 156.0.8078.108 built on ...").
pub fn parse_major(version_output: &str) -> Option<u32> {
    version_output
        .split_whitespace()
        .find_map(|w| w.split('.').next()?.parse::<u32>().ok().filter(|m| *m > 50))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_always_gets_the_same_agent_and_tenants_differ() {
        let a = TenantId::new("clinic").expect("id");
        assert_eq!(for_tenant(&a, 156), for_tenant(&a, 156));
        assert!(for_tenant(&a, 156).contains("Chrome/156.0.0.0"));
        let distinct: std::collections::HashSet<String> = (0..20)
            .map(|i| for_tenant(&TenantId::new(format!("t{i}")).expect("id"), 156))
            .collect();
        assert!(distinct.len() > 1);
    }

    #[test]
    fn parses_chromium_versions() {
        assert_eq!(
            parse_major("Chromium 156.0.8078.108 built on Debian GNU/Linux 12"),
            Some(156)
        );
        assert_eq!(parse_major("garbage"), None);
    }
}
