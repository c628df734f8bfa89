"""What the receiver costs on AWS, measured (tests/aws_calls.py, what `scripts/aws-calls` runs):
the README's cost table is the measured one, and the write budget holds: a new job 3 write
units on either path (usage counts are written apart, once per process every 10 s), a
redelivered batch a failed conditional write for each job of its first wave and a read for the
rest (then, once a commit was mostly duplicates, a read each and no write), SQS one request per
10 jobs."""

import re

import aws_calls
from relay_contract import ROOT


def readme_table():
    readme = (ROOT / "README.md").read_text()
    begin = readme.index("<!-- costs:")
    end = readme.index("<!-- end of costs -->")
    rows = {}
    for line in readme[begin:end].splitlines()[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 7 and cells[0] not in ("per object", "---"):
            rows[cells[0]] = [float(re.sub(r"[$,]", "", c)) if c else None for c in cells[1:]]
    return rows


def test_the_cost_table_is_measured_and_the_write_budget_holds():
    rows, cold = aws_calls.run()
    measured = {r.label: r.row() for r in rows}
    new = measured["worker batch, new"]
    assert new["write_units"] <= 3.001, "claim, done, history; usage counts are written apart, every 10 s"
    assert new["sqs_requests"] == 0.1 and new["requests"] == 1 / aws_calls.BATCH
    redelivered = measured["worker batch, redelivered"]
    assert redelivered["write_units"] <= (16 + 1) / aws_calls.BATCH + 0.001, \
        "a redelivered batch claims its first wave of 16 (and the last event per outcome), then reads"
    assert redelivered["read_units"] <= 0.5 * (aws_calls.BATCH - 16) / aws_calls.BATCH + 0.011
    again = measured["worker batch, redelivered again"]
    assert again["write_units"] <= 2 / aws_calls.BATCH + 0.001 and again["read_units"] <= 0.51, \
        "a batch of duplicates after one is read, not claimed"
    single = measured["one event, new"]
    assert single["write_units"] <= 3.001 and single["sqs_requests"] == 1, "no usage write per request"
    assert cold == {"secretsmanager": 1, "kms": 0}, "one master-key read per cold start"

    # The README's table: each figure within rounding (and a moment's sampling of the last
    # event per outcome) of this run's.
    shown = readme_table()
    written = {line.split("|")[1].strip(): line for line in aws_calls.table(rows).splitlines()[2:]}
    assert sorted(shown) == sorted(written), "the README's rows are the workloads measured"
    for label, line in written.items():
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        fresh = [float(re.sub(r"[$,]", "", c)) if c else None for c in cells]
        for column, (was, now) in enumerate(zip(shown[label], fresh)):
            if was is None or now is None:
                assert was == now, (label, column)
            else:
                assert abs(was - now) <= max(0.06, 0.03 * now), \
                    f"{label}, column {column + 1}: README {was}, measured {now}: run scripts/aws-calls --markdown"
