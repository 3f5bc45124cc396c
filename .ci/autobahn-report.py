#!/usr/bin/env python3
"""Reads the Autobahn Testsuite's JSON reports (<reports>/<agent>/servers and
<reports>/<agent>/clients, as .ci/autobahn writes them), prints a summary
table (Markdown) and exits non-zero if any case is not OK/INFORMATIONAL in
both its behaviour and its close behaviour.

NON-STRICT and UNIMPLEMENTED count as failures, in every group: every
autobahn example enables permessage-deflate, so 12.* and 13.* must pass too.
Every report must also hold as many cases as the others (each combination
runs the same cases), so that a run cut short shows."""

import json
import os
import sys

PASS = {"OK", "INFORMATIONAL"}


def case_key(case):
    return [int(p) for p in case.split(".")]


def main(reports):
    rows = []
    failures = []
    indexes = []
    for agent_dir in sorted(os.listdir(reports)) if os.path.isdir(reports) else []:
        for role in ("servers", "clients"):
            index = os.path.join(reports, agent_dir, role, "index.json")
            if os.path.exists(index):
                indexes.append((role, index))
    for role, index in indexes:
        with open(index) as f:
            data = json.load(f)
        for agent in sorted(data):
            cases = data[agent]
            ok = failed = unimpl = 0
            for case in sorted(cases, key=case_key):
                r = cases[case]
                b, c = r["behavior"], r["behaviorClose"]
                if b in PASS and c in PASS:
                    ok += 1
                    continue
                if b == "UNIMPLEMENTED" or c == "UNIMPLEMENTED":
                    unimpl += 1
                else:
                    failed += 1
                failures.append((agent, role, case, b, c))
            role_name = "server" if role == "servers" else "client"
            rows.append((agent, role_name, len(cases), ok, failed, unimpl))
    if not rows:
        print("no Autobahn reports found under %s" % reports)
        return 1
    print("| agent | tested as | cases | OK | failed | unimplemented |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %d | %d | %d | %d |" % r)
    total = sum(r[2] for r in rows)
    bad = sum(r[4] + r[5] for r in rows)
    print()
    for agent, role, case, b, c in failures:
        print("FAILED %s (%s) case %s: behaviour %s, close %s" % (agent, role[:-1], case, b, c))
    counts = sorted({r[2] for r in rows})
    short = len(counts) > 1
    if short:
        for r in rows:
            if r[2] < counts[-1]:
                print("INCOMPLETE %s (%s): %d cases of %d" % (r[0], r[1], r[2], counts[-1]))
    print("autobahn: %d passed, %d failed (unimplemented included)" % (total - bad, bad))
    return 1 if failures or short else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "target/autobahn/reports"))
