#!/bin/sh
# Times every model of this ablate bundle in interleaved rounds; written by `ablate export`.
#
# With adb on PATH (the phone chosen by ANDROID_SERIAL when several are attached) the models
# and BENCHMARK_BINARY (the runtime's benchmark binary that bundle.env names) are pushed to
# DEVICE_DIR and timed there, one run of the binary per timing, with the flags BENCHMARK_ARGS
# (bundle.env's, {model} and {runs} filled in). Without adb (or with ABLATE_MODE=host) they
# are timed on this machine by BENCHMARK_BINARY when set, or else by one run_host.py process
# for the whole session, which loads each model once and times it on request. Every round
# times every model once, in a fresh order drawn from SEED and the round number (recorded as
# `position`), one thread, pinned to one core where `taskset` works. Rows go to
# OUT_DIR/timings.csv a whole round at a time, each with the session's id, which the device
# record OUT_DIR/device.json carries too (written when the session starts, completed when it
# ends). Stops after ROUNDS rounds, or once BUDGET_S seconds have passed and MIN_ROUNDS rounds
# are taken. Then, where bundle.env has PROFILE_ARGS (a spec that asks for kernel times), a
# profile pass, after the rounds: each model run once more, PROFILE_RUNS times, by
# PROFILE_BINARY (default BENCHMARK_BINARY) with PROFILE_ARGS too ({profile} filled in), or
# on this machine without a binary by run_host.py --profile; each per-op profile is copied
# (adb pull) to OUT_DIR/profiles/, named after its model with the profile's suffix, and its
# sha256 goes into the device record. PROFILE_ARGS= (empty) skips the pass; a profile run
# that fails ends the pass with a line saying why, the timings being complete already.
# Then: ablate ingest BUNDLE OUT_DIR/timings.csv
#
# Before anything is timed, every file of the bundle this script reads or runs is checked
# against the sha256 manifest.json lists, and a bundle holding a symbolic link is refused.
# Nothing is written through a link: each file is written under a new name and renamed.
set -eu

HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P)
MANIFEST=$HERE/manifest.json
SETTINGS=$HERE/bundle.env
LIST=$HERE/variants.txt
TAB=$(printf '\t')

die() {
    printf 'measure.sh: %s\n' "$*" >&2
    exit 2
}

# -- the bundle, checked before any of it is read or run ------------------------------------

# A link inside the bundle could send a write (timings.csv, device.json) or a read outside it.
link=$(find "$HERE" -type l -print | head -n 1)
[ -z "$link" ] || die "$link is a symbolic link: a bundle holds none (a link could make this script write outside the bundle); export the bundle again"

sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum <"$1" | cut -d ' ' -f 1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 <"$1" | cut -d ' ' -f 1
    elif command -v openssl >/dev/null 2>&1; then
        openssl dgst -sha256 <"$1" | sed 's/.* //'
    else
        die "no sha256sum, shasum or openssl on PATH to check the bundle's files with"
    fi
}

# $1, a file of the bundle, against $2, the sha256 the manifest gives it.
check() {
    [ -n "$2" ] || die "$MANIFEST lists no sha256 for $1: not a bundle of this ablate; export it again"
    [ -f "$HERE/$1" ] || die "$HERE/$1: missing from the bundle (listed in manifest.json)"
    [ "$(sha256 "$HERE/$1")" = "$2" ] || die "$HERE/$1: sha256 differs from manifest.json's: the file changed since the export; export the bundle again"
}

[ -f "$MANIFEST" ] || die "no manifest.json beside $0: not a whole bundle"
# manifest.json's "files" as `ablate export` writes them: one `"name": "sha256"` a line.
listed=$(awk '/^  "files": \{/ { inside = 1; next } inside && /^  \}/ { exit } inside { print }' "$MANIFEST" |
    sed -n 's/^    "\([A-Za-z0-9._-]*\)": "\([0-9a-f]\{64\}\)",\{0,1\}$/\1 \2/p')
for file in measure.sh run_host.py bundle.env variants.txt; do
    check "$file" "$(printf '%s\n' "$listed" | awk -v name="$file" '$1 == name { print $2 }')"
done
# The models, each with the sha256 variants.txt (checked above) gives it.
while IFS="$TAB" read -r _ file sha _; do
    case $file in
        *..* | models/*/* | *[!A-Za-z0-9._/]*) die "$LIST: '$file' is not a model file of the bundle" ;;
        models/?*) check "$file" "$sha" ;;
        *) die "$LIST: '$file' is not a model file of the bundle" ;;
    esac
done <"$LIST"

# bundle.env is read as data, never run: the rest of the line after `NAME=`.
setting() {
    sed -n "s/^$1=//p" "$SETTINGS" | head -n 1
}
BUNDLE_ID=$(setting BUNDLE_ID)
BUNDLE_BENCHMARK_ARGS=$(setting BUNDLE_BENCHMARK_ARGS)
BUNDLE_PROFILE_ARGS=$(setting BUNDLE_PROFILE_ARGS)
PROFILE_SUFFIX=$(setting BUNDLE_PROFILE_SUFFIX)
case $BUNDLE_ID in '' | *[!0-9a-f]*) die "$SETTINGS: BUNDLE_ID must be hexadecimal (got '$BUNDLE_ID')" ;; esac
# The flags reach a shell on the target: only the characters of flags, never its syntax.
case $BUNDLE_BENCHMARK_ARGS in
    *[!A-Za-z0-9_{}=.,:/\ -]*) die "$SETTINGS: BUNDLE_BENCHMARK_ARGS holds a character other than letters, digits, spaces and _{}=.,:/-" ;;
esac
case $BUNDLE_PROFILE_ARGS in
    *[!A-Za-z0-9_{}=.,:/\ -]*) die "$SETTINGS: BUNDLE_PROFILE_ARGS holds a character other than letters, digits, spaces and _{}=.,:/-" ;;
esac
# It ends the name of a file this script writes: none, or a dot and lower-case letters.
case $PROFILE_SUFFIX in
    . | .*[!a-z]* | [!.]*) die "$SETTINGS: BUNDLE_PROFILE_SUFFIX must be a dot and lower-case letters (got '$PROFILE_SUFFIX')" ;;
esac

ROUNDS=${ROUNDS:-$(setting BUNDLE_ROUNDS)}
MIN_ROUNDS=${MIN_ROUNDS:-$(setting BUNDLE_MIN_ROUNDS)}
BUDGET_S=${BUDGET_S:-$(setting BUNDLE_BUDGET_S)}
SEED=${SEED:-$(setting BUNDLE_SEED)}
ITERATIONS=${ITERATIONS:-10}
WARMUP=${WARMUP:-20}
OUT_DIR=${OUT_DIR:-$HERE}
DEVICE_DIR=${DEVICE_DIR:-/data/local/tmp/ablate-$BUNDLE_ID}
PYTHON=${ABLATE_PYTHON:-$(setting BUNDLE_PYTHON)}
MODE=${ABLATE_MODE:-auto}
BENCH=${BENCHMARK_BINARY:-}
BENCH_ARGS=${BENCHMARK_ARGS:-$BUNDLE_BENCHMARK_ARGS}
# Set but empty: no profile pass.
PROFILE_ARGS=${PROFILE_ARGS-$BUNDLE_PROFILE_ARGS}
PROFILE_RUNS=${PROFILE_RUNS:-$(setting BUNDLE_PROFILE_RUNS)}
PROFILE_RUNS=${PROFILE_RUNS:-1}
PROFILE_BINARY=${PROFILE_BINARY:-$BENCH}

# A single-quoted word for a shell command line.
quote() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

json_string() {
    printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

for number in "$ROUNDS" "$MIN_ROUNDS" "$BUDGET_S" "$SEED" "$ITERATIONS" "$WARMUP" "$PROFILE_RUNS"; do
    case $number in
        '' | *[!0-9]*) die "ROUNDS, MIN_ROUNDS, BUDGET_S, SEED, ITERATIONS, WARMUP, PROFILE_RUNS take whole numbers (got '$number')" ;;
    esac
done
[ "$ITERATIONS" -ge 1 ] || die "ITERATIONS must be at least 1"
[ "$PROFILE_RUNS" -ge 1 ] || die "PROFILE_RUNS must be at least 1"
[ "$MIN_ROUNDS" -ge 6 ] || die "MIN_ROUNDS must be at least 6 (a 95% interval of a median needs 6)"
[ "$ROUNDS" -ge "$MIN_ROUNDS" ] || die "ROUNDS ($ROUNDS) is below MIN_ROUNDS ($MIN_ROUNDS)"

if [ "$MODE" = auto ]; then
    if command -v adb >/dev/null 2>&1; then MODE=adb; else MODE=host; fi
fi
case $MODE in
    adb | host) ;;
    *) die "ABLATE_MODE must be auto, adb or host (got '$MODE')" ;;
esac

# -- where the results go: never through a link ---------------------------------------------

mkdir -p "$OUT_DIR"
OUT_DIR=$(CDPATH='' cd -- "$OUT_DIR" && pwd -P)
TIMINGS=$OUT_DIR/timings.csv
RECORD=$OUT_DIR/device.json
PROFILES=$OUT_DIR/profiles
for output in "$TIMINGS" "$RECORD"; do
    if [ -L "$output" ] || { [ -e "$output" ] && [ ! -f "$output" ]; }; then
        die "$output is a symbolic link or not a regular file: measure.sh writes no file through one; remove it"
    fi
done
if [ -n "$PROFILE_ARGS" ]; then
    if [ -L "$PROFILES" ] || { [ -e "$PROFILES" ] && [ ! -d "$PROFILES" ]; }; then
        die "$PROFILES is a symbolic link or not a directory: measure.sh writes no file through one; remove it"
    fi
fi
# New files as `>` would make them: 0666 less the umask (mktemp's are private).
FILE_MODE=$(printf '%o' $((0666 & ~0$(umask))))
staged=""
server_dir=""
profile_dir=""
cleanup() {
    [ -z "$staged" ] || rm -f "$staged"
    [ -z "$server_dir" ] || rm -rf "$server_dir"
    [ -z "$profile_dir" ] || rm -rf "$profile_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A new file in OUT_DIR, for `publish` to rename onto its name.
stage() {
    staged=$(mktemp "$OUT_DIR/.$1.XXXXXX") || die "cannot write in $OUT_DIR"
    chmod "$FILE_MODE" "$staged"
}
# The staged file renamed onto $1: a link there is replaced, never written through.
publish() {
    mv -f "$staged" "$1"
    staged=""
}

# -- the target: the phone through adb, or this machine -------------------------------------

# Runs a command line on the target.
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
    [ -n "$BENCH" ] || die "set BENCHMARK_BINARY to the phone's benchmark binary ($(setting BUNDLE_BINARY_HINT))"
    [ -f "$BENCH" ] || die "BENCHMARK_BINARY '$BENCH' is not a file"
    adb shell "mkdir -p $(quote "$DEVICE_DIR")" >/dev/null
    adb push "$BENCH" "$DEVICE_DIR/benchmark" >/dev/null
    adb shell "chmod 755 $(quote "$DEVICE_DIR/benchmark")" >/dev/null
    while IFS="$TAB" read -r _ file _; do
        adb push "$HERE/$file" "$DEVICE_DIR/$file" </dev/null >/dev/null
    done <"$LIST"
    RUNNER=$DEVICE_DIR/benchmark
    PROFILER=$RUNNER
    if [ -n "$PROFILE_ARGS" ] && [ "$PROFILE_BINARY" != "$BENCH" ]; then
        [ -f "$PROFILE_BINARY" ] || die "PROFILE_BINARY '$PROFILE_BINARY' is not a file"
        adb push "$PROFILE_BINARY" "$DEVICE_DIR/profiler" >/dev/null
        adb shell "chmod 755 $(quote "$DEVICE_DIR/profiler")" >/dev/null
        PROFILER=$DEVICE_DIR/profiler
    fi
    MODELS=$DEVICE_DIR
else
    if [ -n "$BENCH" ]; then
        [ -x "$BENCH" ] || die "BENCHMARK_BINARY '$BENCH' is not an executable file"
    fi
    if [ -n "$PROFILE_ARGS" ] && [ -n "$PROFILE_BINARY" ]; then
        [ -x "$PROFILE_BINARY" ] || die "PROFILE_BINARY '$PROFILE_BINARY' is not an executable file"
    fi
    RUNNER=$BENCH
    PROFILER=$PROFILE_BINARY
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

# On this machine without a binary: one run_host.py for the session, fed `ITERATIONS FILE`
# lines through one FIFO and answering each with a line through another. It ends when this
# script closes its end of the requests, or dies (a killed script's descriptors close too).
SERVER=""
if [ "$MODE" = host ] && [ -z "$RUNNER" ]; then
    server_dir=$(mktemp -d "${TMPDIR:-/tmp}/ablate-measure.XXXXXX")
    mkfifo "$server_dir/requests" "$server_dir/replies"
    # shellcheck disable=SC2086  # $PIN is empty or `taskset MASK`, two words
    $PIN "$PYTHON" "$HERE/run_host.py" --serve <"$server_dir/requests" >"$server_dir/replies" 2>"$server_dir/log" &
    SERVER=$!
    exec 4>"$server_dir/requests" 5<"$server_dir/replies"
    # A runner that died makes a write fail (then the read below says why), not a silent end.
    trap '' PIPE
fi

# The end of the runner's messages, for a failure.
runner_failed() {
    if [ -n "$SERVER" ]; then tail -n 5 "$server_dir/log" >&2; fi
    die "$1"
}

measure() {
    if [ -n "$SERVER" ]; then
        { printf '%s %s\n' "$2" "$1" >&4; } 2>/dev/null || runner_failed "the host runner stopped before timing $1"
        IFS= read -r output <&5 || runner_failed "the host runner stopped while timing $1"
        case $output in "error: "*) runner_failed "the host runner failed: ${output#error: }" ;; esac
    else
        output=$(target "$PIN$(command_for "$1" "$2") 2>&1") || {
            printf '%s\n' "$output" | tail -n 5 >&2
            die "the benchmark failed on $1"
        }
    fi
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

# -- the session ----------------------------------------------------------------------------

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
random=$(od -An -N4 -tx1 /dev/urandom 2>/dev/null | tr -d ' \n') || random=""
SESSION=$(date -u +%Y%m%dT%H%M%SZ)-${random:-$$}
started=$(date +%s)
temperature_start=$(temperature)

# What the profile pass made, for the record: null until it has run.
PROFILE_BINARY_JSON=null
PROFILE_RUNS_JSON=null
PROFILES_JSON=null

# The device record of this session: $1 the rounds taken (null while it runs), $2 why it
# stopped, $3 the temperature at the end, $4 the seconds the rounds took (null while they
# run); the profiles and their sha256 once the profile pass has run.
write_record() {
    stage device.json
    {
        printf '{\n'
        printf '  "schema": "ablate.device-record/2",\n'
        printf '  "session": %s,\n' "$(json_string "$SESSION")"
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
        printf '  "temperature_end_raw": %s,\n' "$(json_string "$3")"
        printf '  "binary": %s,\n' "$(json_string "${BENCH:-run_host.py}")"
        printf '  "threads": 1,\n'
        printf '  "iterations": %s,\n' "$ITERATIONS"
        printf '  "warmup_iterations": %s,\n' "$WARMUP"
        printf '  "seed": %s,\n' "$SEED"
        printf '  "rounds": %s,\n' "$1"
        printf '  "stop_reason": %s,\n' "$(json_string "$2")"
        printf '  "elapsed_s": %s,\n' "$4"
        printf '  "profile_binary": %s,\n' "$PROFILE_BINARY_JSON"
        printf '  "profile_runs": %s,\n' "$PROFILE_RUNS_JSON"
        printf '  "profiles": %s\n' "$PROFILES_JSON"
        printf '}\n'
    } >"$staged"
    publish "$RECORD"
}

# This session's record replaces any earlier one first, then its timings do: from here on no
# record of another session lies beside these timings, whenever the session is cut short.
write_record null interrupted "" null
stage timings.csv
exec 3>>"$staged" # every row is appended through this descriptor, never by the file's name
printf 'round,variant,milliseconds,position,session\n' >&3
publish "$TIMINGS"

count=$(wc -l <"$LIST" | tr -d ' ')
round=0

# Warm-up: each model once, untimed by the rounds (caches, clocks, weight packing).
while IFS="$TAB" read -r _ file _; do
    measure "$file" "$WARMUP" >/dev/null
done <"$LIST"

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
        # The name as one CSV cell, as `ablate export` wrote it (quoted, a leading = + - @ '
        # escaped with a ' so that a spreadsheet reads text).
        name=$(printf '%s\n' "$line" | cut -f 4-)
        ms=$(measure "$file" "$ITERATIONS")
        rows="$rows$round,$name,$ms,$position,$SESSION
"
        position=$((position + 1))
    done
    printf '%s' "$rows" >&3
    round=$((round + 1))
    printf 'measure.sh: round %s of at most %s\n' "$round" "$ROUNDS" >&2
done
exec 3>&-
if [ -n "$SERVER" ]; then
    exec 4>&- 5<&-
    wait "$SERVER" || true
fi
temperature_end=$(temperature)
elapsed=$(($(date +%s) - started))
write_record "$round" "$stop" "$temperature_end" "$elapsed"

# -- the profile pass: after the rounds, each model once more with its profiler on ----------

NEWLINE='
'

# The command line that runs model file $1 PROFILE_RUNS times, writing its profile to $2.
# The profile's flags go first: onnxruntime_perf_test reads flags before the model only.
profile_command_for() {
    model=$(quote "$MODELS/$1")
    arguments=$(replace "$PROFILE_ARGS $BENCH_ARGS" '{runs}' "$PROFILE_RUNS")
    arguments=$(replace "$arguments" '{profile}' "$(quote "$2")")
    printf '%s %s' "$(quote "$PROFILER")" "$(replace "$arguments" '{model}' "$model")"
}

# The profile of model file $1 written to $staged. Fails, saying why, where none came (1),
# or where run_host.py has no profiler for the runtime, which it says itself (2).
profile_model() {
    if [ -z "$PROFILER" ]; then
        status=0
        # shellcheck disable=SC2086  # $PIN is empty or `taskset MASK`, two words
        $PIN "$PYTHON" "$HERE/run_host.py" --profile "$HERE/$1" "$staged" "$PROFILE_RUNS" </dev/null || status=$?
        case $status in
            0) return 0 ;;
            3) return 2 ;; # run_host.py's NO_PROFILER
            *)
                printf 'measure.sh: run_host.py could not profile %s\n' "$1" >&2
                return 1
                ;;
        esac
    fi
    # A directory of its own, empty: onnxruntime_perf_test adds the time to the file's name.
    remote=$REMOTE_PROFILES/$(basename "$1")
    target "rm -rf $(quote "$remote") && mkdir -p $(quote "$remote")" >/dev/null
    output=$(target "$PIN$(profile_command_for "$1" "$remote/profile$PROFILE_SUFFIX") 2>&1") || {
        printf '%s\n' "$output" | tail -n 5 >&2
        printf 'measure.sh: the profile run failed on %s\n' "$1" >&2
        return 1
    }
    written=$(target "ls $(quote "$remote")")
    case $written in
        '' | *"$NEWLINE"* | *[!A-Za-z0-9._-]*)
            printf 'measure.sh: the profile run on %s wrote no one profile file (found: %s); does the binary write one with PROFILE_ARGS?\n' "$1" "${written:-none}" >&2
            return 1
            ;;
    esac
    if [ "$MODE" = adb ]; then
        adb pull "$remote/$written" "$staged" </dev/null >/dev/null
    else
        cp "$remote/$written" "$staged"
    fi
}

profile_pass() {
    mkdir -p "$PROFILES"
    if [ "$MODE" = adb ]; then
        REMOTE_PROFILES=$DEVICE_DIR/profiles
    elif [ -n "$PROFILER" ]; then
        profile_dir=$(mktemp -d "${TMPDIR:-/tmp}/ablate-profiles.XXXXXX")
        REMOTE_PROFILES=$profile_dir
    fi
    # {profile} is filled in before {model} (profile_command_for): its path cannot hold that.
    case ${REMOTE_PROFILES:-} in
        *'{model}'*) die "the profiles' directory '$REMOTE_PROFILES' holds '{model}': choose another (DEVICE_DIR, TMPDIR)" ;;
    esac
    members=""
    done_count=0
    while IFS="$TAB" read -r _ file _; do
        name=${file##*/}
        name=${name%.*}$PROFILE_SUFFIX
        profile=$PROFILES/$name
        if [ -L "$profile" ] || { [ -e "$profile" ] && [ ! -f "$profile" ]; }; then
            die "$profile is a symbolic link or not a regular file: measure.sh writes no file through one; remove it"
        fi
        staged=$(mktemp "$PROFILES/.$name.XXXXXX") || die "cannot write in $PROFILES"
        chmod "$FILE_MODE" "$staged"
        if profile_model "$file"; then
            result=0
        else
            result=$?
        fi
        if [ "$result" -ne 0 ]; then
            rm -f "$staged"
            staged=""
            [ "$result" -eq 2 ] || printf 'measure.sh: no per-op profiles from %s on; the timings are complete\n' "$file" >&2
            break
        fi
        publish "$profile"
        members="$members${members:+,$NEWLINE}    $(json_string "$name"): \"$(sha256 "$profile")\""
        done_count=$((done_count + 1))
        printf 'measure.sh: profile %s of %s\n' "$done_count" "$count" >&2
    done <"$LIST"
    PROFILE_BINARY_JSON=$(json_string "${PROFILE_BINARY:-run_host.py}")
    PROFILE_RUNS_JSON=$PROFILE_RUNS
    if [ -n "$members" ]; then
        PROFILES_JSON="{$NEWLINE$members$NEWLINE  }"
    else
        PROFILES_JSON="{}"
    fi
}

if [ -n "$PROFILE_ARGS" ]; then
    profile_pass
    write_record "$round" "$stop" "$temperature_end" "$elapsed"
fi
printf '%s\n' "$TIMINGS"
