#!/usr/bin/env bash
# Checks for, and where possible installs, what building aidledger needs on a
# fresh Debian machine: a Rust toolchain, a C/C++ compiler, and libclang
# (rocksdb's bindgen needs it). Sourced by the other scripts.
set -euo pipefail

need_apt=()
need_pip=()
command -v cargo >/dev/null 2>&1 || { echo "error: cargo not found; install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
# bindgen wants libclang itself (libclang.so / libclang-N.so), not libclang-cpp.
# (Each pattern on its own: `ls a b` fails if any one of them matches
# nothing, which made every run reinstall the package.)
have_libclang=false
for f in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
         /usr/lib/*-linux-gnu/libclang.so* /usr/lib/*-linux-gnu/libclang-[0-9]*.so*; do
  if [ -e "$f" ]; then have_libclang=true; break; fi
done
$have_libclang || need_apt+=(libclang-dev)
for extra in "$@"; do
  case "$extra" in
    xmllint) command -v xmllint >/dev/null 2>&1 || need_apt+=(libxml2-utils) ;;
    # The namespace partition drill (as root) needs iproute2's `ip`.
    ip) if [ "$(id -u)" = 0 ]; then command -v ip >/dev/null 2>&1 || need_apt+=(iproute2); fi ;;
    # The metrics test lints /metrics with Prometheus's promtool.
    promtool) command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus) ;;
    # The OpenAPI document's test validates it with openapi-spec-validator.
    openapi) command -v openapi-spec-validator >/dev/null 2>&1 || need_pip+=(openapi-spec-validator) ;;
    # The explorer's test drives Debian's Chromium through ChromeDriver.
    browser)
      [ -x /usr/bin/chromium ] || need_apt+=(chromium)
      [ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
      # Fonts (installed without recommends, Chromium would have none of
      # its own): Latin, and Chinese so that zh-CN pages show characters.
      [ -d /usr/share/fonts/truetype/liberation ] || need_apt+=(fonts-liberation)
      [ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need_apt+=(fonts-wqy-zenhei) ;;
  esac
done

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "error: missing packages: ${need_apt[*]}" >&2
    echo "install them with: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
fi

if [ ${#need_pip[@]} -gt 0 ]; then
  if command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    echo "installing (pip): ${need_pip[*]}" >&2
    python3 -m pip install --quiet --disable-pip-version-check "${need_pip[@]}" >/dev/null 2>&1 || {
      echo "error: could not install ${need_pip[*]} with pip" >&2
      exit 1
    }
    hash -r
  else
    echo "error: missing: ${need_pip[*]}; install Python 3 with pip, then: python3 -m pip install ${need_pip[*]}" >&2
    exit 1
  fi
fi
