# shellcheck shell=bash
# Environment for building ctibox for arm64 WITHOUT docker, from Debian packages
# (installed by `scripts/deps --cross`). Sourced by scripts/cross-build and
# scripts/test-arm64; nothing here is written to .cargo/ (the repo has none).
#
#   rustc-web                  /usr/bin/rustc (Debian's rustc); its default sysroot
#                              is /usr, so `--target aarch64-unknown-linux-gnu` alone
#                              finds the arm64 std in /usr/lib/rustlib/<target>/lib
#   libstd-rust-web-dev:arm64  that arm64 std
#   libstd-rust-web-dev:amd64  the host std, for build scripts and proc macros
#   gcc-aarch64-linux-gnu      the linker (its search path already includes the
#                              multiarch dirs /lib/aarch64-linux-gnu, /usr/lib/aarch64-linux-gnu)
#   libasound2-dev:arm64       libasound.so + asound.pc for the `alsa` crate
#   libc6:arm64                the arm64 loader + libc that qemu runs binaries with
#   qemu-user-static           runs the arm64 binaries on x86_64

CROSS_TARGET=aarch64-unknown-linux-gnu
CROSS_TRIPLE=aarch64-linux-gnu
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Debian's rustc, with the machine's cargo. A separate target dir keeps the host
# build (rustup's rustc) from being invalidated by a different compiler.
export RUSTC=/usr/bin/rustc
export CARGO_TARGET_DIR="${CROSS_TARGET_DIR:-$REPO_ROOT/target/cross}"
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER

# Linker and C toolchain for the target (the cc crate reads CC_<target>/AR_<target>).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=$CROSS_TRIPLE-gcc
export CC_aarch64_unknown_linux_gnu=$CROSS_TRIPLE-gcc
export CXX_aarch64_unknown_linux_gnu=$CROSS_TRIPLE-g++
export AR_aarch64_unknown_linux_gnu=$CROSS_TRIPLE-ar

# pkg-config (alsa-sys, libgpiod-sys): look only at the arm64 .pc files.
# /usr/share/pkgconfig holds arch-independent .pc files some of them require.
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_LIBDIR=/usr/lib/$CROSS_TRIPLE/pkgconfig:/usr/share/pkgconfig
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR

# Running arm64 binaries under qemu user mode: take the dynamic loader AND libc from
# the multiarch libc6:arm64 (/lib/ld-linux-aarch64.so.1, /lib/aarch64-linux-gnu),
# which libasound2:arm64 needs anyway. NOT QEMU_LD_PREFIX=/usr/aarch64-linux-gnu:
# that loads ld.so from libc6-arm64-cross (2.36-8cross1) but the loader then follows
# the host's /etc/ld.so.cache to libc.so.6 from libc6:arm64 (2.36-9+deb12uN); the
# mismatched pair spins forever in pthread_create (glibc's stack-cache list), so
# every multi-threaded program (libtest, tokio) hangs while `ctibox version` works.
export QEMU_LD_PREFIX=/

cross_check_tools() {
  local t
  for t in "$RUSTC" "$CROSS_TRIPLE-gcc" "$CROSS_TRIPLE-strip" qemu-aarch64-static; do
    command -v "$t" >/dev/null || { echo "cross: $t not found; run scripts/deps --cross" >&2; return 1; }
  done
  [ -d "/usr/lib/rustlib/$CROSS_TARGET/lib" ] ||
    { echo "cross: no arm64 std in /usr/lib/rustlib/$CROSS_TARGET; run scripts/deps --cross" >&2; return 1; }
  [ -e /lib/ld-linux-aarch64.so.1 ] ||
    { echo "cross: no /lib/ld-linux-aarch64.so.1 (libc6:arm64); run scripts/deps --cross" >&2; return 1; }
}
