#!/usr/bin/env bash
# Installs everything tracer needs to build and to run the real tt-metal runtime on a mock
# 8-chip mesh. Idempotent: each step checks first and says what it does.
#
#   scripts/setup.sh                    ttnn 0.81.1 (tracer itself builds with stable Rust)
#   scripts/setup.sh --ebpf             also the eBPF toolchain: the pinned nightly with rust-src,
#                                       LLVM dev files and bpf-linker (to rebuild tracer-ebpf)
#   scripts/setup.sh --all              the eBPF toolchain and what the tests need: ttnn 0.75.0
#                                       (the second layout era), sqlite3, Prometheus, bpftool,
#                                       Chromium, PyTorch's _memory_viz.py and flamegraph.pl,
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
# The PyTorch release whose memory tool reads tracer's pytorch-snapshot export in the tests.
TORCH_VERSION=2.9.1
TORCH_PLATFORM=manylinux_2_28_x86_64
MEMORY_VIZ_SHA256=67eaf02c9d61a38c2676fae6e2e67eb9e919ee085b3fd06e576593c882632579
FLAMEGRAPH_PL=/usr/share/perl5/Devel/NYTProf/flamegraph.pl
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
    apt_step "Chromium (the tests open the HTML export in it, headless)" chromium \
        command -v chromium
    # _memory_viz.py's `segments` and `memory` pipe their stacks through flamegraph.pl, which it
    # would download; Debian ships Brendan Gregg's script inside Devel::NYTProf.
    apt_step "flamegraph.pl (PyTorch's _memory_viz.py draws its flame graphs with it)" \
        libdevel-nytprof-perl test -f "$FLAMEGRAPH_PL"
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

# The runtime checks its RISC-V compiler's version before it opens a device, and builds kernels
# when an op (matmul, add, ...) first runs. The real toolchain is not needed on a mock device: a
# stand-in answers the version check, writes empty objects (and dependency files) for compile
# steps, and for link steps links a few-instruction RISC-V stub with Debian's RISC-V binutils
# against the runtime's own linker script and firmware symbols, so the runtime gets a real ELF to
# load. Kernels compute nothing; buffers and circular buffers are the runtime's own.
RISCV_AS="" RISCV_LD=""
need_riscv_binutils() {
    [ -n "$RISCV_AS" ] && return
    apt_step "RISC-V binutils (the compiler stand-in links kernel stubs with them)" \
        binutils-riscv64-unknown-elf riscv64-unknown-elf-ld --version
    RISCV_AS=$(command -v riscv64-unknown-elf-as || true)
    RISCV_LD=$(command -v riscv64-unknown-elf-ld || true)
    if [ -z "$RISCV_AS" ] || [ -z "$RISCV_LD" ]; then
        echo "error: riscv64-unknown-elf-as/-ld missing although binutils-riscv64-unknown-elf is installed" >&2
        exit 1
    fi
}

install_compiler_standin() {
    local site="$1"
    local ver_file="$site/ttnn/tt_metal/sfpi-version"
    local bin="$site/ttnn/runtime/sfpi/compiler/bin/riscv-tt-elf-g++"
    [ -f "$ver_file" ] || { echo "error: $ver_file missing; is ttnn installed?" >&2; exit 1; }
    local version build
    version=$(sed -n "s/^sfpi_version='\(.*\)'/\1/p" "$ver_file")
    build=$(sed -n "s/^sfpi_build='\(.*\)'/\1/p" "$ver_file")
    need_riscv_binutils
    mkdir -p "$(dirname "$bin")"
    cat >"$bin.new" <<STANDIN
#!/bin/sh
# Stand-in for tt-metal's RISC-V compiler (riscv-tt-elf-g++), installed by tracer's setup.sh for
# running the real runtime on a mock device. It is NOT a compiler:
#   --version             answers the runtime's version check;
#   compile steps         (-c, -S, -E, -x *-header) write an empty output file and, under
#                         -MMD/-MD, a dependency file (-MF FILE, else <output without extension>.d);
#   link steps (-T<ld>)   link a few-instruction RISC-V stub (_start in .start, one %hi/%lo
#                         relocation to a .data word) against the runtime's own linker script and
#                         -Wl,--just-symbols= firmware, with ${RISCV_LD}.
# Kernels built this way compute nothing; memory behaviour (buffers, circular buffers) is the
# runtime's own.
me="riscv-tt-elf-g++ stand-in"
if [ "\$1" = "--version" ]; then
    echo "riscv-tt-elf-g++ (tenstorrent/sfpi:${version}[${build}]) 15.1.0"
    exit 0
fi
out="" mf="" dep="" mode="" script="" syms=""
while [ \$# -gt 0 ]; do
    case "\$1" in
        -o) out="\$2"; shift ;;
        -o?*) out="\${1#-o}" ;;
        -MF) mf="\$2"; shift ;;
        -MMD|-MD) dep=1 ;;
        -c|-S|-E) mode=compile ;;
        -x) case "\$2" in *-header) mode=compile ;; esac; shift ;;
        -T) script="\$2"; shift ;;
        -T?*) script="\${1#-T}" ;;
        -Wl,--just-symbols=*) syms="\${1#-Wl,--just-symbols=}" ;;
    esac
    shift
done
[ -n "\$script" ] && mode=link
if [ -z "\$mode" ]; then
    echo "\$me: neither a compile step (-c, -S, -E) nor a link step (-T<script>); kernels cannot be built otherwise" >&2
    exit 1
fi
if [ -z "\$out" ]; then
    echo "\$me: no output file (-o) given" >&2
    exit 1
fi
if [ "\$mode" = compile ]; then
    : >"\$out" || exit 1
    if [ -n "\$dep" ]; then
        if [ -z "\$mf" ]; then
            case "\${out##*/}" in
                *.*) mf="\${out%.*}.d" ;;
                *) mf="\$out.d" ;;
            esac
        fi
        printf '%s:\n' "\$out" >"\$mf" || exit 1
    fi
    exit 0
fi
tmp=\$(mktemp -d) || exit 1
trap 'rm -rf "\$tmp"' EXIT
cat >"\$tmp/stub.s" <<'ASM'
    .section .start, "ax", @progbits
    .globl _start
_start:
    lui a0, %hi(stub_word)
    addi a0, a0, %lo(stub_word)
    j _start
    .data
stub_word:
    .word 0
ASM
${RISCV_AS} -march=rv32i -mabi=ilp32 -o "\$tmp/stub.o" "\$tmp/stub.s" || exit 1
set -- -m elf32lriscv -T "\$script"
[ -n "\$syms" ] && set -- "\$@" "--just-symbols=\$syms"
${RISCV_LD} "\$@" -z max-page-size=16 --emit-relocs -o "\$out" "\$tmp/stub.o"
STANDIN
    chmod +x "$bin.new"
    # Replace only when it changed (a running runtime may be executing the old one).
    if cmp -s "$bin.new" "$bin"; then
        rm -f "$bin.new"
    else
        mv -f "$bin.new" "$bin"
    fi
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
if [ -n "$TESTS" ]; then
    # PyTorch's memory tool, one file of the torch wheel, read without downloading the ~900 MB
    # wheel: pip resolves the wheel (metadata only), range requests on its zip fetch the file.
    # It runs on a plain Python, without torch.
    step "PyTorch ${TORCH_VERSION}'s torch/cuda/_memory_viz.py (the tests read the pytorch-snapshot export with it)"
    viz="$VENV_ROOT/torch-${TORCH_VERSION}/_memory_viz.py"
    if [ -f "$viz" ] && echo "${MEMORY_VIZ_SHA256}  $viz" | sha256sum -c --status; then
        ok "$viz present"
    else
        mkdir -p "$(dirname "$viz")"
        report="$(dirname "$viz")/pip-report.json"
        "$VENV_ROOT/ttnn-0.81.1/bin/python" -m pip install --dry-run --ignore-installed --no-deps \
            --quiet --report "$report" --only-binary=:all: --platform "$TORCH_PLATFORM" \
            --python-version 3.12 --implementation cp --abi cp312 \
            --target "$(dirname "$viz")/unused" "torch==${TORCH_VERSION}"
        url=$("$VENV_ROOT/ttnn-0.81.1/bin/python" -c \
            'import json, sys; print(json.load(open(sys.argv[1]))["install"][0]["download_info"]["url"])' "$report")
        python3 "$(dirname "$0")/wheel_member.py" "$url" torch/cuda/_memory_viz.py "$viz"
        if ! echo "${MEMORY_VIZ_SHA256}  $viz" | sha256sum -c --status; then
            echo "error: $viz from torch ${TORCH_VERSION} does not have the pinned SHA-256" >&2
            rm -f "$viz"
            exit 1
        fi
        ok "$viz"
    fi
fi
step "setup complete"
