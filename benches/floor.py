#!/usr/bin/python3
"""The floor for an install through firewalld: exactly the necessary D-Bus calls from one
connection. firewalld has no batch call: one runtime call per chain and rule, then one
permanent call per chain and rule (`apply FILE`), each a read-modify-write inside firewalld
that cannot lose another client's entry. `apply-update FILE` changes the permanent
configuration the old way instead, with one getSettings/update round trip: fewer calls, but
every entry another client adds between the two is lost. `dump FILE` writes the runtime
direct entries of ours as JSON."""

import json
import sys

import dbus

PATH = "/org/fedoraproject/FirewallD1"
NAME = "org.fedoraproject.FirewallD1"


def ours(chain, args):
    return chain.startswith("KUMA_MESH_") or any(
        a.startswith("kuma/mesh/transparent/proxy") or a.startswith("KUMA_MESH_") for a in args
    )


def main():
    mode, path = sys.argv[1], sys.argv[2]
    bus = dbus.SystemBus()
    runtime = dbus.Interface(bus.get_object(NAME, PATH), NAME + ".direct")
    if mode == "dump":
        chains = [list(map(str, c)) for c in runtime.getAllChains() if str(c[2]).startswith("KUMA_MESH_")]
        rules = [
            [str(r[0]), str(r[1]), str(r[2]), int(r[3]), [str(a) for a in r[4]]]
            for r in runtime.getAllRules()
            if ours(str(r[2]), [str(a) for a in r[4]])
        ]
        # Rules of our chains first, then the jumps into them, each chain in priority order.
        rules.sort(key=lambda r: (not r[2].startswith("KUMA_MESH_"), r[0], r[1], r[2], r[3]))
        with open(path, "w") as out:
            json.dump({"chains": chains, "rules": rules}, out)
        return
    with open(path) as f:
        entries = json.load(f)
    permanent = dbus.Interface(bus.get_object(NAME, PATH + "/config"), NAME + ".config.direct")
    for direct in [runtime, permanent] if mode == "apply" else [runtime]:
        for ipv, table, chain in entries["chains"]:
            direct.addChain(ipv, table, chain)
        for ipv, table, chain, priority, args in entries["rules"]:
            direct.addRule(ipv, table, chain, dbus.Int32(priority), dbus.Array(args, signature="s"))
    if mode == "apply":
        return
    chains, rules, passthroughs = permanent.getSettings()
    chains = list(chains) + [tuple(c) for c in entries["chains"]]
    rules = list(rules) + [
        (r[0], r[1], r[2], dbus.Int32(r[3]), dbus.Array(r[4], signature="s")) for r in entries["rules"]
    ]
    permanent.update(
        dbus.Struct(
            (
                dbus.Array(chains, signature="(sss)"),
                dbus.Array(rules, signature="(sssias)"),
                dbus.Array(passthroughs, signature="(sas)"),
            ),
            signature="(a(sss)a(sssias)a(sas))",
        )
    )


if __name__ == "__main__":
    main()
