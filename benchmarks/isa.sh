#!/usr/bin/env bash
# Same steps, same scores? benchmarks/isa.yaml under this CPU's kernels, with MKL, oneDNN and
# torch capped at AVX2 (what a machine without AVX-512 runs), then oneDNN alone and MKL with
# torch alone, to see which library's kernels move which model's scores. About 6 minutes.
#   benchmarks/isa.sh [OUT]      then compare OUT/default with each other folder
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-results/isa}"
g=.venv/bin/genbench
$g run benchmarks/isa.yaml --out "$out/default"
MKL_ENABLE_INSTRUCTIONS=AVX2 DNNL_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 $g run benchmarks/isa.yaml --out "$out/all_avx2"
DNNL_MAX_CPU_ISA=AVX2 $g run benchmarks/isa.yaml --out "$out/onednn_avx2"
MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 $g run benchmarks/isa.yaml --out "$out/mkl_torch_avx2"
for other in all_avx2 onednn_avx2 mkl_torch_avx2; do $g compare "$out/default" "$out/$other" --format md; done
