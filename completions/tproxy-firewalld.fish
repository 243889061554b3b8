# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tproxy_firewalld_global_optspecs
    string join \n h/help V/version
end

function __fish_tproxy_firewalld_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tproxy_firewalld_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tproxy_firewalld_using_subcommand
    set -l cmd (__fish_tproxy_firewalld_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_needs_command" -s h -l help -d 'Print help'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_needs_command" -s V -l version -d 'Print version'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_needs_command" -f -a "install" -d 'Install the transparent-proxy rules (same flags and rules as `kumactl install transparent-proxy`)'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_needs_command" -f -a "uninstall" -d 'Remove every rule and chain this tool or kumactl installed, and nothing else'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_needs_command" -f -a "inspect" -d 'Show and check a direct configuration: a direct.xml file, or firewalld\'s permanent or runtime one'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_needs_command" -f -a "status" -d 'Compare the desired rules with firewalld\'s permanent and runtime configuration and the kernel'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_needs_command" -f -a "translate" -d 'Turn iptables-restore text (kumactl\'s dry run, or iptables-save) into firewalld direct rules'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_needs_command" -f -a "validate" -d 'Prove with real traffic that the rules redirect as they should (kumactl\'s `install transparent-proxy-validator`)'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l config -d 'Configuration file (YAML or JSON, kumactl\'s keys); repeatable, comma lists allowed, `-` reads stdin. Later files override earlier ones' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l kuma-dp-user -d 'User name or UID that runs kuma-dp; default: UID 5678, else user `kuma-dp`' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l redirect-inbound -d 'Redirect inbound traffic to Envoy (disable for gateways)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l redirect-inbound-port -d 'Port Envoy receives inbound traffic on [default: 15006]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l redirect-outbound-port -d 'Port Envoy receives outbound traffic on [default: 15001]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l exclude-inbound-ports -d 'Inbound ports not redirected (comma list; repeatable), e.g. 22 to keep SSH reachable' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l exclude-outbound-ports -d 'Outbound ports not redirected (comma list; repeatable)' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l exclude-inbound-ips -d 'Source addresses (IPv4/IPv6, with or without prefix; comma list; repeatable) whose inbound traffic is not redirected' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l exclude-outbound-ips -d 'Destination addresses (IPv4/IPv6, with or without prefix; comma list; repeatable) not redirected' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l exclude-outbound-ports-for-uids -d 'Outbound traffic of UIDs not redirected, as [proto:][ports:]uids, e.g. tcp:53,3000-5000:106-108 (repeatable)' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l redirect-dns -d 'Redirect DNS requests to the name servers in /etc/resolv.conf to the kuma-dp DNS proxy' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l redirect-all-dns-traffic -d 'Redirect all DNS traffic (UDP port 53) to the kuma-dp DNS proxy; excludes --redirect-dns' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l redirect-dns-port -d 'Port the kuma-dp DNS proxy listens on [default: 15053]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l skip-dns-conntrack-zone-split -d 'Do not split DNS traffic into conntrack zones (no raw-table rules)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l drop-invalid-packets -d 'Drop packets in conntrack state INVALID (mangle table)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l vnet -d 'Virtual network to redirect, as IFACE:CIDR (iptables `+` wildcard allowed), e.g. docker0:172.17.0.0/16 (repeatable)' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l redirect-inbound-insert-instead-of-append -d 'Insert the PREROUTING jump to KUMA_MESH_INBOUND at the top instead of appending it' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l redirect-outbound-insert-instead-of-append -d 'Insert the OUTPUT jump to KUMA_MESH_OUTBOUND at the top instead of appending it' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l iptables-logs -d 'Add LOG rules to nat OUTPUT and PREROUTING (kernel log level 7)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l disable-comments -d 'Do not tag rules with `kuma/mesh/transparent/proxy/…` comments (refused with rules in built-in chains that do not jump to ours: DNS redirection, --drop-invalid-packets)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l ip-family-mode -d '`dualstack` (IPv6 rules too, when the host has a non-loopback IPv6 address) or `ipv4` [default: dualstack]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l wait -d 'Seconds to wait for the xtables lock (legacy iptables) [default: 5]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l wait-interval -d 'Microseconds between attempts to take the xtables lock (legacy iptables) [default: 0]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l max-retries -d 'Retries of a failed iptables-restore [default: 4]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l sleep-between-retries -d 'Pause between retries, e.g. 2s or 500ms [default: 2s]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l iptables-executables -d 'Custom executables as name:path[,name:path…]; names: iptables, iptables-save, iptables-restore, ip6tables, ip6tables-save, ip6tables-restore (all three of a family)' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l store-firewalld -d 'Also store the rules in firewalld\'s permanent configuration (direct.xml), so they survive reloads, restarts and reboots; with firewalld stopped, write direct.xml directly' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l dry-run -d 'Print the rules (kumactl\'s dry-run format) and change nothing; needs no root' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l verbose -d 'Long option names in printed rules, and more detail on stderr' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l backend -d 'Where to apply the rules: `auto` uses firewalld when it runs, direct.xml plus iptables when firewalld is installed but stopped (with --store-firewalld), iptables otherwise' -r -f -a "auto\t'firewalld if it runs, else iptables (and direct.xml when firewalld is installed)'
firewalld\t'firewalld\'s direct interface over D-Bus; fails when firewalld is not running'
iptables\t'Raw iptables-restore; refused while firewalld runs (it would flush the rules)'"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l firewalld-config-dir -d 'firewalld\'s configuration directory (holds direct.xml and firewalld.conf)' -r -F
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l output -d 'json: also print one JSON report on stdout (what changed per target, the backend, the notices, the error and its exit status), instead of a dry run\'s plan' -r -f -a "text\t'For people'
json\t'A stable JSON document, for scripts'"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l accept-firewalld-iptables-flush -d 'On firewalld 2.x (nftables backend), go ahead although adding the first direct rule makes firewalld flush other tools\' iptables rules'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -l disable-firewalld-rfc3964-ipv4 -d 'Set firewalld\'s RFC3964_IPv4=no (permanently) and reload it, so IPv6 redirection works; without it, firewalld hosts with RFC3964_IPv4=yes get IPv4 rules only'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand install" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand uninstall" -l backend -d 'Where to apply the rules: `auto` uses firewalld when it runs, direct.xml plus iptables when firewalld is installed but stopped (with --store-firewalld), iptables otherwise' -r -f -a "auto\t'firewalld if it runs, else iptables (and direct.xml when firewalld is installed)'
firewalld\t'firewalld\'s direct interface over D-Bus; fails when firewalld is not running'
iptables\t'Raw iptables-restore; refused while firewalld runs (it would flush the rules)'"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand uninstall" -l firewalld-config-dir -d 'firewalld\'s configuration directory (holds direct.xml and firewalld.conf)' -r -F
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand uninstall" -l iptables-executables -d 'Custom executables, as for install' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand uninstall" -l output -d 'json: also print one JSON report on stdout (what changed per target, the backend, the notices, the error and its exit status), instead of a dry run\'s plan' -r -f -a "text\t'For people'
json\t'A stable JSON document, for scripts'"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand uninstall" -l dry-run -d 'Print what would be removed where, and change nothing'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand uninstall" -l keep-permanent -d 'Remove the rules from the running firewall only: firewalld\'s permanent configuration (direct.xml) keeps ours, and firewalld applies them again at its next start. What stopping tproxy-firewalld.service does, so that a boot through firewalld finds the rules in place'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand uninstall" -l verbose -d 'More detail on stderr'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand uninstall" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand inspect" -l file -d 'The direct.xml to read [default: <firewalld-config-dir>/direct.xml]' -r -F
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand inspect" -l source -d 'Read a running firewalld\'s configuration over D-Bus instead of a file' -r -f -a "permanent\t'firewalld\'s permanent configuration (what it loads at start)'
runtime\t'firewalld\'s runtime configuration (what it applied)'"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand inspect" -l output -r -f -a "text\t'For people'
json\t'A stable JSON document, for scripts'"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand inspect" -l firewalld-config-dir -d 'firewalld\'s configuration directory' -r -F
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand inspect" -l check-iptables -d 'Also check every rule with iptables-restore --test / ip6tables-restore --test'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand inspect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l config -d 'Configuration file (YAML or JSON, kumactl\'s keys); repeatable, comma lists allowed, `-` reads stdin. Later files override earlier ones' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l kuma-dp-user -d 'User name or UID that runs kuma-dp; default: UID 5678, else user `kuma-dp`' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l redirect-inbound -d 'Redirect inbound traffic to Envoy (disable for gateways)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l redirect-inbound-port -d 'Port Envoy receives inbound traffic on [default: 15006]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l redirect-outbound-port -d 'Port Envoy receives outbound traffic on [default: 15001]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l exclude-inbound-ports -d 'Inbound ports not redirected (comma list; repeatable), e.g. 22 to keep SSH reachable' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l exclude-outbound-ports -d 'Outbound ports not redirected (comma list; repeatable)' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l exclude-inbound-ips -d 'Source addresses (IPv4/IPv6, with or without prefix; comma list; repeatable) whose inbound traffic is not redirected' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l exclude-outbound-ips -d 'Destination addresses (IPv4/IPv6, with or without prefix; comma list; repeatable) not redirected' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l exclude-outbound-ports-for-uids -d 'Outbound traffic of UIDs not redirected, as [proto:][ports:]uids, e.g. tcp:53,3000-5000:106-108 (repeatable)' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l redirect-dns -d 'Redirect DNS requests to the name servers in /etc/resolv.conf to the kuma-dp DNS proxy' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l redirect-all-dns-traffic -d 'Redirect all DNS traffic (UDP port 53) to the kuma-dp DNS proxy; excludes --redirect-dns' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l redirect-dns-port -d 'Port the kuma-dp DNS proxy listens on [default: 15053]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l skip-dns-conntrack-zone-split -d 'Do not split DNS traffic into conntrack zones (no raw-table rules)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l drop-invalid-packets -d 'Drop packets in conntrack state INVALID (mangle table)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l vnet -d 'Virtual network to redirect, as IFACE:CIDR (iptables `+` wildcard allowed), e.g. docker0:172.17.0.0/16 (repeatable)' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l redirect-inbound-insert-instead-of-append -d 'Insert the PREROUTING jump to KUMA_MESH_INBOUND at the top instead of appending it' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l redirect-outbound-insert-instead-of-append -d 'Insert the OUTPUT jump to KUMA_MESH_OUTBOUND at the top instead of appending it' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l iptables-logs -d 'Add LOG rules to nat OUTPUT and PREROUTING (kernel log level 7)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l disable-comments -d 'Do not tag rules with `kuma/mesh/transparent/proxy/…` comments (refused with rules in built-in chains that do not jump to ours: DNS redirection, --drop-invalid-packets)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l ip-family-mode -d '`dualstack` (IPv6 rules too, when the host has a non-loopback IPv6 address) or `ipv4` [default: dualstack]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l wait -d 'Seconds to wait for the xtables lock (legacy iptables) [default: 5]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l wait-interval -d 'Microseconds between attempts to take the xtables lock (legacy iptables) [default: 0]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l max-retries -d 'Retries of a failed iptables-restore [default: 4]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l sleep-between-retries -d 'Pause between retries, e.g. 2s or 500ms [default: 2s]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l iptables-executables -d 'Custom executables as name:path[,name:path…]; names: iptables, iptables-save, iptables-restore, ip6tables, ip6tables-save, ip6tables-restore (all three of a family)' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l store-firewalld -d 'Also store the rules in firewalld\'s permanent configuration (direct.xml), so they survive reloads, restarts and reboots; with firewalld stopped, write direct.xml directly' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l dry-run -d 'Print the rules (kumactl\'s dry-run format) and change nothing; needs no root' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l verbose -d 'Long option names in printed rules, and more detail on stderr' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l backend -d 'Where to apply the rules: `auto` uses firewalld when it runs, direct.xml plus iptables when firewalld is installed but stopped (with --store-firewalld), iptables otherwise' -r -f -a "auto\t'firewalld if it runs, else iptables (and direct.xml when firewalld is installed)'
firewalld\t'firewalld\'s direct interface over D-Bus; fails when firewalld is not running'
iptables\t'Raw iptables-restore; refused while firewalld runs (it would flush the rules)'"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l firewalld-config-dir -d 'firewalld\'s configuration directory (holds direct.xml and firewalld.conf)' -r -F
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l output -r -f -a "text\t'For people'
json\t'A stable JSON document, for scripts'"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l accept-firewalld-iptables-flush -d 'On firewalld 2.x (nftables backend), go ahead although adding the first direct rule makes firewalld flush other tools\' iptables rules'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -l disable-firewalld-rfc3964-ipv4 -d 'Set firewalld\'s RFC3964_IPv4=no (permanently) and reload it, so IPv6 redirection works; without it, firewalld hosts with RFC3964_IPv4=yes get IPv4 rules only'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand translate" -l ipv -d 'Family of input without ### IPv4 ### / ### IPv6 ### headers (iptables-save output)' -r -f -a "ipv4\t''
ipv6\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand translate" -l merge -d 'Merge the entries into this direct.xml (its other content kept byte for byte) and print the result; the file is not changed' -r -F
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand translate" -l output -r -f -a "text\t'For people'
json\t'A stable JSON document, for scripts'"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand translate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l config -d 'Configuration file (YAML or JSON, kumactl\'s keys); repeatable, comma lists allowed, `-` reads stdin. Later files override earlier ones' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l kuma-dp-user -d 'User name or UID that runs kuma-dp; default: UID 5678, else user `kuma-dp`' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l redirect-inbound -d 'Redirect inbound traffic to Envoy (disable for gateways)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l redirect-inbound-port -d 'Port Envoy receives inbound traffic on [default: 15006]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l redirect-outbound-port -d 'Port Envoy receives outbound traffic on [default: 15001]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l exclude-inbound-ports -d 'Inbound ports not redirected (comma list; repeatable), e.g. 22 to keep SSH reachable' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l exclude-outbound-ports -d 'Outbound ports not redirected (comma list; repeatable)' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l exclude-inbound-ips -d 'Source addresses (IPv4/IPv6, with or without prefix; comma list; repeatable) whose inbound traffic is not redirected' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l exclude-outbound-ips -d 'Destination addresses (IPv4/IPv6, with or without prefix; comma list; repeatable) not redirected' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l exclude-outbound-ports-for-uids -d 'Outbound traffic of UIDs not redirected, as [proto:][ports:]uids, e.g. tcp:53,3000-5000:106-108 (repeatable)' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l redirect-dns -d 'Redirect DNS requests to the name servers in /etc/resolv.conf to the kuma-dp DNS proxy' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l redirect-all-dns-traffic -d 'Redirect all DNS traffic (UDP port 53) to the kuma-dp DNS proxy; excludes --redirect-dns' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l redirect-dns-port -d 'Port the kuma-dp DNS proxy listens on [default: 15053]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l skip-dns-conntrack-zone-split -d 'Do not split DNS traffic into conntrack zones (no raw-table rules)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l drop-invalid-packets -d 'Drop packets in conntrack state INVALID (mangle table)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l vnet -d 'Virtual network to redirect, as IFACE:CIDR (iptables `+` wildcard allowed), e.g. docker0:172.17.0.0/16 (repeatable)' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l redirect-inbound-insert-instead-of-append -d 'Insert the PREROUTING jump to KUMA_MESH_INBOUND at the top instead of appending it' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l redirect-outbound-insert-instead-of-append -d 'Insert the OUTPUT jump to KUMA_MESH_OUTBOUND at the top instead of appending it' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l iptables-logs -d 'Add LOG rules to nat OUTPUT and PREROUTING (kernel log level 7)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l disable-comments -d 'Do not tag rules with `kuma/mesh/transparent/proxy/…` comments (refused with rules in built-in chains that do not jump to ours: DNS redirection, --drop-invalid-packets)' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l ip-family-mode -d '`dualstack` (IPv6 rules too, when the host has a non-loopback IPv6 address) or `ipv4` [default: dualstack]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l wait -d 'Seconds to wait for the xtables lock (legacy iptables) [default: 5]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l wait-interval -d 'Microseconds between attempts to take the xtables lock (legacy iptables) [default: 0]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l max-retries -d 'Retries of a failed iptables-restore [default: 4]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l sleep-between-retries -d 'Pause between retries, e.g. 2s or 500ms [default: 2s]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l iptables-executables -d 'Custom executables as name:path[,name:path…]; names: iptables, iptables-save, iptables-restore, ip6tables, ip6tables-save, ip6tables-restore (all three of a family)' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l store-firewalld -d 'Also store the rules in firewalld\'s permanent configuration (direct.xml), so they survive reloads, restarts and reboots; with firewalld stopped, write direct.xml directly' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l dry-run -d 'Print the rules (kumactl\'s dry-run format) and change nothing; needs no root' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l verbose -d 'Long option names in printed rules, and more detail on stderr' -r -f -a "true\t''
false\t''"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l backend -d 'Where to apply the rules: `auto` uses firewalld when it runs, direct.xml plus iptables when firewalld is installed but stopped (with --store-firewalld), iptables otherwise' -r -f -a "auto\t'firewalld if it runs, else iptables (and direct.xml when firewalld is installed)'
firewalld\t'firewalld\'s direct interface over D-Bus; fails when firewalld is not running'
iptables\t'Raw iptables-restore; refused while firewalld runs (it would flush the rules)'"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l firewalld-config-dir -d 'firewalld\'s configuration directory (holds direct.xml and firewalld.conf)' -r -F
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l validation-server-port -d 'The port the inbound check listens on: kumactl\'s name for --redirect-inbound-port [default: 15006]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l target -d 'Destination outside this host for the outbound checks, as ADDRESS, ADDRESS:PORT or [ADDRESS]:PORT; one per family [default: 198.51.100.1 and 2001:db8::1, port 80 unless the rules exclude it]' -r
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l output -r -f -a "text\t'For people'
json\t'A stable JSON document, for scripts'"
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l accept-firewalld-iptables-flush -d 'On firewalld 2.x (nftables backend), go ahead although adding the first direct rule makes firewalld flush other tools\' iptables rules'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -l disable-firewalld-rfc3964-ipv4 -d 'Set firewalld\'s RFC3964_IPv4=no (permanently) and reload it, so IPv6 redirection works; without it, firewalld hosts with RFC3964_IPv4=yes get IPv4 rules only'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand validate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand help; and not __fish_seen_subcommand_from install uninstall inspect status translate validate help" -f -a "install" -d 'Install the transparent-proxy rules (same flags and rules as `kumactl install transparent-proxy`)'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand help; and not __fish_seen_subcommand_from install uninstall inspect status translate validate help" -f -a "uninstall" -d 'Remove every rule and chain this tool or kumactl installed, and nothing else'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand help; and not __fish_seen_subcommand_from install uninstall inspect status translate validate help" -f -a "inspect" -d 'Show and check a direct configuration: a direct.xml file, or firewalld\'s permanent or runtime one'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand help; and not __fish_seen_subcommand_from install uninstall inspect status translate validate help" -f -a "status" -d 'Compare the desired rules with firewalld\'s permanent and runtime configuration and the kernel'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand help; and not __fish_seen_subcommand_from install uninstall inspect status translate validate help" -f -a "translate" -d 'Turn iptables-restore text (kumactl\'s dry run, or iptables-save) into firewalld direct rules'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand help; and not __fish_seen_subcommand_from install uninstall inspect status translate validate help" -f -a "validate" -d 'Prove with real traffic that the rules redirect as they should (kumactl\'s `install transparent-proxy-validator`)'
complete -c tproxy-firewalld -n "__fish_tproxy_firewalld_using_subcommand help; and not __fish_seen_subcommand_from install uninstall inspect status translate validate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
