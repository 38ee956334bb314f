#!/usr/bin/env bash
# Builds and installs drachtio-server (the SIP stack the bridge drives) at a pinned release, with the
# upstream build steps (its Dockerfile/README: submodules, ./bootstrap.sh, configure with tcmalloc,
# make, make install), on Debian or Ubuntu, as root.
#
# Usage: scripts/install-drachtio.sh [SOURCE]
#   SOURCE (default https://github.com/drachtio/drachtio-server.git) is one of:
#   - a git URL: cloned at the pinned tag with its submodules (git clone --recurse-submodules);
#   - a bare git mirror (a directory that is a git dir): the pinned tag is taken from it, and each
#     submodule at the commit the tag pins from a mirror beside it, <dir>/<owner>+<name>[/repo], where
#     <dir> is SUBMODULE_MIRRORS (default: the directory holding SOURCE's mirror); a submodule file
#     the mirror lacks is left out when the build does not use it (prometheus-cpp's civetweb outside
#     src/ and include/, googletest);
#   - a source tree (a checkout with deps/ filled, e.g. after `git submodule update --init --recursive`):
#     built as it is, whatever version it is.
# Environment: DRACHTIO_VERSION (the pinned tag, default below), DRACHTIO_PREFIX (default /usr/local,
#   upstream's), JOBS (default: the number of CPUs), BUILD_DIR (default /usr/local/src/drachtio-build,
#   removed after a good install unless KEEP_BUILD=1), FORCE=1 to build even when a drachtio is on PATH,
#   SKIP_APT=1 to install no build dependencies (they are there already), SOURCES_ONLY=1 to stop once
#   the sources are in BUILD_DIR.
# Exit status 0 when a drachtio is on PATH at the end (built now or found), non-zero otherwise.
set -euo pipefail

# The release the bridge is tested with and its docs describe (the NAT advice rests on its behaviour).
DRACHTIO_VERSION=${DRACHTIO_VERSION:-v0.9.10}
SOURCE=${1:-https://github.com/drachtio/drachtio-server.git}
PREFIX=${DRACHTIO_PREFIX:-/usr/local}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
BUILD_DIR=${BUILD_DIR:-/usr/local/src/drachtio-build}
T0=$SECONDS

say() { echo "[install-drachtio] $*"; }
die() { echo "[install-drachtio] ERROR: $*" >&2; exit 1; }

# --- already there? ---------------------------------------------------------------------------------
if [ -z "${FORCE:-}" ] && command -v drachtio >/dev/null; then
  have=$(drachtio --version 2>/dev/null | head -n1 || true)
  if [ "$have" = "$DRACHTIO_VERSION" ]; then
    say "drachtio $have already installed at $(command -v drachtio) (the pinned release): nothing to do"
  else
    say "drachtio ${have:-of unknown version} already installed at $(command -v drachtio), not the pinned $DRACHTIO_VERSION: kept (FORCE=1 builds $DRACHTIO_VERSION over it)"
  fi
  exit 0
fi
[ -n "${SOURCES_ONLY:-}" ] || [ "$(id -u)" = 0 ] || die "run as root (it installs build dependencies and writes $PREFIX)"

# --- build dependencies (upstream's list; Boost narrowed to what drachtio links and includes) ---------
if [ -z "${SKIP_APT:-}" ] && [ -z "${SOURCES_ONLY:-}" ]; then
  deps=(ca-certificates git build-essential cmake autoconf automake libtool libtool-bin pkg-config
        libssl-dev libcurl4-openssl-dev zlib1g-dev libgoogle-perftools-dev
        libboost-dev libboost-log-dev libboost-thread-dev libboost-system-dev libboost-filesystem-dev)
  missing=()
  for p in "${deps[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing build dependencies: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "build dependencies present"
  fi
fi

SRC=$BUILD_DIR/drachtio-server
WARNINGS=()
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR"

# --- sources -------------------------------------------------------------------------------------------
# mirror_for URL COMMIT: the bare mirror of a submodule under SUBMODULE_MIRRORS: <owner>+<name> from
# the URL, else any *+<name> that holds COMMIT (drachtio's sofia-sip fork has moved between owners).
mirror_for() {
  local url=$1 commit=$2 slug d
  slug=$(echo "$url" | sed -E 's#^.*github\.com[:/]##; s#\.git$##; s#/#+#')
  for d in "$SUBMODULE_MIRRORS/$slug/repo" "$SUBMODULE_MIRRORS/$slug" \
           "$SUBMODULE_MIRRORS"/*+"${slug#*+}"/repo "$SUBMODULE_MIRRORS"/*+"${slug#*+}"; do
    git --git-dir="$d" cat-file -e "$commit^{commit}" 2>/dev/null && { echo "$d"; return 0; }
  done
  return 1
}

# extract GITDIR COMMIT DEST: the commit's files into DEST; files whose contents the mirror lacks (a
# partial snapshot) are left out and listed.
extract() {
  local g=$1 c=$2 dest=$3 skipped
  git --git-dir="$g" cat-file -e "$c^{commit}" 2>/dev/null || die "$g lacks commit $c"
  mkdir -p "$dest"
  if git --git-dir="$g" archive "$c" 2>/dev/null | tar -x -C "$dest" 2>/dev/null; then
    say "  $dest <- $(basename "$(dirname "$g")")/$(basename "$g") @ ${c:0:12}"
    return 0
  fi
  rm -rf "$dest"; mkdir -p "$dest"
  local -a skip
  mapfile -t skip < <(git --git-dir="$g" ls-tree -r "$c" | awk '$2 == "blob" {print $3, $4}' |
    while read -r h p; do git --git-dir="$g" cat-file -e "$h" 2>/dev/null || echo ":(exclude)$p"; done)
  # (git archive still complains of the excluded blobs on stderr, and exits 0)
  git --git-dir="$g" archive "$c" -- . "${skip[@]}" 2>/dev/null | tar -x -C "$dest"
  skipped=$(printf '%s\n' "${skip[@]#:(exclude)}" | head -n 3 | paste -sd, -)
  say "  $dest <- ${c:0:12} (partial mirror: ${#skip[@]} files it lacks left out: $skipped...)"
}

# from_mirror GITDIR REF DEST: REF's tree, then each submodule (recursively) from its mirror.
from_mirror() {
  local g=$1 ref=$2 dest=$3 commit name path url sub
  commit=$(git --git-dir="$g" rev-parse "$ref^{commit}")
  extract "$g" "$commit" "$dest"
  git --git-dir="$g" cat-file -e "$commit:.gitmodules" 2>/dev/null || return 0
  local key m
  while read -r key path; do
    name=${key#submodule.}; name=${name%.path}
    url=$(git --git-dir="$g" config --blob "$commit:.gitmodules" --get "submodule.$name.url")
    sub=$(git --git-dir="$g" ls-tree "$commit" "$path" | awk '{print $3}')
    [ -n "$sub" ] || continue
    if ! m=$(mirror_for "$url" "$sub"); then
      # a snapshot older or newer than the pin: its HEAD, said loudly (and again at the end)
      if m=$(mirror_for "$url" HEAD); then
        WARNINGS+=("$path: the mirror $m lacks the pinned ${sub:0:12}; built from its HEAD $(git --git-dir="$m" rev-parse --short HEAD)")
        say "  WARNING: ${WARNINGS[-1]}"
        from_mirror "$m" HEAD "$dest/$path"
        continue
      fi
      case "$path" in
        */googletest) say "  $path: no mirror of $url at ${sub:0:12} (only its tests use it): skipped"; continue ;;
        *) die "no mirror of submodule $path ($url) holding ${sub:0:12} under $SUBMODULE_MIRRORS" ;;
      esac
    fi
    from_mirror "$m" "$sub" "$dest/$path"
  done < <(git --git-dir="$g" config --blob "$commit:.gitmodules" --get-regexp '^submodule\..*\.path$')
}

if [ -f "$SOURCE/configure.ac" ] && [ -f "$SOURCE/bootstrap.sh" ]; then
  [ -f "$SOURCE/deps/sofia-sip/configure.ac" ] || die "$SOURCE has empty submodules: run git submodule update --init --recursive in it"
  # a tree without .git: its version is not known (drachtio --version then says "local")
  VERSION=$(git -C "$SOURCE" describe --tags --always 2>/dev/null || echo local)
  say "drachtio-server $VERSION from the source tree $SOURCE"
  cp -a "$SOURCE" "$SRC"
elif [ -d "$SOURCE" ] && git --git-dir="$SOURCE" rev-parse --git-dir >/dev/null 2>&1; then
  SUBMODULE_MIRRORS=${SUBMODULE_MIRRORS:-$(cd "$SOURCE/.." && { [ "$(basename "$SOURCE")" = repo ] && cd ..; pwd; })}
  git --git-dir="$SOURCE" rev-parse -q --verify "$DRACHTIO_VERSION^{commit}" >/dev/null || die "$SOURCE has no $DRACHTIO_VERSION"
  VERSION=$(git --git-dir="$SOURCE" describe --tags --always "$DRACHTIO_VERSION")
  say "drachtio-server $VERSION from the mirror $SOURCE (submodules from mirrors under $SUBMODULE_MIRRORS)"
  from_mirror "$SOURCE" "$DRACHTIO_VERSION" "$SRC"
else
  say "drachtio-server $DRACHTIO_VERSION from $SOURCE (git clone with submodules)"
  git clone -q --depth 1 --branch "$DRACHTIO_VERSION" --recurse-submodules --shallow-submodules "$SOURCE" "$SRC" \
    || die "could not clone $SOURCE at $DRACHTIO_VERSION (no network? give a local mirror or source tree as the argument)"
  VERSION=$(git -C "$SRC" describe --tags --always)
fi
say "sources ready in $SRC ($((SECONDS - T0)) s)"
[ -z "${SOURCES_ONLY:-}" ] || exit 0

# --- build: upstream's steps -----------------------------------------------------------------------------
# prometheus-cpp first, with Makefile.am's own cmake flags plus ENABLE_TESTING=OFF (its tests need
# googletest, which the build does not otherwise use); make then finds the libraries and skips its rule.
# MYVERSION is given because an extracted tree has no .git for Makefile.am's `git describe`.
LOG=$BUILD_DIR/build.log
say "building (make -j$JOBS; log: $LOG) ..."
(
  set -e
  cd "$SRC/deps/prometheus-cpp" && mkdir -p build && cd build
  cmake .. -DBUILD_SHARED_LIBS=OFF -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_INSTALL_PREFIX="$PWD" -DENABLE_TESTING=OFF
  make -j"$JOBS" && make install
  cd "$SRC" && ./bootstrap.sh
  mkdir -p build && cd build
  ../configure --prefix="$PREFIX" --enable-tcmalloc=yes CPPFLAGS='-DNDEBUG' CXXFLAGS='-O2'
  make -j"$JOBS" MYVERSION="$VERSION"
  make install MYVERSION="$VERSION"
) > "$LOG" 2>&1 || { tail -n 40 "$LOG" >&2; die "build failed; the whole log is $LOG"; }
# upstream's Dockerfile removes its test programs from the bin directory
rm -f "$PREFIX"/bin/{timer,ssltest,parser,uri_test,test_https,test_asio_curl}
hash -r
command -v drachtio >/dev/null || die "drachtio was installed to $PREFIX/bin, which is not on PATH"
say "installed $(command -v drachtio): $(drachtio --version) in $((SECONDS - T0)) s"
for w in "${WARNINGS[@]}"; do say "WARNING: $w"; done
[ -n "${KEEP_BUILD:-}" ] || rm -rf "$BUILD_DIR"
