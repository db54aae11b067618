#!/usr/bin/env bash
# One full benchmark run on a quiet machine: bench/RESULTS.md is started afresh and every
# script appends its section (each measures its baseline in the same run).
#   bash bench/run_all.sh            (about 25 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
cat > bench/RESULTS.md <<'HEAD'
# Benchmark results

One full run of `bash bench/run_all.sh`. Every figure is measured against a baseline in
the same run (bare Celery on the same Redis, the hand-written DuckDB query, the bare SQL
page, `GET /jobs/{id}`); targets come from the benchmark issue.
HEAD
$py bench/compile.py
$py bench/listing.py
$py bench/submit_latency.py
$py bench/throughput.py
$py bench/latency.py
$py bench/query.py
$py bench/paging.py
$py bench/query.py --storage s3
$py bench/paging.py --storage s3
$py bench/download.py
$py bench/faults.py --scenario all
