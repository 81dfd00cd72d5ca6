#!/usr/bin/env bash
# The prepared GPU check (issue 17, item 6), in two steps:
#
#   scripts/gpu-bench.sh pack        on the development machine: a release `mrt` (flex + wgpu),
#                                    stripped and gzipped (~21 MB), and the Vulkan loader, into
#                                    target/gpu-bench/ (small enough to carry to a GPU machine)
#   scripts/gpu-bench.sh run [OUT]   on the GPU machine, from the repository root: correctness
#                                    (the L1, C1 and M1 ladders on wgpu: greedy and sampled tokens
#                                    equal to the reference) and speed (v1 base and large on wgpu,
#                                    the large LM with int8 decoder weights, MRT2 small and base
#                                    on wgpu in bf16, MRT2 small on the host), JSON and logs into
#                                    OUT (default: gpu-bench-out/)
#
# `run` brings its own Vulkan loader when the machine has none and writes an NVIDIA ICD file when
# the driver ships the library but no JSON. Every step has a timeout; the whole run stays under 8
# minutes. CUDA is not part of it yet: the `cuda` feature's build downloads LLVM (issue 17,
# item 4), so the packed binary has no CUDA backend, and the summary says so.
set -uo pipefail
cd "$(dirname "$0")/.."
pack_dir="${CARGO_TARGET_DIR:-target}/gpu-bench"

pack() {
  set -e
  cargo build --release --locked --workspace --bin mrt
  mkdir -p "$pack_dir"
  local bin="${CARGO_TARGET_DIR:-target}/release/mrt"
  strip -o "$pack_dir/mrt" "$bin"
  gzip -f -9 "$pack_dir/mrt"
  local loader
  loader=$(ldconfig -p | awk '/libvulkan\.so\.1 / {print $NF; exit}')
  if [ -n "$loader" ]; then
    cp -L "$loader" "$pack_dir/libvulkan.so.1"
  else
    echo "warning: no libvulkan.so.1 here to pack; the GPU machine must have its own" >&2
  fi
  git rev-parse HEAD >"$pack_dir/commit"
  du -sh "$pack_dir"/*
  echo "packed into $pack_dir (carry it to the GPU machine, then: scripts/gpu-bench.sh run)"
}

run() {
  local out="${1:-gpu-bench-out}"
  mkdir -p "$out"
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  if [ ! -f "$pack_dir/mrt.gz" ]; then
    echo "error: $pack_dir/mrt.gz is missing: run 'scripts/gpu-bench.sh pack' on the development machine and carry $pack_dir" >&2
    return 1
  fi
  gunzip -c "$pack_dir/mrt.gz" >"$tmp/mrt"
  chmod +x "$tmp/mrt"
  local mrt="$tmp/mrt"

  # The Vulkan loader: the machine's, else the packed one.
  if ! ldconfig -p | grep -q 'libvulkan\.so\.1 '; then
    export LD_LIBRARY_PATH="$PWD/$pack_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "using the packed Vulkan loader" | tee -a "$out/run.log"
  fi
  # NVIDIA's Vulkan driver lives in libGLX_nvidia.so.0; containers often lack its ICD JSON.
  local icd_found=0
  for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d; do
    ls "$d"/nvidia_icd*.json >/dev/null 2>&1 && icd_found=1
  done
  if [ "$icd_found" = 0 ]; then
    local glx
    glx=$(ldconfig -p | awk '/libGLX_nvidia\.so\.0 / {print $NF; exit}')
    if [ -n "$glx" ]; then
      printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$glx" >"$tmp/nvidia_icd.json"
      export VK_ICD_FILENAMES="$tmp/nvidia_icd.json"
      echo "wrote an NVIDIA ICD file for $glx" | tee -a "$out/run.log"
    fi
  fi

  {
    echo "commit packed: $(cat "$pack_dir/commit" 2>/dev/null || echo unknown)"
    nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not available"
    nproc
  } >>"$out/run.log" 2>&1

  local fixtures="${MRT_FIXTURES:-../shared/fixtures}"
  local steps=()
  # step NAME TIMEOUT_S COMMAND...: runs one check, logs it, records its exit status and time.
  step() {
    local name=$1 limit=$2
    shift 2
    local t0 rc
    t0=$(date +%s.%N)
    echo "== $name: $*" >>"$out/run.log"
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    local secs
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
    tail -n 3 "$out/$name.log" >>"$out/run.log"
    steps+=("{\"step\":\"$name\",\"exit\":$rc,\"limit_s\":$limit,\"seconds\":$secs,\"timed_out\":$([ $rc = 124 ] && echo true || echo false)}")
  }

  if [ -d "$fixtures/lm/L1" ]; then
    step conformance-l1-wgpu 70 "$mrt" conformance "$fixtures/lm/L1" --device wgpu
    step conformance-c1-wgpu 40 "$mrt" conformance "$fixtures/codec/C1" --device wgpu
    step conformance-m1-wgpu 30 "$mrt" conformance "$fixtures/mrt2/M1" --device wgpu
  else
    steps+=("{\"step\":\"conformance\",\"exit\":null,\"skipped\":\"no fixtures at $fixtures (set MRT_FIXTURES)\"}")
  fi
  step bench-v1-base-wgpu 80 "$mrt" bench all --size base --device wgpu --json "$out/v1-base-wgpu.json"
  step bench-v1-large-wgpu 90 "$mrt" bench all --size large --device wgpu --json "$out/v1-large-wgpu.json"
  # The LM alone with int8 decoder weights (a quarter of f32's bytes per step).
  step bench-v1-large-int8-wgpu 50 "$mrt" bench lm --size large --device wgpu --lm-weights int8 --json "$out/v1-large-int8-wgpu.json"
  # MRT2 frames on the GPU kernels (one recorded frame replayed; the codec on the CPU).
  step bench-mrt2-small-bf16-wgpu 40 "$mrt" bench all --model mrt2 --size small --device wgpu --lm-weights bf16 --frames 50 --json "$out/mrt2-small-bf16-wgpu.json"
  step bench-mrt2-base-bf16-wgpu 40 "$mrt" bench all --model mrt2 --size base --device wgpu --lm-weights bf16 --frames 50 --json "$out/mrt2-base-bf16-wgpu.json"
  step bench-mrt2-small-int8-host 40 "$mrt" bench all --model mrt2 --size small --lm-weights int8 --json "$out/mrt2-small-int8-host.json"
  steps+=("{\"step\":\"cuda\",\"exit\":null,\"skipped\":\"cubecl-cuda (feature cuda) downloads LLVM at build time; cuda-rt (no LLVM) compiles the decoder kernels to PTX but does not launch the decoder yet (issue 17, item 4)\"}")

  local joined
  joined=$(IFS=,; echo "${steps[*]}")
  printf '{"commit":"%s","steps":[%s]}\n' "$(cat "$pack_dir/commit" 2>/dev/null || echo unknown)" "$joined" >"$out/summary.json"
  cat "$out/summary.json"
}

case "${1:-}" in
  pack) pack ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 pack | run [OUT]" >&2; exit 2 ;;
esac
