//! The SSH lockout warning: an install run over SSH whose port the rules send to Envoy cuts
//! off every new SSH connection (the session itself lives on: NAT decides a connection's
//! fate at its first packet). kumactl's guide only says "exclude port 22"; the session at
//! hand names the port that matters.

use crate::config::Config;

/// The variable sshd sets in a session: `client-address client-port server-address server-port`.
pub const SSH_CONNECTION: &str = "SSH_CONNECTION";

/// The warning for an install inside the SSH session `ssh_connection` (the value of
/// `SSH_CONNECTION`), when `config` redirects its server port; None otherwise, and for a
/// value that is not sshd's.
pub fn lockout_warning(config: &Config, ssh_connection: Option<&str>) -> Option<String> {
    let fields: Vec<&str> = ssh_connection?.split_ascii_whitespace().collect();
    let [_, _, server, port] = fields[..] else {
        return None;
    };
    let port: u16 = port.parse().ok()?;
    let inbound = &config.inbound;
    if !inbound.enabled {
        return None;
    }
    let fix = if inbound.include_ports.is_empty() {
        if inbound.exclude_ports.contains(&port) {
            return None;
        }
        format!("add --exclude-inbound-ports {port} to keep SSH reachable")
    } else {
        if !inbound.include_ports.contains(&port) {
            return None;
        }
        format!("leave {port} out of redirect.inbound.includePorts to keep SSH reachable")
    };
    Some(format!(
        "warning: this SSH session came in on port {port} of {server}, which these rules redirect to Envoy (port {}): new SSH connections will reach Envoy, not sshd; {fix}",
        inbound.port
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = "203.0.113.9 51234 192.0.2.1 22";

    #[test]
    fn a_redirected_ssh_port_is_named_with_the_flag_that_excludes_it() {
        let config = Config::default();
        let warning = lockout_warning(&config, Some(SESSION)).unwrap();
        assert!(
            warning.contains("port 22 of 192.0.2.1")
                && warning.contains("Envoy (port 15006)")
                && warning.ends_with("add --exclude-inbound-ports 22 to keep SSH reachable"),
            "{warning}"
        );
        let other = lockout_warning(&config, Some("2001:db8::9 51234 2001:db8::1 2222")).unwrap();
        assert!(other.contains("--exclude-inbound-ports 2222"), "{other}");
    }

    #[test]
    fn no_warning_when_the_port_is_not_redirected_or_there_is_no_session() {
        let mut config = Config::default();
        assert_eq!(lockout_warning(&config, None), None);
        for malformed in [
            "",
            "203.0.113.9 51234 192.0.2.1",
            "a b c twenty-two",
            "a b c 70000",
        ] {
            assert_eq!(
                lockout_warning(&config, Some(malformed)),
                None,
                "{malformed}"
            );
        }
        config.inbound.exclude_ports = vec![80, 22];
        assert_eq!(lockout_warning(&config, Some(SESSION)), None);
        config.inbound.exclude_ports.clear();
        config.inbound.enabled = false;
        assert_eq!(lockout_warning(&config, Some(SESSION)), None);
    }

    #[test]
    fn include_ports_redirect_only_themselves() {
        let mut config = Config::default();
        config.inbound.include_ports = vec![8080];
        config.inbound.exclude_ports = vec![22];
        assert_eq!(lockout_warning(&config, Some(SESSION)), None);
        config.inbound.include_ports.push(22);
        let warning = lockout_warning(&config, Some(SESSION)).unwrap();
        assert!(
            warning.contains("redirect.inbound.includePorts"),
            "{warning}"
        );
    }
}
