#!/usr/bin/env bash
# Installs everything tracer needs to build and to run the real tt-metal runtime on a mock
# 8-chip mesh. Idempotent: each step checks first and says what it does.
#
#   scripts/setup.sh                    ttnn 0.81.1 (tracer itself builds with stable Rust)
#   scripts/setup.sh --ebpf             also the eBPF toolchain: the pinned nightly with rust-src,
#                                       LLVM dev files and bpf-linker (to rebuild tracer-ebpf)
#   scripts/setup.sh --all              the eBPF toolchain and what the tests need: ttnn 0.75.0
#                                       (the second layout era), sqlite3, Prometheus, bpftool,
#                                       and every PyPI release tests/tests/releases.rs traces
#   scripts/setup.sh --releases         the Python environments of those releases only
#   scripts/setup.sh --print-toolchain  the nightly the eBPF build uses, and nothing else
#
# The Python environments live in ${TRACER_VENV_ROOT:-$HOME/.cache/tracer/venvs} so that
# several clones share one download.
set -euo pipefail

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
ok() { printf '    ok: %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "error: installing $1 needs root; re-run with sudo" >&2
        exit 1
    fi
}

EBPF="" TESTS="" RELEASES=""
for arg in "$@"; do
    case "$arg" in
        --ebpf) EBPF=1 ;;
        --all) EBPF=1 TESTS=1 RELEASES=1 ;;
        --releases) RELEASES=1 ;;
        --print-toolchain) ;;
        *) echo "usage: $0 [--ebpf | --all | --releases | --print-toolchain]" >&2; exit 2 ;;
    esac
done

# The ttnn releases on PyPI that tracer calibrates (tests/tests/releases.rs traces each one);
# 0.81.1 and 0.75.0 are the two layout eras the other tests use.
ALL_RELEASES=("0.81.1" "0.75.0" "0.76.0" "0.78.0" "0.80.0")
ERAS=("0.81.1")
[ -n "$TESTS" ] && ERAS=("0.81.1" "0.75.0")
[ -n "$RELEASES" ] && ERAS=("${ALL_RELEASES[@]}")

VENV_ROOT="${TRACER_VENV_ROOT:-$HOME/.cache/tracer/venvs}"
LLVM_VERSION=22
BPF_LINKER_VERSION=0.13.0

# The pinned eBPF toolchain lives in one file; read it rather than repeat it.
NIGHTLY=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$(dirname "$0")/../tracer-ebpf/rust-toolchain.toml")
[ -n "$NIGHTLY" ] || { echo "error: no channel in tracer-ebpf/rust-toolchain.toml" >&2; exit 1; }
if [ "${1:-}" = "--print-toolchain" ]; then
    echo "$NIGHTLY"
    exit 0
fi

# apt_step WHAT PACKAGE CHECK...: installs PACKAGE unless the command CHECK... succeeds.
APT_UPDATED=""
apt_step() {
    local what=$1 package=$2
    shift 2
    step "$what"
    if "$@" >/dev/null 2>&1; then
        ok "$package present"
        return
    fi
    need_root "$package"
    if [ -z "$APT_UPDATED" ]; then
        apt-get update
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$package"
}

if [ -n "$EBPF" ]; then
    step "pinned nightly Rust ${NIGHTLY} with rust-src (builds the eBPF programs)"
    if rustup component list --toolchain "$NIGHTLY" --installed 2>/dev/null | grep -q '^rust-src'; then
        ok "${NIGHTLY} rust-src present"
    else
        rustup toolchain install "$NIGHTLY" --profile minimal -c rust-src
    fi

    apt_step "LLVM ${LLVM_VERSION} development files (needed by bpf-linker)" "llvm-${LLVM_VERSION}-dev" \
        test -x "/usr/lib/llvm-${LLVM_VERSION}/bin/llvm-config"

    step "bpf-linker ${BPF_LINKER_VERSION}"
    if command -v bpf-linker >/dev/null && bpf-linker --version 2>/dev/null | grep -q "${BPF_LINKER_VERSION}"; then
        ok "$(bpf-linker --version)"
    else
        LLVM_PREFIX="/usr/lib/llvm-${LLVM_VERSION}" cargo install bpf-linker --version "${BPF_LINKER_VERSION}" \
            --no-default-features --features "llvm-${LLVM_VERSION}" --locked
    fi
fi

if [ -n "$TESTS" ]; then
    apt_step "bpftool (the tests use it to check that no probe is left in the kernel)" bpftool \
        command -v bpftool
    apt_step "sqlite3 command-line tool (the tests query the SQLite export with it)" sqlite3 \
        command -v sqlite3
    apt_step "Prometheus server (the tests scrape tracer --metrics with it)" prometheus \
        command -v prometheus
    apt_step "tmux (the tests read tracer top's screen from it)" tmux command -v tmux
    apt_step "patchelf (the source-build layout test sets extension-module RPATHs)" patchelf \
        command -v patchelf
fi

# ttnn wheels exist for CPython 3.10 and 3.12 only (0.75.0: 3.10 only).
python_for() {
    local want
    case "$1" in
        0.75.*) want=3.10 ;;
        *) want=3.12 ;;
    esac
    # pyenv's own build first: its `python3.X` shim exists on PATH but fails unless that
    # version is selected, so every candidate must actually run.
    for cand in "$(pyenv root 2>/dev/null)/versions/${want}"*/bin/python "python${want}"; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import venv' >/dev/null 2>&1; then
            command -v "$cand"
            return
        fi
    done
    echo "error: ttnn $1 needs CPython ${want}; install it (e.g. 'pyenv install ${want}') and re-run" >&2
    exit 1
}

# Mock mode never compiles a kernel but checks the RISC-V compiler's version first; a stand-in
# that only answers --version lets the real runtime open a mock mesh without the toolchain.
install_compiler_standin() {
    local site="$1"
    local ver_file="$site/ttnn/tt_metal/sfpi-version"
    local bin="$site/ttnn/runtime/sfpi/compiler/bin/riscv-tt-elf-g++"
    [ -f "$ver_file" ] || { echo "error: $ver_file missing; is ttnn installed?" >&2; exit 1; }
    local version build
    version=$(sed -n "s/^sfpi_version='\(.*\)'/\1/p" "$ver_file")
    build=$(sed -n "s/^sfpi_build='\(.*\)'/\1/p" "$ver_file")
    mkdir -p "$(dirname "$bin")"
    cat >"$bin" <<STANDIN
#!/bin/sh
# Stand-in for the RISC-V compiler: answers the runtime's version check, compiles nothing.
if [ "\$1" = "--version" ]; then
    echo "riscv-tt-elf-g++ (tenstorrent/sfpi:${version}[${build}]) 15.1.0"
    exit 0
fi
echo "riscv-tt-elf-g++ stand-in: kernels cannot be compiled on a mock device" >&2
exit 1
STANDIN
    chmod +x "$bin"
}

for era in "${ERAS[@]}"; do
    venv="$VENV_ROOT/ttnn-$era"
    step "Python environment with ttnn ${era} ($venv)"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('ttnn') == '$era'" 2>/dev/null; then
        ok "ttnn ${era} present"
    else
        py=$(python_for "$era")
        "$py" -m venv "$venv"
        "$venv/bin/pip" install --progress-bar on "ttnn==${era}"
    fi
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    install_compiler_standin "$site"
    ok "compiler stand-in in place"
done
step "setup complete"
