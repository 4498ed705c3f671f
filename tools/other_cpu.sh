#!/usr/bin/env sh
# Print environment settings that make PyTorch run other CPU kernels than the best ones this machine has, for
# `make nbval-other-cpu`: AVX2 on an AVX-512 CPU, the plain (non-vector) kernels on an AVX2 CPU, and the plain
# ATen kernels anywhere else (ARM, or a machine without /proc/cpuinfo).
# Usage: env $(tools/other_cpu.sh) python ...
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
case " $flags " in
  *" avx512f "*) echo "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2" ;;
  *" avx2 "*) echo "ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2" ;;
  *) echo "ATEN_CPU_CAPABILITY=default" ;;
esac
