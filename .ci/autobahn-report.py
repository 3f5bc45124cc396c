#!/usr/bin/env python3
"""Reads the Autobahn Testsuite's JSON reports (<reports>/<job>/servers and
<reports>/<job>/clients, as .ci/autobahn writes them, several jobs per agent
when a combination's cases were split), prints a summary table (Markdown)
per agent and role, and exits non-zero if any case is not OK/INFORMATIONAL
in both its behaviour and its close behaviour (NON-STRICT and UNIMPLEMENTED
fail too).

With --expect FILE (lines "<agent>/<server|client> <case id>", written by
.ci/autobahn from the suite's own case list), it also fails when an expected
case has no result, when a result was not expected, or when a case ran twice,
so that a run cut short, or a plan that lost a group, shows."""

import argparse
import json
import os
import sys

PASS = {"OK", "INFORMATIONAL"}


def case_key(case):
    return [int(p) for p in case.split(".")]


def read_reports(reports):
    """{(agent, role): {case: (behaviour, close)}}, and the cases seen twice."""
    results = {}
    twice = []
    jobs = sorted(os.listdir(reports)) if os.path.isdir(reports) else []
    for job in jobs:
        for role_dir, role in (("servers", "server"), ("clients", "client")):
            index = os.path.join(reports, job, role_dir, "index.json")
            if not os.path.exists(index):
                continue
            with open(index) as f:
                data = json.load(f)
            for agent, cases in data.items():
                got = results.setdefault((agent, role), {})
                for case, r in cases.items():
                    if case in got:
                        twice.append((agent, role, case))
                    got[case] = (r["behavior"], r["behaviorClose"])
    return results, twice


def read_expected(path):
    expected = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            key, case = line.split()
            agent, role = key.split("/")
            expected.setdefault((agent, role), set()).add(case)
    return expected


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("reports", nargs="?", default="target/autobahn/reports")
    parser.add_argument("--expect", help="the cases each agent and role must have run")
    args = parser.parse_args()

    results, twice = read_reports(args.reports)
    if not results:
        print("no Autobahn reports found under %s" % args.reports)
        return 1
    expected = read_expected(args.expect) if args.expect else None

    problems = []
    rows = []
    for (agent, role) in sorted(results):
        cases = results[(agent, role)]
        ok = failed = unimpl = 0
        for case in sorted(cases, key=case_key):
            b, c = cases[case]
            if b in PASS and c in PASS:
                ok += 1
                continue
            if b == "UNIMPLEMENTED" or c == "UNIMPLEMENTED":
                unimpl += 1
            else:
                failed += 1
            problems.append(
                "FAILED %s (%s) case %s: behaviour %s, close %s" % (agent, role, case, b, c)
            )
        groups = sorted({case.split(".")[0] for case in cases}, key=int)
        rows.append((agent, role, ",".join(groups), len(cases), ok, failed, unimpl))
    for agent, role, case in twice:
        problems.append("TWICE %s (%s) case %s ran in two jobs" % (agent, role, case))
    if expected is not None:
        for key in sorted(set(expected) | set(results)):
            want = expected.get(key, set())
            got = set(results.get(key, {}))
            missing = sorted(want - got, key=case_key)
            extra = sorted(got - want, key=case_key)
            if missing:
                problems.append(
                    "MISSING %s (%s): %d expected cases have no result, e.g. %s"
                    % (key[0], key[1], len(missing), ", ".join(missing[:5]))
                )
            if extra:
                problems.append(
                    "UNEXPECTED %s (%s): %d cases not in the plan, e.g. %s"
                    % (key[0], key[1], len(extra), ", ".join(extra[:5]))
                )

    print("| agent | tested as | groups | cases | OK | failed | unimplemented |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %s | %d | %d | %d | %d |" % r)
    print()
    for p in problems:
        print(p)
    total = sum(r[3] for r in rows)
    bad = sum(r[5] + r[6] for r in rows)
    print("autobahn: %d passed, %d failed (unimplemented included)" % (total - bad, bad))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
