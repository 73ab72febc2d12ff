#!/usr/bin/env bash
# Fails when a vector intrinsic was compiled as a call instead of inline code.
# That happens silently when SIMD code sits in a closure (or any function)
# without the caller's #[target_feature]: each `_mm512_*` becomes a call into
# core::arch, 10-50x slower, with identical results, so no test notices it
# (gelu backward ran 36x slower that way). Usage: check_simd_inlined.sh [binary]
set -euo pipefail
bin="${1:-target/release/pixel}"
command -v objdump >/dev/null || { echo "check_simd_inlined: objdump not found (binutils)"; exit 1; }
# Functions containing a call to a core::arch intrinsic; std's own CPU
# feature detection is the one expected caller.
hits="$(objdump -d --no-show-raw-insn -C "$bin" \
    | awk '/^[0-9a-f]+ <.*>:$/ {fn = $0} /call.*core_arch::/ {print fn}' \
    | grep -v 'std_detect' | sort | uniq -c || true)"
if [ -n "$hits" ]; then
    echo "check_simd_inlined: vector intrinsics called out of line in $bin (calls, function):"
    echo "$hits"
    echo "Move the code out of the closure into an #[inline(always)] fn, or give it the target features."
    exit 1
fi
echo "check_simd_inlined: no out-of-line intrinsic calls in $bin"
