#!/bin/sh
# Times every model of this ablate bundle in interleaved rounds; written by `ablate export`.
#
# With adb on PATH (the phone chosen by ANDROID_SERIAL when several are attached) the models
# and BENCHMARK_BINARY (the runtime's benchmark binary that bundle.env names) are pushed to
# DEVICE_DIR and timed there, with the flags BENCHMARK_ARGS (bundle.env's, {model} and {runs}
# filled in); without adb (or with ABLATE_MODE=host) they are timed on this machine by
# run_host.py, or by BENCHMARK_BINARY when set. Every round times every model once, in a fresh order drawn from
# SEED and the round number (recorded as `position`), one thread, pinned to one core where
# `taskset` works. Rows go to OUT_DIR/timings.csv a whole round at a time, the device record
# to OUT_DIR/device.json. Stops after ROUNDS rounds, or once BUDGET_S seconds have passed
# and MIN_ROUNDS rounds are taken. Then: ablate ingest BUNDLE OUT_DIR/timings.csv
set -eu

HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# shellcheck source=/dev/null  # bundle.env: written beside this script by `ablate export`
. "$HERE/bundle.env"

ROUNDS=${ROUNDS:-$BUNDLE_ROUNDS}
MIN_ROUNDS=${MIN_ROUNDS:-$BUNDLE_MIN_ROUNDS}
BUDGET_S=${BUDGET_S:-$BUNDLE_BUDGET_S}
SEED=${SEED:-$BUNDLE_SEED}
ITERATIONS=${ITERATIONS:-10}
WARMUP=${WARMUP:-20}
OUT_DIR=${OUT_DIR:-$HERE}
DEVICE_DIR=${DEVICE_DIR:-/data/local/tmp/ablate-$BUNDLE_ID}
PYTHON=${ABLATE_PYTHON:-$BUNDLE_PYTHON}
MODE=${ABLATE_MODE:-auto}
BENCH=${BENCHMARK_BINARY:-}
BENCH_ARGS=${BENCHMARK_ARGS:-$BUNDLE_BENCHMARK_ARGS}

TIMINGS=$OUT_DIR/timings.csv
RECORD=$OUT_DIR/device.json
LIST=$HERE/variants.txt
TAB=$(printf '\t')

die() {
    printf 'measure.sh: %s\n' "$*" >&2
    exit 2
}

# A single-quoted word for a shell command line.
quote() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

json_string() {
    printf '"%s"' "$(printf '%s' "$1" | tr -d '\r\n' | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

for number in "$ROUNDS" "$MIN_ROUNDS" "$BUDGET_S" "$SEED" "$ITERATIONS" "$WARMUP"; do
    case $number in
        '' | *[!0-9]*) die "ROUNDS, MIN_ROUNDS, BUDGET_S, SEED, ITERATIONS, WARMUP take whole numbers (got '$number')" ;;
    esac
done
[ "$ITERATIONS" -ge 1 ] || die "ITERATIONS must be at least 1"
[ "$MIN_ROUNDS" -ge 6 ] || die "MIN_ROUNDS must be at least 6 (a 95% interval of a median needs 6)"
[ "$ROUNDS" -ge "$MIN_ROUNDS" ] || die "ROUNDS ($ROUNDS) is below MIN_ROUNDS ($MIN_ROUNDS)"

if [ "$MODE" = auto ]; then
    if command -v adb >/dev/null 2>&1; then MODE=adb; else MODE=host; fi
fi
case $MODE in
    adb | host) ;;
    *) die "ABLATE_MODE must be auto, adb or host (got '$MODE')" ;;
esac

# Runs a command line on the target: the phone through adb, or this machine.
target() {
    if [ "$MODE" = adb ]; then
        adb shell "$1" </dev/null | tr -d '\r'
    else
        sh -c "$1" </dev/null
    fi
}

if [ "$MODE" = adb ]; then
    state=$(adb get-state 2>/dev/null | tr -d '\r') || state=""
    [ "$state" = device ] || die "no phone ready on adb (state '$state'); enable USB debugging, or set ANDROID_SERIAL"
    [ -n "$BENCH" ] || die "set BENCHMARK_BINARY to the phone's benchmark binary ($BUNDLE_BINARY_HINT)"
    [ -f "$BENCH" ] || die "BENCHMARK_BINARY '$BENCH' is not a file"
    adb shell "mkdir -p $(quote "$DEVICE_DIR")" >/dev/null
    adb push "$BENCH" "$DEVICE_DIR/benchmark" >/dev/null
    adb shell "chmod 755 $(quote "$DEVICE_DIR/benchmark")" >/dev/null
    while IFS="$TAB" read -r _ file _; do
        adb push "$HERE/$file" "$DEVICE_DIR/$file" </dev/null >/dev/null
    done <"$LIST"
    RUNNER=$DEVICE_DIR/benchmark
    MODELS=$DEVICE_DIR
else
    if [ -n "$BENCH" ]; then
        [ -x "$BENCH" ] || die "BENCHMARK_BINARY '$BENCH' is not an executable file"
    fi
    RUNNER=$BENCH
    MODELS=$HERE
fi

# $1 with every $2 in it replaced by $3.
replace() {
    rest=$1
    filled=''
    while :; do
        case $rest in
            *"$2"*)
                filled=$filled${rest%%"$2"*}$3
                rest=${rest#*"$2"}
                ;;
            *) break ;;
        esac
    done
    printf '%s' "$filled$rest"
}

# The command line that runs model file $1 for $2 iterations and prints its mean time.
command_for() {
    model=$(quote "$MODELS/$1")
    if [ -z "$RUNNER" ]; then
        printf '%s %s %s %s' "$(quote "$PYTHON")" "$(quote "$HERE/run_host.py")" "$model" "$2"
        return
    fi
    # {runs} first: the model's path may hold anything, the count only digits.
    arguments=$(replace "$BENCH_ARGS" '{runs}' "$2")
    printf '%s %s' "$(quote "$RUNNER")" "$(replace "$arguments" '{model}' "$model")"
}

# Milliseconds per iteration from whichever benchmark printed it: benchmark_model (mean in
# us), executor_runner (total ms over N), onnxruntime_perf_test (mean ms), run_host.py.
parse_ms() {
    awk '
        /Inference \(avg\):/ { sub(/.*Inference \(avg\): */, ""); value = ($1 + 0) / 1000; found = 1 }
        /Model executed successfully/ {
            for (i = 1; i <= NF; i++) {
                if ($i == "successfully") runs = $(i + 1) + 0
                if ($i == "in") total = $(i + 1) + 0
            }
            if (runs > 0) { value = total / runs; found = 1 }
        }
        /Average inference time cost:/ { sub(/.*cost: */, ""); value = $1 + 0; found = 1 }
        /^ablate-ms:/ { value = $2 + 0; found = 1 }
        END { if (!found) exit 1; printf "%.6f\n", value }'
}

# Pinned to one core (the last, a big core on most phones) where taskset works there.
cores=$(target 'ls -d /sys/devices/system/cpu/cpu[0-9]* 2>/dev/null | wc -l' | tr -d ' ') || cores=0
case $cores in '' | *[!0-9]*) cores=0 ;; esac
CPU=${CPU:-$((cores > 0 ? cores - 1 : 0))}
MASK=$(printf '%x' $((1 << CPU)))
PIN=""
if target "command -v taskset >/dev/null 2>&1 && taskset $MASK true" >/dev/null 2>&1; then
    PIN="taskset $MASK "
fi

measure() {
    output=$(target "$PIN$(command_for "$1" "$2") 2>&1") || {
        printf '%s\n' "$output" | tail -n 5 >&2
        die "the benchmark failed on $1"
    }
    printf '%s\n' "$output" | parse_ms || {
        printf '%s\n' "$output" | tail -n 5 >&2
        die "no time found in the benchmark's output for $1"
    }
}

read_target() {
    target "$1 2>/dev/null" 2>/dev/null | head -n 1 | tr -d '\r' || true
}

temperature() {
    read_target 'cat /sys/class/thermal/thermal_zone0/temp'
}

write_record() {
    if [ "$MODE" = adb ]; then
        model=$(read_target 'getprop ro.product.model')
        manufacturer=$(read_target 'getprop ro.product.manufacturer')
        system="Android $(read_target 'getprop ro.build.version.release')"
        soc=$(read_target 'getprop ro.soc.model')
        [ -n "$soc" ] || soc=$(read_target 'getprop ro.board.platform')
        abi=$(read_target 'getprop ro.product.cpu.abi')
    else
        model=$(uname -n)
        manufacturer=""
        system="$(uname -s) $(uname -r)"
        soc=$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo 2>/dev/null | head -n 1)
        abi=$(uname -m)
    fi
    governor=$(read_target "cat /sys/devices/system/cpu/cpu$CPU/cpufreq/scaling_governor")
    {
        printf '{\n'
        printf '  "schema": "ablate.device-record/1",\n'
        printf '  "mode": %s,\n' "$(json_string "$MODE")"
        printf '  "serial": %s,\n' "$(json_string "${ANDROID_SERIAL:-}")"
        printf '  "model": %s,\n' "$(json_string "$model")"
        printf '  "manufacturer": %s,\n' "$(json_string "$manufacturer")"
        printf '  "operating_system": %s,\n' "$(json_string "$system")"
        printf '  "soc": %s,\n' "$(json_string "$soc")"
        printf '  "abi": %s,\n' "$(json_string "$abi")"
        printf '  "cores": %s,\n' "$cores"
        printf '  "cpu": %s,\n' "$CPU"
        printf '  "pinned": %s,\n' "$([ -n "$PIN" ] && echo true || echo false)"
        printf '  "governor": %s,\n' "$(json_string "$governor")"
        printf '  "temperature_start_raw": %s,\n' "$(json_string "$temperature_start")"
        printf '  "temperature_end_raw": %s,\n' "$(json_string "$1")"
        printf '  "binary": %s,\n' "$(json_string "${BENCH:-run_host.py}")"
        printf '  "threads": 1,\n'
        printf '  "iterations": %s,\n' "$ITERATIONS"
        printf '  "warmup_iterations": %s,\n' "$WARMUP"
        printf '  "seed": %s,\n' "$SEED"
        printf '  "rounds": %s,\n' "$round"
        printf '  "stop_reason": %s,\n' "$(json_string "$stop")"
        printf '  "elapsed_s": %s\n' "$(($(date +%s) - started))"
        printf '}\n'
    } >"$RECORD.tmp"
    mv "$RECORD.tmp" "$RECORD"
}

mkdir -p "$OUT_DIR"
count=$(wc -l <"$LIST" | tr -d ' ')
started=$(date +%s)
temperature_start=$(temperature)
round=0
stop=running

# Warm-up: each model once, untimed by the rounds (caches, clocks, weight packing).
while IFS="$TAB" read -r _ file _; do
    measure "$file" "$WARMUP" >/dev/null
done <"$LIST"

printf 'round,variant,milliseconds,position\n' >"$TIMINGS"
stop=max_rounds
while [ "$round" -lt "$ROUNDS" ]; do
    if [ "$round" -ge "$MIN_ROUNDS" ] && [ $(($(date +%s) - started)) -ge "$BUDGET_S" ]; then
        stop=budget
        break
    fi
    # A Fisher-Yates shuffle driven by the Park-Miller generator (exact in awk's doubles),
    # so that every awk draws the same order for a seed and round; the order is recorded.
    order=$(awk -v n="$count" -v seed="$SEED" -v r="$round" 'BEGIN {
        m = 2147483647
        x = (seed * 1000003 + r * 7919 + 1) % m
        for (k = 0; k < 8; k++) x = (x * 16807) % m
        for (i = 1; i <= n; i++) a[i] = i
        for (i = n; i > 1; i--) {
            x = (x * 16807) % m
            j = int(x / m * i) + 1; t = a[i]; a[i] = a[j]; a[j] = t
        }
        for (i = 1; i <= n; i++) print a[i]
    }')
    position=0
    rows=""
    for index in $order; do
        line=$(sed -n "${index}p" "$LIST")
        file=$(printf '%s\n' "$line" | cut -f 2)
        name=$(printf '%s\n' "$line" | cut -f 3)
        ms=$(measure "$file" "$ITERATIONS")
        rows="$rows$round,$name,$ms,$position
"
        position=$((position + 1))
    done
    printf '%s' "$rows" >>"$TIMINGS"
    round=$((round + 1))
    printf 'measure.sh: round %s of at most %s\n' "$round" "$ROUNDS" >&2
done
write_record "$(temperature)"
printf '%s\n' "$TIMINGS"
