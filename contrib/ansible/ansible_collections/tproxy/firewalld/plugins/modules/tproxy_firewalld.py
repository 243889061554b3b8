#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: tproxy-firewalld contributors
# Apache License 2.0 (see LICENSE in the tproxy-firewalld repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: tproxy_firewalld
short_description: Install or remove Kuma's transparent-proxy rules with tproxy-firewalld
version_added: "0.1.0"
description:
  - Installs the transparent-proxy rules of a Kuma or Kong Mesh data plane in Universal mode
    (the rules of C(kumactl install transparent-proxy)) with C(tproxy-firewalld install), or
    removes them with C(tproxy-firewalld uninstall).
  - With firewalld running, the rules become firewalld direct rules (runtime, and permanent with
    O(store_firewalld)); with firewalld installed but stopped, they go into its C(direct.xml)
    and iptables; without firewalld, into iptables.
  - The tool only writes what differs, so a run that finds the rules in place changes nothing.
    C(changed) comes from the tool's JSON report (C(--output json)), never from a guess.
options:
  state:
    description:
      - V(present) installs the rules O(config) describes, replacing ours that differ.
      - V(absent) removes every rule and chain of ours (and kumactl's), and nothing else.
    type: str
    choices: [present, absent]
    default: present
  config:
    description:
      - The install settings, with the keys of kumactl's configuration file (C(kumaDPUser),
        C(redirect.inbound.excludePorts), C(redirect.dns.enabled), ...), as in
        C(/etc/tproxy-firewalld/config.yaml).
      - Handed to the tool as JSON on its standard input (C(--config -)); an unknown key fails
        the task with the tool's message.
      - C(dryRun) is refused here; use check mode.
      - Not used with O(state=absent).
    type: dict
    default: {}
  store_firewalld:
    description:
      - Also write the rules into firewalld's permanent configuration (C(direct.xml)), so that
        they survive firewalld reloads, restarts and reboots. Takes precedence over a
        C(storeFirewalld) key in O(config).
      - Without it the rules go into firewalld's runtime only.
      - Not used with O(state=absent), which removes ours from both.
    type: bool
    default: true
  binary:
    description:
      - The tproxy-firewalld executable.
    type: path
    default: /usr/bin/tproxy-firewalld
  firewalld_config_dir:
    description:
      - firewalld's configuration directory, which holds C(direct.xml) and C(firewalld.conf).
      - Where it does not exist, firewalld counts as not installed.
    type: path
    default: /etc/firewalld
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Runs the tool with C(--dry-run), which reads the current state and changes nothing.
  diff_mode:
    support: full
    details:
      - Per target (C(runtime), C(permanent), C(direct.xml), C(kernel ipv4), C(kernel ipv6)),
        the entries of ours removed as before and those added as after; entries kept are left out.
  platform:
    platforms: posix
requirements:
  - tproxy-firewalld 0.1 or later on the managed host (its RPM or DEB package)
notes:
  - Needs root (C(become)).
  - The module runs the tool with an argument list, never through a shell.
  - For the rules to be installed at boot before kuma-dp starts, also write the same settings
    to C(/etc/tproxy-firewalld/config.yaml) and enable C(tproxy-firewalld.service).
  - The tool's README (C(/usr/share/doc/tproxy-firewalld/README.md)) describes where the rules
    go and, in its section "JSON output", the report returned here.
author:
  - tproxy-firewalld contributors
"""

EXAMPLES = r"""
- name: Install the transparent-proxy rules, stored in firewalld's permanent configuration
  tproxy.firewalld.tproxy_firewalld:
    config:
      kumaDPUser: kuma-dp
      redirect:
        inbound:
          excludePorts: [22]
        dns:
          enabled: true

- name: Only in firewalld's runtime (a reload drops them)
  tproxy.firewalld.tproxy_firewalld:
    config:
      kumaDPUser: kuma-dp
    store_firewalld: false

- name: Remove them, keeping every other rule
  tproxy.firewalld.tproxy_firewalld:
    state: absent

- name: A tool installed elsewhere, and firewalld's configuration in another directory
  tproxy.firewalld.tproxy_firewalld:
    binary: /opt/tproxy-firewalld/bin/tproxy-firewalld
    firewalld_config_dir: /srv/firewalld
    config:
      kumaDPUser: "5678"
"""

RETURN = r"""
report:
  description:
    - The tool's JSON report (C(--output json)), as documented in its README ("JSON output").
    - Also returned when the task fails, with the error in RV(report.error).
  returned: when the tool ran
  type: dict
  contains:
    command:
      description: V(install) or V(uninstall).
      type: str
      sample: install
    dry_run:
      description: The run changed nothing (check mode).
      type: bool
      sample: false
    changed:
      description: Whether the run changed (in check mode, would change) anything; null when not known.
      type: bool
      sample: true
    backend:
      description: Where the rules go.
      type: dict
      sample:
        kind: firewalld
        name: firewalld 1.3.3 (nftables backend)
        firewalld_version: 1.3.3
        firewall_backend: nftables
    targets:
      description: Per target, the entries of ours added and removed, and how many were kept.
      type: list
      elements: dict
      sample:
        - target: runtime
          added:
            - rule ipv4 nat KUMA_MESH_INBOUND 0 -m comment --comment 'kuma/mesh/transparent/proxy/exclude inbound traffic from port 22 from redirection' -p tcp --dport 22 -j RETURN
          removed: []
          kept: 23
    notices:
      description: What the tool told the operator, each with a stable code.
      type: list
      elements: dict
      sample:
        - code: rfc3964-ipv4-only
          text: "IPv6: firewalld's RFC3964_IPv4=yes rejects traffic to ::/96, ...; installing IPv4 rules only"
    summary:
      description: The tool's result line; null in check mode and on failure.
      type: str
      sample: "installed through firewalld 1.3.3 (nftables backend): runtime: 1 added, 0 removed, 23 unchanged"
    error:
      description: Why the run failed, and the tool's exit status (1 failure, 2 bad input); null on success.
      type: dict
      sample:
        message: "config -: redirect.inbound.excludePort: unknown field `excludePort`, expected one of ..."
        exit_status: 2
stderr:
  description: The tool's lines on standard error (notices, the result, an error).
  returned: always, when the tool ran
  type: str
  sample: "tproxy-firewalld: installed through firewalld 1.3.3 (nftables backend): ..."
rc:
  description: The tool's exit status.
  returned: always, when the tool ran
  type: int
  sample: 0
"""

import json

from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["present", "absent"], default="present"),
    config=dict(type="dict", default={}),
    store_firewalld=dict(type="bool", default=True),
    binary=dict(type="path", default="/usr/bin/tproxy-firewalld"),
    firewalld_config_dir=dict(type="path", default="/etc/firewalld"),
)


def command_line(params, check_mode):
    """The tool's argument list, and what it reads on stdin (None: nothing)."""
    present = params["state"] == "present"
    argv = [
        params["binary"],
        "install" if present else "uninstall",
        "--output",
        "json",
        "--firewalld-config-dir",
        params["firewalld_config_dir"],
    ]
    stdin = None
    if present:
        store = "true" if params["store_firewalld"] else "false"
        argv += ["--config", "-", "--store-firewalld=" + store]
        stdin = json.dumps(params["config"])
    if check_mode:
        argv.append("--dry-run")
    return argv, stdin


def diffs(report):
    """Per target that changes, its removed entries as before and its added ones as after."""
    out = []
    for target in report.get("targets") or []:
        if not target["added"] and not target["removed"]:
            continue
        name = target["target"]
        out.append(
            dict(
                before_header="%s: entries of ours removed" % name,
                after_header="%s: entries of ours added" % name,
                before="".join(entry + "\n" for entry in target["removed"]),
                after="".join(entry + "\n" for entry in target["added"]),
            )
        )
    return out


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if "dryRun" in module.params["config"]:
        module.fail_json(msg="config: dryRun: use check mode (--check) for a dry run")
    argv, stdin = command_line(module.params, module.check_mode)
    rc, stdout, stderr = module.run_command(argv, data=stdin, check_rc=False)
    try:
        report = json.loads(stdout)
    except ValueError:
        lines = [line for line in stderr.splitlines() if line.strip()]
        message = lines[0] if lines else "%s printed no report (exit status %d)" % (argv[0], rc)
        module.fail_json(msg=message, rc=rc, stdout=stdout, stderr=stderr)
    if report.get("error"):
        module.fail_json(msg=report["error"]["message"], rc=rc, report=report, stderr=stderr)
    changed = report.get("changed")
    if changed is None:
        module.warn("tproxy-firewalld could not tell what would change (is the task run as root?)")
        changed = True
    result = dict(changed=changed, report=report, rc=rc, stderr=stderr)
    if module._diff:
        result["diff"] = diffs(report)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
